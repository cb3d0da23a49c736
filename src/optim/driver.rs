//! One training loop for every optimiser: θ's record first in a fresh run, then one record
//! per Newton iteration or SGD/SGN epoch (or part of one), each with the accuracies on the test
//! and validation sets, until the optimiser's limit, its own early end, or the caller stops.
//! The library's `train` functions, the program and the Python package all run it, so a run
//! reports the same records whichever of them runs it.

use crate::data::Dataset;
use crate::error::Error;
use crate::gpu::GpuBuffer;

use super::{Observer, Record};

/// What the loop needs of an optimiser; Newton-CG, SGD and SGN each implement it.
pub trait Stepper {
    /// θ's record before the next step (θ0's in a fresh run), without accuracies.
    fn initial_record(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Record, Error>;
    /// Runs to the next record (without accuracies); None when the run ends early (Newton-CG:
    /// ‖∇f‖ is within its tolerance).
    fn advance(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Option<Record>, Error>;
    /// True when the step limit or the time budget is reached.
    fn finished(&self) -> bool;
    /// True when the time budget (rather than the step limit) ended the run.
    fn out_of_time(&self) -> bool;
    /// Accuracy of θ on `data` (across ranks, this rank's shard of it).
    fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error>;
    /// The state a checkpoint holds, as JSON.
    fn state_json(&self) -> String;
    /// SGD's velocity, read from the device; None for the others.
    fn velocity(&self) -> Result<Option<Vec<f32>>, Error> {
        Ok(None)
    }
}

/// Why a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The iterations or epochs asked for are done.
    IterMax,
    /// ‖∇f‖ fell within Newton-CG's tolerance.
    GradTol,
    TimeBudget,
    /// The caller stopped it ([`Observer::should_stop`], [`Run::stop`]).
    Stopped,
}

/// The sets a run trains on and scores: `train` (across ranks, this rank's shard of it, from
/// which every optimiser gathers what its steps need), and the test and validation sets
/// scored after every record (across ranks, this rank's shards).
#[derive(Clone, Copy)]
pub struct Sets<'d> {
    pub train: &'d Dataset,
    pub test: Option<&'d Dataset>,
    pub validation: Option<&'d Dataset>,
}

/// A run in progress: [`Run::next_record`] gives its records one at a time.
pub struct Run<'r, 'd> {
    stepper: &'r mut dyn Stepper,
    sets: Sets<'d>,
    theta: &'d GpuBuffer<f32>,
    /// θ's record is still to come (a fresh run reports θ0 first; a resumed one does not).
    initial: bool,
    ended: Option<StopReason>,
}

impl<'r, 'd> Run<'r, 'd> {
    /// A run of `stepper` on θ; `fresh`: report θ's record first.
    pub fn new(stepper: &'r mut dyn Stepper, sets: Sets<'d>, theta: &'d GpuBuffer<f32>, fresh: bool) -> Self {
        Self { stepper, sets, theta, initial: fresh, ended: None }
    }

    /// The next record, with its accuracies; None once the run has ended ([`Run::ending`]).
    pub fn next_record(&mut self) -> Result<Option<Record>, Error> {
        if self.ended.is_some() {
            return Ok(None);
        }
        let (train, theta) = (self.sets.train, self.theta);
        let record = if std::mem::take(&mut self.initial) {
            Some(self.stepper.initial_record(train, theta)?)
        } else if self.stepper.finished() {
            let reason =
                if self.stepper.out_of_time() { StopReason::TimeBudget } else { StopReason::IterMax };
            self.ended = Some(reason);
            None
        } else {
            let record = self.stepper.advance(train, theta)?;
            if record.is_none() {
                self.ended = Some(StopReason::GradTol);
            }
            record
        };
        let Some(mut record) = record else { return Ok(None) };
        let test = self.sets.test.map(|data| self.stepper.accuracy(data, theta)).transpose()?;
        let validation = self.sets.validation.map(|data| self.stepper.accuracy(data, theta)).transpose()?;
        record.set_accuracies(test, validation);
        Ok(Some(record))
    }

    /// Ends the run after the record just given.
    pub fn stop(&mut self) {
        self.ended.get_or_insert(StopReason::Stopped);
    }

    /// Why the run ended, once it has.
    pub fn ending(&self) -> Option<StopReason> {
        self.ended
    }

    /// The optimiser, for its state.
    pub fn stepper(&self) -> &dyn Stepper {
        &*self.stepper
    }
}

/// Runs `stepper` to its end on θ from θ0's record, giving every record to `observer`, which
/// may end the run after any of them.
pub fn drive(
    stepper: &mut dyn Stepper,
    sets: Sets,
    theta: &GpuBuffer<f32>,
    observer: &mut dyn Observer,
) -> Result<StopReason, Error> {
    let mut run = Run::new(stepper, sets, theta, true);
    while let Some(record) = run.next_record()? {
        observer.observe(&record);
        if observer.should_stop() {
            run.stop();
        }
    }
    Ok(run.ending().expect("a run without records has ended"))
}
