//! What training minimises: a network, a loss and the regularisation constant C,
//!
//!   f(θ) = θᵀθ / (2·C·l) + (1/l) Σ_i ξ(z_i(θ); y_i)
//!
//! over l training samples, as in simpleNN (C is given per sample).

use crate::error::Error;
use crate::loss::Loss;
use crate::nn::Network;

/// The objective's definition, shared by its evaluation ([`crate::objective::Objective`]),
/// the curvature ([`crate::curvature::Subsample`]) and the optimisers.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub network: Network,
    pub loss: Loss,
    /// The regularisation constant: the objective has θᵀθ/(2·C·l).
    pub c: f64,
}

impl Problem {
    /// Fails unless C is a positive number.
    pub fn new(network: Network, loss: Loss, c: f64) -> Result<Self, Error> {
        let problem = Self { network, loss, c };
        problem.check()?;
        Ok(problem)
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(Error::Setting {
                field: "c",
                expected: "a positive number".into(),
                found: self.c.to_string(),
            });
        }
        Ok(())
    }

    /// Fails unless θ fits one storage binding of `gpu` (every vector of its length must).
    pub fn check_fits(&self, gpu: &crate::gpu::Gpu) -> Result<(), Error> {
        let params = self.network.param_count();
        let bytes = 4 * params as u64;
        let limit = gpu.max_binding_bytes();
        if bytes > limit {
            let layers = self.network.layers().iter().enumerate();
            let (index, layer) =
                layers.max_by_key(|(_, layer)| layer.param_count()).expect("a network has layers");
            let largest =
                format!("layer {} ({}), {} parameters", index + 1, layer.kind(), layer.param_count());
            return Err(Error::ParamsTooLarge { params, bytes, limit, largest });
        }
        Ok(())
    }

    /// 1/(C·l): the regulariser's weight for a training set of `l` samples.
    pub fn regularization(&self, l: usize) -> f64 {
        1.0 / (self.c * l as f64)
    }
}
