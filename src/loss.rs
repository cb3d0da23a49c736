//! The losses ξ(z; y) on a network output z and a label y.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Loss {
    /// ξ = ‖z − y‖² with one-hot y (no ½, as simpleNN); ∂ξ/∂z = 2(z − y); B = 2I.
    SquaredError,
    /// ξ = −log softmax(z)_y; ∂ξ/∂z = p − e_y; B = diag(p) − ppᵀ.
    CrossEntropy,
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Loss::SquaredError => "mse",
            Loss::CrossEntropy => "ce",
        })
    }
}

impl FromStr for Loss {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mse" | "squared" => Ok(Loss::SquaredError),
            "ce" | "cross-entropy" => Ok(Loss::CrossEntropy),
            other => Err(format!("unknown loss {other:?}: expected mse or ce")),
        }
    }
}
