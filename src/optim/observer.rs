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
}

/// What a training run reports, once per iteration or epoch.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Newton(IterationRecord),
    Sgd(EpochRecord),
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
