//! The SGD baseline (simpleNN's sgd): shuffled mini-batches each epoch; gradient = batch mean
//! of the loss gradient + θ/(C·l); v ← μ·v − lr·grad; θ ← θ + v; lr = lr0/(1 + decay·step).
//! Every vector stays on the device; one submit per mini-batch, no read-back inside an epoch.
//! Across the ranks of a data-parallel job each mini-batch is drawn as one process draws it;
//! each rank computes the part of its gradient over the members in its shard, the parts are
//! summed (a read-back and a write per step: the price of the sum), and every rank takes the
//! same step.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::comm::{Communicator, SingleProcess};
use crate::data::{Augment, AugmentDraw, Dataset};
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::{Gpu, GpuBuffer, Program};
use crate::kernels::{blas1, cg as cg_kernels};
use crate::objective::{MinibatchPart, Objective};
use crate::problem::Problem;
use crate::rules::{self, most};

use super::{EpochRecord, Observer, Record, Sets, Stepper};

/// The settings of SGD; the defaults are simpleNN's.
#[derive(Clone, Debug, PartialEq)]
pub struct SgdOptions {
    pub epochs: usize,
    pub batch: usize,
    /// lr0.
    pub lr: f64,
    /// μ.
    pub momentum: f64,
    pub decay: f64,
    pub time_budget: Option<Duration>,
    /// Seed of the shuffles (epoch e shuffles with seed + e).
    pub seed: u64,
    /// Records (and test evaluations) per epoch, evenly through it; f on the training set is
    /// evaluated at the end of each epoch.
    pub evals_per_epoch: usize,
    /// Augment each mini-batch: step t draws its members' copies with draw t (one process).
    pub augment: Augment,
}

impl Default for SgdOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch: 128,
            lr: 0.01,
            momentum: 0.0,
            decay: 0.0,
            time_budget: None,
            seed: 0,
            evals_per_epoch: 1,
            augment: Augment::NONE,
        }
    }
}

impl SgdOptions {
    /// Checks every setting, for a training set of `l` samples (a batch larger than l is one
    /// batch of all of them).
    pub fn validate(&self, l: usize) -> Result<(), Error> {
        rules::count("training set", l)?;
        rules::count_in("epochs", self.epochs, 0, most::ITERATIONS)?;
        rules::count_in("batch", self.batch, 1, most::SAMPLES)?;
        rules::positive("lr", self.lr)?;
        rules::unit_from_zero("momentum", self.momentum)?;
        rules::non_negative("decay", self.decay)?;
        rules::count_in("evals_per_epoch", self.evals_per_epoch, 1, most::EVALS_PER_EPOCH)
    }
}

/// Where a run stands between records: with θ and the velocity, enough to resume it exactly.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgdState {
    /// Epochs finished.
    pub epoch: usize,
    /// Mini-batch steps taken (for the learning-rate decay).
    pub step: usize,
    /// Mini-batches of the current epoch done (0 between epochs).
    #[serde(default)]
    pub batch_in_epoch: usize,
    pub elapsed_s: f64,
}

/// An SGD run: its buffers (the velocity among them) and its state. [`Sgd::advance`] runs one
/// epoch; [`train`] runs them all.
pub struct Sgd<'a> {
    gpu: &'a Gpu,
    problem: &'a Problem,
    comm: &'a dyn Communicator,
    /// The training samples this rank holds, as indices of the whole set.
    shard: std::ops::Range<usize>,
    /// The whole training set's size l.
    total: usize,
    options: SgdOptions,
    batch: usize,
    stepper: Objective<'a>,
    evaluator: Objective<'a>,
    grad: GpuBuffer<f32>,
    pub velocity: GpuBuffer<f32>,
    /// The step's learning rate, which decays, as the update reads it: [lr].
    rate: GpuBuffer<f32>,
    /// The update of a step, recorded for θ's buffer (the first step's): v ← μ·v − lr·g,
    /// θ ← θ + v (across ranks, after g += θ/(C·l), which a rank's part leaves out).
    update: Option<(u64, Program)>,
    pub state: SgdState,
}

impl<'a> Sgd<'a> {
    /// f and the accuracies are evaluated in chunks of the execution's bsize; mini-batches
    /// run whole.
    pub fn new(
        execution: &Execution<'a>,
        problem: &'a Problem,
        train: &Dataset,
        options: &SgdOptions,
    ) -> Result<Self, Error> {
        Self::across(execution, problem, &SingleProcess, train, train.len(), options)
    }

    /// SGD as rank `comm.rank()` of a data-parallel job over a training set of `total`
    /// samples, of which this rank holds its [`crate::comm::shard`] (`shard`, which
    /// [`Sgd::advance`] and [`Sgd::accuracy`] are then given). Every rank takes the steps that
    /// one process takes on the whole set.
    pub fn across(
        execution: &Execution<'a>,
        problem: &'a Problem,
        comm: &'a dyn Communicator,
        shard: &Dataset,
        total: usize,
        options: &SgdOptions,
    ) -> Result<Self, Error> {
        options.validate(total)?;
        super::check_augment(options.augment, shard, comm.size())?;
        let range = super::check_held(shard, total, comm)?;
        let (gpu, n) = (execution.gpu, problem.network.param_count());
        let batch = options.batch.min(total);
        Ok(Self {
            gpu,
            problem,
            comm,
            shard: range,
            total,
            batch,
            stepper: Objective::new(&execution.with_bsize(batch), problem)?,
            evaluator: Objective::new(execution, problem)?,
            grad: gpu.zeros::<f32>(n, "mini-batch gradient")?,
            velocity: gpu.zeros(n, "SGD velocity")?,
            rate: gpu.zeros(1, "SGD learning rate")?,
            update: None,
            state: SgdState { epoch: 0, step: 0, batch_in_epoch: 0, elapsed_s: 0.0 },
            options: options.clone(),
        })
    }

    /// Continues a run from `state` and `velocity` (a checkpoint's), checked first: the
    /// epochs done at most this run's, the steps those epochs and the place in the epoch make
    /// (else the mini-batches differ), the seconds finite and ≥ 0, the velocity θ's length and
    /// finite.
    pub fn resume(&mut self, state: SgdState, velocity: &[f32]) -> Result<(), Error> {
        rules::non_negative("elapsed_s", state.elapsed_s).map_err(Error::in_state)?;
        let refuse = |field, expected: String, found: String| Err(Error::State { field, expected, found });
        if state.epoch > self.options.epochs {
            let expected = format!("at most this run's epochs, {}", self.options.epochs);
            return refuse("epoch", expected, state.epoch.to_string());
        }
        if state.batch_in_epoch >= self.batches_per_epoch() {
            let expected = format!("fewer than an epoch's {} mini-batches", self.batches_per_epoch());
            return refuse("batch_in_epoch", expected, state.batch_in_epoch.to_string());
        }
        let steps = super::steps_at(state.epoch, self.batches_per_epoch(), state.batch_in_epoch);
        if steps != Some(state.step) {
            return refuse("step", super::steps_expected(&steps), state.step.to_string());
        }
        if velocity.len() != self.velocity.len() {
            return refuse("velocity", format!("{} values", self.velocity.len()), velocity.len().to_string());
        }
        if let Some(v) = velocity.iter().find(|v| !v.is_finite()) {
            return refuse("velocity", "finite values".into(), v.to_string());
        }
        self.gpu.write(&self.velocity, velocity)?;
        self.state = state;
        Ok(())
    }

    /// Reports progress through each end-of-epoch evaluation of f (see
    /// [`Objective::set_progress`]).
    pub fn set_progress(&mut self, progress: Option<crate::objective::Progress<'a>>) {
        self.evaluator.set_progress(progress);
    }

    /// Mini-batches per epoch (the last may be smaller).
    pub fn batches_per_epoch(&self) -> usize {
        self.total.div_ceil(self.batch)
    }

    /// True when the run should stop before another record.
    pub fn finished(&self) -> bool {
        self.state.epoch >= self.options.epochs
            || self.options.time_budget.is_some_and(|budget| self.state.elapsed_s >= budget.as_secs_f64())
    }

    /// The record of θ as it stands before the next step (θ0's, epoch 0, in a fresh run): f
    /// on the training set, evaluated outside the training time as every epoch's is.
    pub fn initial_record(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<EpochRecord, Error> {
        let f = self.evaluator.value_across(self.comm, train, self.total, theta)?.f;
        Ok(EpochRecord::initial(self.state.epoch, self.state.step, f, self.state.elapsed_s))
    }

    /// The mini-batch steps up to the next record (the end of the epoch, or of its next part
    /// when the run records `evals_per_epoch` times an epoch), then at the end of an epoch f
    /// on the training set (outside the training time). The record's test accuracy is None;
    /// see [`Sgd::accuracy`].
    pub fn advance(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<EpochRecord, Error> {
        let started = Instant::now();
        let running_loss = self.steps(train, theta)?;
        self.state.elapsed_s += started.elapsed().as_secs_f64();
        let epoch = self.state.epoch;
        let f = if self.state.batch_in_epoch == 0 {
            Some(self.evaluator.value_across(self.comm, train, self.total, theta)?.f)
        } else {
            None
        };
        if f.is_some_and(|f| !f.is_finite()) || !running_loss.is_finite() {
            let f = f.unwrap_or(running_loss);
            return Err(Error::Diverged { iteration: epoch, f, grad_norm: f64::NAN });
        }
        Ok(EpochRecord {
            running_loss: Some(running_loss),
            f,
            ..EpochRecord::initial(epoch, self.state.step, 0.0, self.state.elapsed_s)
        })
    }

    /// The mini-batch steps up to the next record, without the evaluation of f that
    /// [`Sgd::advance`] adds; returns the mean loss of their mini-batches. Counts the steps
    /// and the epoch when it ends, not their time.
    pub fn steps(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        let (gpu, batch) = (self.gpu, self.batch);
        if self.update.as_ref().is_none_or(|(id, _)| *id != theta.id()) {
            self.update = Some((theta.id(), self.record_update(theta)?));
        }
        let epoch = self.state.epoch + 1;
        let mut order: Vec<usize> = (0..self.total).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            self.options.seed.wrapping_add(epoch as u64),
        ));
        let update = &self.update.as_ref().expect("recorded above").1;
        let (from, batches) = (self.state.batch_in_epoch, self.batches_per_epoch());
        let to = super::next_record_at(from, batches, self.options.evals_per_epoch);
        // The samples of these mini-batches this rank has met: their losses are kept in that
        // order; and the samples of the mini-batches in all.
        let (mut seen, mut samples) = (0, 0);
        for indices in order.chunks(batch).skip(from).take(to - from) {
            let lr = self.options.lr / (1.0 + self.options.decay * self.state.step as f64);
            gpu.write(&self.rate, &[lr as f32])?;
            if self.comm.size() == 1 {
                // The gradient and the update in one submit, nothing read back.
                // With augmentation, the members as step t draws them.
                let augment = self.options.augment;
                let draw = augment.is_on().then_some(AugmentDraw {
                    augment,
                    seed: self.options.seed,
                    draw: self.state.step as u64 + 1,
                });
                self.stepper.minibatch_grad(train, indices, draw, seen, theta, &self.grad, update)?;
                seen += indices.len();
            } else {
                // This rank's members of the mini-batch, as indices of its shard.
                let mine: Vec<usize> =
                    indices.iter().filter(|i| self.shard.contains(i)).map(|i| i - self.shard.start).collect();
                let mut partial = if mine.is_empty() {
                    vec![0.0; theta.len()]
                } else {
                    let part = MinibatchPart { of: indices.len(), regularize_over: None };
                    self.stepper.minibatch_part(train, &mine, None, seen, part, theta, &self.grad, None)?;
                    gpu.read(&self.grad)?
                };
                seen += mine.len();
                self.comm.sum_f32(&mut partial)?;
                gpu.write(&self.grad, &partial)?;
                gpu.submit(&[update])?;
            }
            samples += indices.len();
            self.state.step += 1;
        }
        let mut loss_sum = [self.stepper.epoch_loss_sum(seen)?];
        self.comm.sum_f64(&mut loss_sum)?;
        self.state.batch_in_epoch = to;
        if to == batches {
            self.state.epoch = epoch;
            self.state.batch_in_epoch = 0;
        }
        Ok(loss_sum[0] / samples.max(1) as f64)
    }

    /// v ← μ·v − lr·g, θ ← θ + v, with lr read from `rate`.
    fn record_update(&self, theta: &GpuBuffer<f32>) -> Result<Program, Error> {
        let n = theta.len();
        let mut rec = self.gpu.recorder();
        if self.comm.size() > 1 {
            let weight = self.problem.regularization(self.total) as f32;
            blas1::axpy(&mut rec, weight, theta, &self.grad, n)?;
        }
        blas1::scale(&mut rec, self.options.momentum as f32, &self.velocity, n)?;
        cg_kernels::axpy_scalar(&mut rec, -1.0, &self.rate, 0, &self.grad, &self.velocity)?;
        blas1::axpy(&mut rec, 1.0, &self.velocity, theta, n)?;
        Ok(rec.finish()?)
    }

    /// Accuracy of θ on `data` (across ranks, this rank's shard of the scored set), computed
    /// on the device in chunks.
    pub fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Ok(self.evaluator.accuracy_across(self.comm, data, theta)?.overall())
    }
}

impl Stepper for Sgd<'_> {
    fn initial_record(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Record, Error> {
        Ok(Record::Epoch(Sgd::initial_record(self, train, theta)?))
    }

    fn advance(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Option<Record>, Error> {
        Ok(Some(Record::Epoch(Sgd::advance(self, train, theta)?)))
    }

    fn finished(&self) -> bool {
        Sgd::finished(self)
    }

    fn out_of_time(&self) -> bool {
        self.state.epoch < self.options.epochs
    }

    fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Sgd::accuracy(self, data, theta)
    }

    fn state_json(&self) -> String {
        serde_json::to_string(&self.state).expect("the state serialises")
    }

    fn velocity(&self) -> Result<Option<Vec<f32>>, Error> {
        Ok(Some(self.gpu.read(&self.velocity)?))
    }
}

/// Trains θ in place by SGD with momentum for the configured epochs, reporting θ0 (epoch 0)
/// and every epoch (or part of one, `evals_per_epoch`).
pub fn train(
    execution: &Execution,
    problem: &Problem,
    train: &Dataset,
    test: Option<&Dataset>,
    theta: &GpuBuffer<f32>,
    options: &SgdOptions,
    observer: &mut dyn Observer,
) -> Result<SgdState, Error> {
    train_across(execution, problem, &SingleProcess, train, train.len(), test, theta, options, observer)
}

/// [`train`] as one rank of a data-parallel job (see [`Sgd::across`]): `shard` is this rank's
/// part of a training set of `total` samples, `test` its shard of the test set.
#[allow(clippy::too_many_arguments)]
pub fn train_across(
    execution: &Execution,
    problem: &Problem,
    comm: &dyn Communicator,
    shard: &Dataset,
    total: usize,
    test: Option<&Dataset>,
    theta: &GpuBuffer<f32>,
    options: &SgdOptions,
    observer: &mut dyn Observer,
) -> Result<SgdState, Error> {
    let mut sgd = Sgd::across(execution, problem, comm, shard, total, options)?;
    super::drive(&mut sgd, Sets { train: shard, test, validation: None }, theta, observer)?;
    Ok(sgd.state)
}
