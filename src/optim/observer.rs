use serde::Serialize;

/// One Newton iteration, as reported to observers and written by `--log-json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IterationRecord {
    pub iter: usize,
    /// f(θ) at the start of the iteration.
    pub f: f64,
    pub grad_norm: f64,
    /// The step length taken; 0 when the line search failed and no step was taken.
    pub alpha: f64,
    /// Actual over predicted reduction (0 when no step was taken).
    pub rho: f64,
    /// λ after this iteration's update.
    pub lambda: f64,
    pub cg_iters: usize,
    /// False when the line search failed: θ is unchanged and λ was raised.
    pub accepted: bool,
    /// Training seconds since the start, test evaluation excluded.
    pub elapsed_s: f64,
    /// Seconds of this iteration spent in CG.
    pub cg_s: f64,
    pub test_acc: Option<f64>,
    /// Accuracy on the validation set, when one was held out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

/// One SGD epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// f(θ) on the training set at the end of the epoch.
    pub f: f64,
    /// Mean loss of the mini-batches seen during the epoch, each at the θ of its step.
    pub running_loss: f64,
    pub elapsed_s: f64,
    pub test_acc: Option<f64>,
    /// Accuracy on the validation set, when one was held out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

/// What a training run reports, once per iteration or epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Newton(IterationRecord),
    Sgd(EpochRecord),
}

impl Record {
    /// Training seconds since the start.
    pub fn elapsed_s(&self) -> f64 {
        match self {
            Record::Newton(r) => r.elapsed_s,
            Record::Sgd(r) => r.elapsed_s,
        }
    }

    /// f at this record: at the start of a Newton iteration, at the end of an SGD epoch.
    pub fn f(&self) -> f64 {
        match self {
            Record::Newton(r) => r.f,
            Record::Sgd(r) => r.f,
        }
    }

    /// "iteration k" or "epoch k".
    pub fn label(&self) -> String {
        match self {
            Record::Newton(r) => format!("iteration {}", r.iter),
            Record::Sgd(r) => format!("epoch {}", r.epoch),
        }
    }

    pub fn val_acc(&self) -> Option<f64> {
        match self {
            Record::Newton(r) => r.val_acc,
            Record::Sgd(r) => r.val_acc,
        }
    }

    pub fn test_acc(&self) -> Option<f64> {
        match self {
            Record::Newton(r) => r.test_acc,
            Record::Sgd(r) => r.test_acc,
        }
    }

    pub fn set_accuracies(&mut self, test: Option<f64>, validation: Option<f64>) {
        let (test_acc, val_acc) = match self {
            Record::Newton(r) => (&mut r.test_acc, &mut r.val_acc),
            Record::Sgd(r) => (&mut r.test_acc, &mut r.val_acc),
        };
        *test_acc = test;
        *val_acc = validation;
    }
}

/// Receives one record per Newton iteration or SGD epoch; a closure `FnMut(&Record)` is one.
pub trait Observer {
    fn observe(&mut self, record: &Record);
}

impl<F: FnMut(&Record)> Observer for F {
    fn observe(&mut self, record: &Record) {
        self(record)
    }
}
