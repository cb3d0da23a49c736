use serde::Serialize;

/// One Newton iteration, as reported to observers and written by `--log-json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IterationRecord {
    /// Iterations done: 0 for θ0, before training.
    pub iter: usize,
    /// f(θ) after the iteration, at the θ it leaves (θ0 for iteration 0).
    pub f: f64,
    /// ‖∇f‖ there, when it is known: after a full step (whose trial point was evaluated with
    /// its gradient) or no step; None after a shortened step, whose gradient the next
    /// iteration computes.
    pub grad_norm: Option<f64>,
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
    /// Seconds of this iteration's CG spent summing the products' parts across ranks (the
    /// sums themselves and the write back; 0 for one process).
    pub comm_s: f64,
    pub test_acc: Option<f64>,
    /// Accuracy on the validation set, when one was held out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

/// An SGD or SGN record: at the end of an epoch, or of a part of one when the run evaluates
/// more often (`evals_per_epoch`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EpochRecord {
    /// Epochs done: 0 for θ0, before training; a record inside an epoch has the epochs
    /// finished before it.
    pub epoch: usize,
    /// Mini-batch steps done, in all.
    pub step: usize,
    /// f(θ) on the training set, at the end of each epoch (θ0's for epoch 0); None inside an
    /// epoch, where it would cost a pass over the training set per record.
    pub f: Option<f64>,
    /// Mean loss of the mini-batches since the last record, each at the θ of its step; None
    /// for epoch 0.
    pub running_loss: Option<f64>,
    pub elapsed_s: f64,
    /// SGN: λ after the record's last step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lambda: Option<f64>,
    /// SGN: CG steps since the last record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cg_iters: Option<usize>,
    /// SGN: steps since the last record whose mini-batch objective did not fall, so that θ
    /// stayed and λ was raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<usize>,
    /// SGN: seconds of those steps spent in CG (the preconditioner's probes included).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cg_s: Option<f64>,
    pub test_acc: Option<f64>,
    /// Accuracy on the validation set, when one was held out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
}

impl EpochRecord {
    /// θ's record before any step of an epoch-based run (θ0's in a fresh run).
    pub fn initial(epoch: usize, step: usize, f: f64, elapsed_s: f64) -> Self {
        Self {
            epoch,
            step,
            f: Some(f),
            running_loss: None,
            elapsed_s,
            lambda: None,
            cg_iters: None,
            rejected: None,
            cg_s: None,
            test_acc: None,
            val_acc: None,
        }
    }
}

/// What a training run reports, once per iteration (Newton-CG) or epoch or part of one (SGD
/// and SGN).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Record {
    Newton(IterationRecord),
    /// SGD's or SGN's.
    Epoch(EpochRecord),
}

impl Record {
    /// Training seconds since the start.
    pub fn elapsed_s(&self) -> f64 {
        match self {
            Record::Newton(r) => r.elapsed_s,
            Record::Epoch(r) => r.elapsed_s,
        }
    }

    /// f at the θ this record leaves, where it was evaluated (every Newton iteration, every
    /// end of an epoch).
    pub fn f(&self) -> Option<f64> {
        match self {
            Record::Newton(r) => Some(r.f),
            Record::Epoch(r) => r.f,
        }
    }

    /// Iterations or epochs done.
    pub fn index(&self) -> usize {
        match self {
            Record::Newton(r) => r.iter,
            Record::Epoch(r) => r.epoch,
        }
    }

    /// "iteration k", "epoch k", or inside an epoch "step s of epoch k".
    pub fn label(&self) -> String {
        match self {
            Record::Newton(r) => format!("iteration {}", r.iter),
            Record::Epoch(r) if r.f.is_some() => format!("epoch {}", r.epoch),
            Record::Epoch(r) => format!("step {} of epoch {}", r.step, r.epoch + 1),
        }
    }

    pub fn val_acc(&self) -> Option<f64> {
        match self {
            Record::Newton(r) => r.val_acc,
            Record::Epoch(r) => r.val_acc,
        }
    }

    pub fn test_acc(&self) -> Option<f64> {
        match self {
            Record::Newton(r) => r.test_acc,
            Record::Epoch(r) => r.test_acc,
        }
    }

    pub fn set_accuracies(&mut self, test: Option<f64>, validation: Option<f64>) {
        let (test_acc, val_acc) = match self {
            Record::Newton(r) => (&mut r.test_acc, &mut r.val_acc),
            Record::Epoch(r) => (&mut r.test_acc, &mut r.val_acc),
        };
        *test_acc = test;
        *val_acc = validation;
    }
}

/// Receives one record per Newton iteration or SGD epoch; a closure `FnMut(&Record)` is one.
/// An observer can end the run after any record ([`Observer::should_stop`]: a callback that
/// asks, an interrupt), as xgboost's callbacks and Keras' `stop_training` do.
pub trait Observer {
    fn observe(&mut self, record: &Record);

    /// True when the run should end after the record just observed; θ is then the one that
    /// record describes.
    fn should_stop(&self) -> bool {
        false
    }
}

impl<F: FnMut(&Record)> Observer for F {
    fn observe(&mut self, record: &Record) {
        self(record)
    }
}
