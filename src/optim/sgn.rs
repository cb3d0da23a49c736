//! Stochastic Gauss-Newton (SGN; Gargiani, Zanelli, Diehl and Hutter, "On the promise of the
//! stochastic generalized Gauss-Newton method for training DNNs", 2020): each step draws a
//! mini-batch B, takes the gradient of its objective
//!
//!   f_B(θ) = θᵀθ / (2·C·l) + (1/|B|) Σ_{i∈B} ξ(z_i; y_i),
//!
//! solves (G_S + λI)s = −∇f_B by a few CG steps on the device with the Gauss-Newton matrix of
//! the mini-batch (of its first |S| members, S ⊆ B; the paper takes S = B), and steps
//! θ ← θ + s, unit step, no learning rate. Levenberg-Marquardt damping:
//! ρ = (f_B(θ + s) − f_B(θ)) / (∇f_Bᵀs + ½ sᵀG_S s) on the same mini-batch; λ ← λ·boost when ρ < 1/4, λ·drop when ρ ≥ 3/4. A step that does not lower f_B
//! is not taken (θ stays, λ rises), as in Levenberg-Marquardt.
//!
//! Epochs shuffle as SGD does (epoch e with seed + e) into ⌊l/|B|⌋ mini-batches of exactly
//! |B| samples (the subsample's buffers keep their size; the few samples beyond the last whole
//! batch wait for the next shuffle).
//!
//! Across ranks ([`Sgn::across`]) every rank draws the same mini-batches and computes over its
//! part of each by position (B's and S's members alike, brought from the ranks whose shards
//! hold them); the parts of f_B, ∇f_B, of every product of
//! CG and of f_B(θ + s) are summed, so that every rank takes the decisions one process takes
//! (step taken, λ) from the same numbers.

use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::comm::{self, Communicator, SingleProcess};
use crate::curvature::{Subsample, SubsampleOptions};
use crate::data::{Augment, AugmentDraw, Dataset};
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::GpuBuffer;
use crate::objective::Objective;
use crate::problem::Problem;
use crate::rules::{self, most};

use super::cg::{self, CgBuffers, CgSettings, PreconditionerOptions};
use super::trial::TrialPoint;
use super::{EpochRecord, Observer, Record, Sets, Stepper};

/// The settings of SGN. The paper gives the method (mini-batch gradient and Gauss-Newton
/// matrix, CG with forward and reverse mode, Levenberg-Marquardt damping, unit step); the
/// numbers are ours, measured on the bundled digits (docs/methods.md): batch 1,000, the Gauss-Newton
/// matrix on its first 10% (the paper takes all of the batch; a product costs about what a
/// gradient does per sample, and the smaller S reached 95% in 27 s against 48 s), at most 10
/// CG steps stopped early at ‖r‖ ≤ 0.1·‖∇f_B‖ (simpleNN's ξ), λ0 = 1, drop 2/3 and boost 3/2
/// (simpleNN's and Martens').
#[derive(Clone, Debug, PartialEq)]
pub struct SgnOptions {
    pub epochs: usize,
    /// |B|, the mini-batch (a batch larger than the training set is all of it).
    pub batch: usize,
    /// |S|, the Gauss-Newton matrix's subsample: the first |S| members of each mini-batch
    /// (None: ⌈10% of the batch⌉; the batch's size is the paper's choice).
    pub gn_size: Option<usize>,
    /// CG steps per step at most.
    pub cg_steps: usize,
    /// CG stops sooner once ‖r‖ ≤ xi·‖∇f_B‖.
    pub xi: f64,
    /// Initial λ.
    pub lambda: f64,
    pub drop: f64,
    pub boost: f64,
    /// The host reads CG's residual back every this many CG steps (see Newton-CG's).
    pub cg_check_every: usize,
    /// Across ranks, the most pieces a CG step's product is summed in (see Newton-CG's).
    pub cg_sums_per_product: usize,
    pub time_budget: Option<Duration>,
    /// Seed of the shuffles (epoch e shuffles with seed + e).
    pub seed: u64,
    /// Records (and test evaluations) per epoch, evenly through it; f on the training set is
    /// evaluated at the end of each epoch.
    pub evals_per_epoch: usize,
    /// Precondition CG with the estimated diagonal of G_B.
    pub precondition: Option<PreconditionerOptions>,
    /// Augment each mini-batch: step t draws its members' copies with draw t, for its
    /// gradient, its products and its trial point alike.
    pub augment: Augment,
}

impl Default for SgnOptions {
    fn default() -> Self {
        Self {
            epochs: 10,
            batch: 1000,
            gn_size: None,
            cg_steps: 10,
            xi: 0.1,
            lambda: 1.0,
            drop: 2.0 / 3.0,
            boost: 1.5,
            cg_check_every: 4,
            cg_sums_per_product: super::cg::DEFAULT_SUMS_PER_PRODUCT,
            time_budget: None,
            seed: 0,
            evals_per_epoch: 1,
            precondition: None,
            augment: Augment::NONE,
        }
    }
}

impl SgnOptions {
    /// |B| for a training set of `l` samples.
    pub fn batch_for(&self, l: usize) -> usize {
        self.batch.min(l)
    }

    /// |S| for a training set of `l` samples: gn_size, or ⌈10% of the batch⌉.
    pub fn gn_size_for(&self, l: usize) -> usize {
        self.gn_size.unwrap_or(self.batch_for(l).div_ceil(10))
    }

    /// Across `ranks` ranks every rank must hold a member of each mini-batch and of S.
    pub fn check_ranks(&self, l: usize, ranks: usize) -> Result<(), Error> {
        let batch = self.batch_for(l);
        let gn_size = self.gn_size_for(l);
        if batch.min(gn_size) < ranks {
            let (field, size) = if batch < ranks { ("sgn_batch", batch) } else { ("sgn_gn_size", gn_size) };
            return Err(Error::Setting {
                field,
                expected: format!("at least one sample per rank ({ranks} ranks)"),
                found: size.to_string(),
            });
        }
        Ok(())
    }

    /// Checks every setting, for a training set of `l` samples.
    pub fn validate(&self, l: usize) -> Result<(), Error> {
        rules::count("training set", l)?;
        rules::count_in("epochs", self.epochs, 0, most::ITERATIONS)?;
        rules::count_in("sgn_batch", self.batch, 1, most::SAMPLES)?;
        if let Some(size) = self.gn_size {
            rules::count_up_to("sgn_gn_size", size, self.batch_for(l), "from 1 to the SGN mini-batch")?;
        }
        rules::count_in("sgn_cg_steps", self.cg_steps, 1, most::CG_STEPS)?;
        rules::open_unit("xi", self.xi)?;
        rules::damping("sgn_lambda", self.lambda)?;
        rules::unit_to_one("drop", self.drop)?;
        rules::at_least_one("boost", self.boost)?;
        rules::count_in("cg_check_every", self.cg_check_every, 1, most::CHECK_EVERY)?;
        rules::count_in("cg_sums_per_product", self.cg_sums_per_product, 1, most::SUMS_PER_PRODUCT)?;
        rules::count_in("evals_per_epoch", self.evals_per_epoch, 1, most::EVALS_PER_EPOCH)?;
        if let Some(precondition) = &self.precondition {
            precondition.validate()?;
        }
        Ok(())
    }
}

/// Where a run stands between records: with θ, enough to resume it exactly.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SgnState {
    /// Epochs finished.
    pub epoch: usize,
    /// Steps taken (or refused) in all.
    pub step: usize,
    /// Mini-batches of the current epoch done (0 between epochs).
    pub batch_in_epoch: usize,
    pub lambda: f64,
    pub elapsed_s: f64,
}

/// What the steps since the last record did.
struct Steps {
    mean_loss: f64,
    cg_iters: usize,
    rejected: usize,
    cg_s: f64,
}

/// What one step did.
struct Step {
    /// The mini-batch's mean loss at θ.
    mean_loss: f64,
    cg_iters: usize,
    cg_s: f64,
    taken: bool,
}

/// An SGN run: its buffers and its state. [`Sgn::advance`] runs the steps up to the next
/// record; [`train`] runs them all.
pub struct Sgn<'a> {
    execution: Execution<'a>,
    comm: &'a dyn Communicator,
    problem: &'a Problem,
    options: SgnOptions,
    /// l, the training set's size.
    total: usize,
    /// f_B and ∇f_B of each mini-batch (one chunk holds it), f and the accuracies.
    objective: Objective<'a>,
    grad: GpuBuffer<f32>,
    /// θ + s, the step's trial point.
    trial: TrialPoint,
    cg_buffers: CgBuffers,
    /// The mini-batch's Gauss-Newton matrix: made once, each mini-batch drawn into it.
    subsample: Option<Subsample<'a>>,
    pub state: SgnState,
}

impl<'a> Sgn<'a> {
    /// SGN on `train` (every step's mini-batch is drawn from it; l = train.len()).
    pub fn new(
        execution: &Execution<'a>,
        problem: &'a Problem,
        train: &Dataset,
        options: &SgnOptions,
    ) -> Result<Self, Error> {
        Self::across(execution, problem, &SingleProcess, train, train.len(), options)
    }

    /// SGN as rank `comm.rank()` of a data-parallel job on a training set of `total`
    /// samples, of which this rank holds its [`comm::shard`] in `held` (which
    /// [`Sgn::advance`] is then given too): each mini-batch drawn by position in the whole set
    /// as one process draws it, the rank computing over its part by position (brought from
    /// the ranks that hold it, [`comm::gather_part`]); f over the shards, summed. The
    /// mini-batch and |S| must have a member on every rank.
    pub fn across(
        execution: &Execution<'a>,
        problem: &'a Problem,
        comm: &'a dyn Communicator,
        held: &Dataset,
        total: usize,
        options: &SgnOptions,
    ) -> Result<Self, Error> {
        options.validate(total)?;
        super::check_held(held, total, comm)?;
        super::check_augment(options.augment, held, 1)?;
        let options = &SgnOptions { batch: options.batch_for(total), ..options.clone() };
        if comm.size() > 1 {
            options.check_ranks(total, comm.size())?;
        }
        let (gpu, n) = (execution.gpu, problem.network.param_count());
        // One chunk holds a mini-batch; f and the accuracies run in chunks of that size or
        // the execution's, whichever is larger.
        let objective = Objective::new(&execution.with_bsize(execution.bsize.max(options.batch)), problem)?;
        if objective.chunk_size() < options.batch {
            return Err(Error::Setting {
                field: "sgn_batch",
                expected: "a mini-batch whose activations one binding of this adapter holds".into(),
                found: format!("{} (the most here is {})", options.batch, objective.chunk_size()),
            });
        }
        Ok(Self {
            execution: *execution,
            comm,
            problem,
            total,
            objective,
            grad: gpu.zeros(n, "∇f_B")?,
            trial: TrialPoint::new(gpu, n)?,
            cg_buffers: CgBuffers::preconditioned(gpu, n, options.precondition)?,
            subsample: None,
            state: SgnState { epoch: 0, step: 0, batch_in_epoch: 0, lambda: options.lambda, elapsed_s: 0.0 },
            options: options.clone(),
        })
    }

    /// Continues a run from `state` (a checkpoint's), checked first: λ from 0 to 1e20, the
    /// epochs done at most this run's, a position inside an epoch, the steps those make (else
    /// the mini-batches differ), the seconds finite and ≥ 0.
    pub fn resume(&mut self, state: SgnState) -> Result<(), Error> {
        rules::damping("lambda", state.lambda).map_err(Error::in_state)?;
        rules::non_negative("elapsed_s", state.elapsed_s).map_err(Error::in_state)?;
        let refuse = |field, expected: String, found: usize| {
            Err(Error::State { field, expected, found: found.to_string() })
        };
        if state.epoch > self.options.epochs {
            return refuse(
                "epoch",
                format!("at most this run's epochs, {}", self.options.epochs),
                state.epoch,
            );
        }
        if state.batch_in_epoch >= self.batches_per_epoch() {
            let expected = format!("fewer than an epoch's {} mini-batches", self.batches_per_epoch());
            return refuse("batch_in_epoch", expected, state.batch_in_epoch);
        }
        let steps = super::steps_at(state.epoch, self.batches_per_epoch(), state.batch_in_epoch);
        if steps != Some(state.step) {
            return refuse("step", super::steps_expected(&steps), state.step);
        }
        self.state = state;
        Ok(())
    }

    /// Reports progress through each evaluation of f (see [`Objective::set_progress`]).
    pub fn set_progress(&mut self, progress: Option<crate::objective::Progress<'a>>) {
        self.objective.set_progress(progress);
    }

    /// Whole mini-batches per epoch, ⌊l/|B|⌋.
    pub fn batches_per_epoch(&self) -> usize {
        self.total / self.options.batch
    }

    /// True when the run should stop before another record.
    pub fn finished(&self) -> bool {
        self.state.epoch >= self.options.epochs
            || self.options.time_budget.is_some_and(|budget| self.state.elapsed_s >= budget.as_secs_f64())
    }

    /// The record of θ as it stands before the next step (θ0's, epoch 0, in a fresh run): f on
    /// the training set, evaluated outside the training time.
    pub fn initial_record(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<EpochRecord, Error> {
        let f = self.value(train, theta)?;
        Ok(EpochRecord {
            lambda: Some(self.state.lambda),
            cg_iters: Some(0),
            rejected: Some(0),
            cg_s: Some(0.0),
            ..EpochRecord::initial(self.state.epoch, self.state.step, f, self.state.elapsed_s)
        })
    }

    /// The steps up to the next record (the end of the epoch, or of its next part), then at
    /// the end of an epoch f on the training set (outside the training time). The record's
    /// test accuracy is None; see [`Sgn::accuracy`].
    pub fn advance(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<EpochRecord, Error> {
        let started = Instant::now();
        let steps = self.steps(train, theta)?;
        self.state.elapsed_s += started.elapsed().as_secs_f64();
        let f = if self.state.batch_in_epoch == 0 { Some(self.value(train, theta)?) } else { None };
        if f.is_some_and(|f| !f.is_finite()) {
            return Err(Error::Diverged {
                iteration: self.state.step,
                f: f.unwrap_or(f64::NAN),
                grad_norm: f64::NAN,
            });
        }
        Ok(EpochRecord {
            f,
            running_loss: Some(steps.mean_loss),
            lambda: Some(self.state.lambda),
            cg_iters: Some(steps.cg_iters),
            rejected: Some(steps.rejected),
            cg_s: Some(steps.cg_s),
            ..EpochRecord::initial(self.state.epoch, self.state.step, 0.0, self.state.elapsed_s)
        })
    }

    /// f(θ) on the training set (across ranks, summed over the shards).
    fn value(&mut self, held: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Ok(self.objective.value_across(self.comm, held, self.total, theta)?.f)
    }

    fn steps(&mut self, held: &Dataset, theta: &GpuBuffer<f32>) -> Result<Steps, Error> {
        super::check_held(held, self.total, self.comm)?;
        let epoch = self.state.epoch + 1;
        let mut order: Vec<usize> = (0..self.total).collect();
        order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(
            self.options.seed.wrapping_add(epoch as u64),
        ));
        let (from, batches) = (self.state.batch_in_epoch, self.batches_per_epoch());
        let to = super::next_record_at(from, batches, self.options.evals_per_epoch);
        let mut done = Steps { mean_loss: 0.0, cg_iters: 0, rejected: 0, cg_s: 0.0 };
        for members in order.chunks_exact(self.options.batch).skip(from).take(to - from) {
            let step = self.step(held, members, theta)?;
            done.mean_loss += step.mean_loss / (to - from) as f64;
            done.cg_iters += step.cg_iters;
            done.rejected += usize::from(!step.taken);
            done.cg_s += step.cg_s;
        }
        self.state.batch_in_epoch = to;
        if to == batches {
            self.state.epoch = epoch;
            self.state.batch_in_epoch = 0;
        }
        Ok(done)
    }

    /// One step on the mini-batch `members` (positions in the training set).
    fn step(&mut self, held: &Dataset, members: &[usize], theta: &GpuBuffer<f32>) -> Result<Step, Error> {
        let gpu = self.execution.gpu;
        let options = &self.options;
        self.state.step += 1;
        // With augmentation, the mini-batch's members as this step draws them, for its
        // gradient, its products and its trial point alike.
        let draw = options.augment.is_on().then_some(AugmentDraw {
            augment: options.augment,
            seed: options.seed,
            draw: self.state.step as u64,
        });
        // This rank's part of the mini-batch, by position (all of it for one process).
        let comm = self.comm;
        let of = members.len();
        let (images, labels) = comm::gather_part(comm, held, self.total, members, draw)?;
        self.objective.load_samples(&images, &labels, self.total)?;
        let at = self.objective.batch_value_across(comm, of, theta, Some(&self.grad))?;
        if !at.f.is_finite() || !at.grad_norm.is_finite() {
            return Err(Error::Diverged { iteration: self.state.step, f: at.f, grad_norm: at.grad_norm });
        }
        let seed = options.seed.wrapping_add(self.state.step as u64);
        let mut subsample = match self.subsample.take() {
            Some(subsample) if subsample.made_with(theta) => subsample,
            _ => {
                let size = options.gn_size_for(self.total);
                let sub_options = SubsampleOptions { size, seed, memory_budget: None };
                Subsample::across(&self.execution, self.problem, comm, held, self.total, theta, &sub_options)?
            }
        };
        subsample.draw_members(held, theta, &members[..subsample.total_len()], draw)?;
        let settings = CgSettings {
            xi: options.xi,
            max_steps: options.cg_steps,
            check_every: options.cg_check_every,
            sums_per_product: options.cg_sums_per_product,
        };
        self.cg_buffers.seed_probes(seed);
        let lambda = self.state.lambda;
        let cg_started = Instant::now();
        let (grad, buffers) = (&self.grad, &mut self.cg_buffers);
        let outcome =
            cg::solve_across(gpu, comm, &subsample, lambda, grad, at.grad_norm, &settings, buffers)?;
        let cg_s = cg_started.elapsed().as_secs_f64();
        self.subsample = Some(subsample);
        let mut taken = false;
        if outcome.gs < 0.0 {
            self.trial.set(gpu, theta, &self.cg_buffers.direction, 1.0)?;
            // The mini-batch is still in the workspace: only the forward pass runs again.
            let f_trial = self.objective.batch_value_across(comm, of, self.trial.point(), None)?.f;
            let predicted = outcome.gs + 0.5 * outcome.s_g_s;
            let rho = (f_trial - at.f) / predicted;
            taken = f_trial.is_finite() && f_trial < at.f;
            if taken {
                self.trial.accept(gpu)?;
            }
            if !taken || rho < 0.25 {
                self.state.lambda = rules::boosted(self.state.lambda, options.boost);
            } else if rho >= 0.75 {
                self.state.lambda *= options.drop;
            }
        } else {
            self.state.lambda = rules::boosted(self.state.lambda, options.boost);
        }
        Ok(Step { mean_loss: at.mean_loss, cg_iters: outcome.steps, cg_s, taken })
    }

    /// Accuracy of θ on `data` (across ranks, this rank's shard of the scored set), computed
    /// on the device in chunks.
    pub fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Ok(self.objective.accuracy_across(self.comm, data, theta)?.overall())
    }
}

impl Stepper for Sgn<'_> {
    fn initial_record(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Record, Error> {
        Ok(Record::Epoch(Sgn::initial_record(self, train, theta)?))
    }

    fn advance(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Option<Record>, Error> {
        Ok(Some(Record::Epoch(Sgn::advance(self, train, theta)?)))
    }

    fn finished(&self) -> bool {
        Sgn::finished(self)
    }

    fn out_of_time(&self) -> bool {
        self.state.epoch < self.options.epochs
    }

    fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Sgn::accuracy(self, data, theta)
    }

    fn state_json(&self) -> String {
        serde_json::to_string(&self.state).expect("the state serialises")
    }
}

/// Trains θ in place by SGN for the configured epochs, reporting θ0 (epoch 0) and every epoch
/// (or part of one, `evals_per_epoch`).
pub fn train(
    execution: &Execution,
    problem: &Problem,
    train: &Dataset,
    test: Option<&Dataset>,
    theta: &GpuBuffer<f32>,
    options: &SgnOptions,
    observer: &mut dyn Observer,
) -> Result<SgnState, Error> {
    train_across(execution, problem, &SingleProcess, train, train.len(), test, theta, options, observer)
}

/// [`train`] as one rank of a data-parallel job (see [`Sgn::across`]): `held` is this rank's
/// shard of a training set of `total` samples, `test` its shard of the test set.
#[allow(clippy::too_many_arguments)]
pub fn train_across(
    execution: &Execution,
    problem: &Problem,
    comm: &dyn Communicator,
    held: &Dataset,
    total: usize,
    test: Option<&Dataset>,
    theta: &GpuBuffer<f32>,
    options: &SgnOptions,
    observer: &mut dyn Observer,
) -> Result<SgnState, Error> {
    let mut sgn = Sgn::across(execution, problem, comm, held, total, options)?;
    super::drive(&mut sgn, Sets { train: held, test, validation: None }, theta, observer)?;
    Ok(sgn.state)
}
