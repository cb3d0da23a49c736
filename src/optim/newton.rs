//! Subsampled Gauss-Newton Newton-CG (Wang, Tan and Lin 2020; simpleNN's algorithm and
//! defaults):
//! each iteration takes f and ∇f on the whole training set, draws a fresh subsample S, solves
//! (G_S + λI)s = −∇f by CG on the device, backtracks from α = 1 (Armijo), steps, and adjusts
//! λ by the ratio of actual to predicted reduction.

use std::time::{Duration, Instant};

use crate::comm::{self, Communicator, SingleProcess};
use crate::curvature::{Subsample, SubsampleOptions};
use crate::data::{Augment, Dataset};
use crate::error::Error;
use crate::execution::Execution;
use crate::gpu::GpuBuffer;
use crate::objective::{Evaluation, Objective};
use crate::problem::Problem;
use crate::rules::{self, most};

use super::cg::{self, CgBuffers, CgSettings, PreconditionerOptions};
use super::trial::TrialPoint;
use super::{IterationRecord, Observer, Record, Sets, Stepper};

/// The settings of Newton-CG; the defaults are simpleNN's.
#[derive(Clone, Debug, PartialEq)]
pub struct NewtonOptions {
    /// |S|; None: ⌈5% of l⌉.
    pub gn_size: Option<usize>,
    pub iter_max: usize,
    /// CG stops when ‖r‖ ≤ xi·‖∇f‖.
    pub xi: f64,
    pub cg_max: usize,
    /// Initial λ.
    pub lambda: f64,
    /// λ ← λ·drop when ρ ≥ 0.75.
    pub drop: f64,
    /// λ ← λ·boost when ρ < 0.25 or the line search fails.
    pub boost: f64,
    /// Armijo constant: accept α when f(θ + αs) − f(θ) ≤ eta·α·∇fᵀs.
    pub eta: f64,
    /// The line search halves α at most this many times; then no step is taken.
    pub max_halvings: usize,
    /// The host reads the CG residual back every this many CG steps (at least 1). The device
    /// stops CG by itself; this says how soon the host notices and stops submitting, not
    /// what CG computes.
    pub cg_check_every: usize,
    /// Across ranks, the most pieces a CG step's product is read and summed in: each piece
    /// ends where the backward pass has finished a tail of θ's layers, and is summed while
    /// the device computes the next (1: the whole product once it is done).
    pub cg_sums_per_product: usize,
    /// Stop once ‖∇f‖ falls to this.
    pub grad_tol: Option<f64>,
    /// Stop after the iteration that passes this much training time.
    pub time_budget: Option<Duration>,
    /// Seed of the subsamples (iteration k draws with seed + k).
    pub seed: u64,
    /// Precondition CG with the estimated diagonal of G_S (None: plain CG, simpleNN's).
    pub precondition: Option<PreconditionerOptions>,
    /// Augment the training set: iteration k draws one augmented copy (draw k) and takes f,
    /// ∇f, the subsample's products and the line search all on it, so that they compare one
    /// objective.
    pub augment: Augment,
}

impl NewtonOptions {
    /// |S| for a training set of `l` samples: gn_size (which [`NewtonOptions::validate`]
    /// holds to 1..=l), or ⌈5% of l⌉ (simpleNN's default).
    pub fn gn_size_for(&self, l: usize) -> usize {
        self.gn_size.unwrap_or(l.div_ceil(20))
    }
}

impl Default for NewtonOptions {
    fn default() -> Self {
        Self {
            gn_size: None,
            iter_max: 100,
            xi: 0.1,
            cg_max: 250,
            lambda: 1.0,
            drop: 2.0 / 3.0,
            boost: 1.5,
            eta: 1e-4,
            max_halvings: 20,
            cg_check_every: 4,
            cg_sums_per_product: cg::DEFAULT_SUMS_PER_PRODUCT,
            grad_tol: None,
            time_budget: None,
            seed: 0,
            precondition: None,
            augment: Augment::NONE,
        }
    }
}

/// Where a run stands between iterations: with θ, enough to resume it exactly.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NewtonState {
    /// Iterations done.
    pub iteration: usize,
    pub lambda: f64,
    /// Training seconds so far.
    pub elapsed_s: f64,
}

pub use super::driver::StopReason;

/// A Newton-CG run: the buffers it reuses every iteration and its state. [`Newton::step`]
/// runs one iteration; [`train`] runs them all.
pub struct Newton<'a> {
    execution: Execution<'a>,
    comm: &'a dyn Communicator,
    /// l, the training set's size over every rank.
    total: usize,
    problem: &'a Problem,
    options: NewtonOptions,
    objective: Objective<'a>,
    grad: GpuBuffer<f32>,
    /// θ + αs, the line search's trial point.
    trial: TrialPoint,
    trial_grad: GpuBuffer<f32>,
    /// f and ∇f at θ (∇f in `grad`) when the last line search accepted α = 1, whose trial
    /// point was evaluated with its gradient: the next iteration starts from them.
    known: Option<Evaluation>,
    cg_buffers: CgBuffers,
    gn_size: usize,
    /// The subsample, drawn afresh each iteration into the same device buffers.
    subsample: Option<Subsample<'a>>,
    pub state: NewtonState,
}

impl<'a> Newton<'a> {
    pub fn new(
        execution: &Execution<'a>,
        problem: &'a Problem,
        train: &Dataset,
        options: &NewtonOptions,
    ) -> Result<Self, Error> {
        Self::across(execution, problem, &SingleProcess, train, train.len(), options)
    }

    /// Newton-CG as rank `comm.rank()` of a data-parallel job on a training set of `total`
    /// samples, of which this rank holds its [`comm::shard`] in `held` (which
    /// [`Newton::step`] is then given too): f and ∇f over the shards, summed; each
    /// subsample drawn by position in the whole set as one process draws it, the rank
    /// computing over its part ([`Subsample::across`]); CG summing the parts of each product
    /// ([`cg::solve_across`]). Every decision is taken from summed values or rank 0's, so
    /// every rank takes the same steps as one process.
    pub fn across(
        execution: &Execution<'a>,
        problem: &'a Problem,
        comm: &'a dyn Communicator,
        held: &Dataset,
        total: usize,
        options: &NewtonOptions,
    ) -> Result<Self, Error> {
        options.validate(total)?;
        options.check_ranks(total, comm.size())?;
        super::check_held(held, total, comm)?;
        let gn_size = options.gn_size_for(total);
        super::check_augment(options.augment, held, 1)?;
        let (gpu, n) = (execution.gpu, problem.network.param_count());
        Ok(Self {
            execution: *execution,
            comm,
            total,
            problem,
            objective: Objective::new(execution, problem)?,
            grad: gpu.zeros::<f32>(n, "∇f")?,
            trial: TrialPoint::new(gpu, n)?,
            trial_grad: gpu.zeros::<f32>(n, "∇f(θ + s)")?,
            known: None,
            cg_buffers: CgBuffers::preconditioned(gpu, n, options.precondition)?,
            gn_size,
            subsample: None,
            state: NewtonState { iteration: 0, lambda: options.lambda, elapsed_s: 0.0 },
            options: options.clone(),
        })
    }

    /// Continues a run from `state` (a checkpoint's), checked first: λ from 0 to 1e20, the
    /// iterations done at most this run's, the seconds finite and ≥ 0.
    pub fn resume(&mut self, state: NewtonState) -> Result<(), Error> {
        rules::damping("lambda", state.lambda).map_err(Error::in_state)?;
        rules::non_negative("elapsed_s", state.elapsed_s).map_err(Error::in_state)?;
        if state.iteration > self.options.iter_max {
            return Err(Error::State {
                field: "iteration",
                expected: format!("at most this run's iterations, {}", self.options.iter_max),
                found: state.iteration.to_string(),
            });
        }
        self.known = None;
        self.state = state;
        Ok(())
    }

    /// Reports progress through each evaluation of f and ∇f (see [`Objective::set_progress`]).
    pub fn set_progress(&mut self, progress: Option<crate::objective::Progress<'a>>) {
        self.objective.set_progress(progress);
    }

    /// |S|.
    pub fn gn_size(&self) -> usize {
        self.gn_size
    }

    /// True when the run should stop before another iteration.
    pub fn finished(&self) -> bool {
        self.state.iteration >= self.options.iter_max
            || self.options.time_budget.is_some_and(|budget| self.state.elapsed_s >= budget.as_secs_f64())
    }

    /// The record of θ as it stands before the next iteration (θ0's, iteration 0, in a fresh
    /// run): f and ‖∇f‖ at θ, no step, the training seconds so far. The evaluation is kept
    /// for the next iteration, which would make it anyway, and its time counted there.
    pub fn initial_record(
        &mut self,
        held: &Dataset,
        theta: &GpuBuffer<f32>,
    ) -> Result<IterationRecord, Error> {
        let started = Instant::now();
        let (comm, total) = (self.comm, self.total);
        let eval = self.objective.value_and_grad_across(comm, held, total, theta, &self.grad)?;
        self.known = Some(eval);
        let record = IterationRecord {
            iter: self.state.iteration,
            f: eval.f,
            grad_norm: Some(eval.grad_norm),
            alpha: 0.0,
            rho: 0.0,
            lambda: self.state.lambda,
            cg_iters: 0,
            accepted: true,
            elapsed_s: self.state.elapsed_s,
            cg_s: 0.0,
            comm_s: 0.0,
            test_acc: None,
            val_acc: None,
        };
        self.state.elapsed_s += started.elapsed().as_secs_f64();
        Ok(record)
    }

    /// One iteration on θ (updated in place unless the line search fails); `held` is this
    /// rank's shard of the training set (all of it for one process). The record's test
    /// accuracy is None; see [`Newton::accuracy`]. Returns None when ‖∇f‖ is already within
    /// the tolerance (nothing is done).
    pub fn step(&mut self, held: &Dataset, theta: &GpuBuffer<f32>) -> Result<Option<IterationRecord>, Error> {
        let started = Instant::now();
        let k = self.state.iteration + 1;
        let (comm, total) = (self.comm, self.total);
        // With augmentation, this iteration's copy of the training set (of this rank's shard,
        // each sample drawn as at its position in the whole set): f and ∇f at θ are evaluated
        // afresh on it.
        let augment = self.options.augment;
        let first = comm::shard(total, comm.rank(), comm.size()).start;
        let copy = augment.is_on().then(|| augment.apply(held, first, self.options.seed, k as u64));
        if copy.is_some() {
            self.known = None;
        }
        let shard = copy.as_ref().unwrap_or(held);
        let (gpu, options) = (self.execution.gpu, &self.options);
        let eval = match self.known.take() {
            Some(eval) => eval,
            None => self.objective.value_and_grad_across(comm, shard, total, theta, &self.grad)?,
        };
        if !eval.f.is_finite() || !eval.grad_norm.is_finite() {
            return Err(Error::Diverged { iteration: k, f: eval.f, grad_norm: eval.grad_norm });
        }
        if options.grad_tol.is_some_and(|tol| eval.grad_norm <= tol) {
            return Ok(None);
        }

        let cg_started = Instant::now();
        let seed = options.seed.wrapping_add(k as u64);
        let subsample = match self.subsample.take() {
            Some(mut subsample) if subsample.made_with(theta) => {
                subsample.redraw(shard, theta, seed)?;
                subsample
            }
            _ => {
                let sub_options = SubsampleOptions { size: self.gn_size, seed, memory_budget: None };
                Subsample::across(&self.execution, self.problem, comm, shard, total, theta, &sub_options)?
            }
        };
        let lambda = self.state.lambda;
        let settings = CgSettings {
            xi: options.xi,
            max_steps: options.cg_max,
            check_every: options.cg_check_every,
            sums_per_product: options.cg_sums_per_product,
        };
        let (grad, buffers) = (&self.grad, &mut self.cg_buffers);
        buffers.seed_probes(seed);
        let outcome =
            cg::solve_across(gpu, comm, &subsample, lambda, grad, eval.grad_norm, &settings, buffers)?;
        self.subsample = Some(subsample);
        let cg_s = cg_started.elapsed().as_secs_f64();

        // Armijo backtracking from α = 1 on θ + αs, at most max_halvings halvings. The full
        // step is evaluated with its gradient: it is usually accepted, and then the next
        // iteration needs no gradient of its own.
        let mut alpha = 1.0;
        // f and ‖∇f‖ (when known) at the accepted point.
        let mut accepted: Option<(f64, Option<f64>)> = None;
        if outcome.gs < 0.0 {
            for halvings in 0..=options.max_halvings {
                self.trial.set(gpu, theta, &self.cg_buffers.direction, alpha)?;
                let point = self.trial.point();
                let trial_eval = if halvings == 0 {
                    self.objective.value_and_grad_across(comm, shard, total, point, &self.trial_grad)?
                } else {
                    self.objective.value_across(comm, shard, total, point)?
                };
                let f_trial = trial_eval.f;
                if f_trial.is_finite() && f_trial - eval.f <= options.eta * alpha * outcome.gs {
                    let mut grad_norm = None;
                    if halvings == 0 {
                        std::mem::swap(&mut self.grad, &mut self.trial_grad);
                        self.known = Some(trial_eval);
                        grad_norm = Some(trial_eval.grad_norm);
                    }
                    accepted = Some((f_trial, grad_norm));
                    break;
                }
                alpha /= 2.0;
            }
        }
        let (rho, alpha, f, grad_norm) = match accepted {
            Some((f_new, grad_norm)) => {
                self.trial.accept(gpu)?;
                let predicted = alpha * outcome.gs + 0.5 * alpha * alpha * outcome.s_g_s;
                let rho = (f_new - eval.f) / predicted;
                if rho < 0.25 {
                    self.state.lambda = rules::boosted(self.state.lambda, options.boost);
                } else if rho >= 0.75 {
                    self.state.lambda *= options.drop;
                }
                (rho, alpha, f_new, grad_norm)
            }
            None => {
                // No step: θ stays, and so do f and ∇f (in `grad`) for the next iteration;
                // more damping shortens its direction.
                self.state.lambda = rules::boosted(self.state.lambda, options.boost);
                self.known = Some(eval);
                (0.0, 0.0, eval.f, Some(eval.grad_norm))
            }
        };
        gpu.wait()?;
        self.state.elapsed_s += started.elapsed().as_secs_f64();
        self.state.iteration = k;
        Ok(Some(IterationRecord {
            iter: k,
            f,
            grad_norm,
            alpha,
            rho,
            lambda: self.state.lambda,
            cg_iters: outcome.steps,
            accepted: accepted.is_some(),
            elapsed_s: self.state.elapsed_s,
            cg_s,
            comm_s: outcome.comm_s,
            test_acc: None,
            val_acc: None,
        }))
    }

    /// Accuracy of θ on `data` (across ranks, this rank's shard of the scored set), computed
    /// on the device in chunks.
    pub fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Ok(self.objective.accuracy_across(self.comm, data, theta)?.overall())
    }
}

/// Trains θ in place by Newton-CG until a stopping rule holds, reporting θ0 (iteration 0) and
/// every iteration (with the test accuracy when `test` is given, evaluated outside the
/// training time).
pub fn train(
    execution: &Execution,
    problem: &Problem,
    train: &Dataset,
    test: Option<&Dataset>,
    theta: &GpuBuffer<f32>,
    options: &NewtonOptions,
    observer: &mut dyn Observer,
) -> Result<(StopReason, NewtonState), Error> {
    train_across(execution, problem, &SingleProcess, train, train.len(), test, theta, options, observer)
}

/// [`train`] as one rank of a data-parallel job (see [`Newton::across`]): `held` is this
/// rank's shard of a training set of `total` samples, `test` its shard of the test set.
#[allow(clippy::too_many_arguments)]
pub fn train_across(
    execution: &Execution,
    problem: &Problem,
    comm: &dyn Communicator,
    held: &Dataset,
    total: usize,
    test: Option<&Dataset>,
    theta: &GpuBuffer<f32>,
    options: &NewtonOptions,
    observer: &mut dyn Observer,
) -> Result<(StopReason, NewtonState), Error> {
    let mut newton = Newton::across(execution, problem, comm, held, total, options)?;
    let reason = super::drive(&mut newton, Sets { train: held, test, validation: None }, theta, observer)?;
    Ok((reason, newton.state))
}

impl Stepper for Newton<'_> {
    fn initial_record(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Record, Error> {
        Ok(Record::Newton(Newton::initial_record(self, train, theta)?))
    }

    fn advance(&mut self, train: &Dataset, theta: &GpuBuffer<f32>) -> Result<Option<Record>, Error> {
        Ok(self.step(train, theta)?.map(Record::Newton))
    }

    fn finished(&self) -> bool {
        Newton::finished(self)
    }

    fn out_of_time(&self) -> bool {
        self.state.iteration < self.options.iter_max
    }

    fn accuracy(&mut self, data: &Dataset, theta: &GpuBuffer<f32>) -> Result<f64, Error> {
        Newton::accuracy(self, data, theta)
    }

    fn state_json(&self) -> String {
        serde_json::to_string(&self.state).expect("the state serialises")
    }
}

impl NewtonOptions {
    /// Checks that |S| on `l` samples is at least `ranks`: across ranks each holds a part of S.
    pub fn check_ranks(&self, l: usize, ranks: usize) -> Result<(), Error> {
        let gn_size = self.gn_size_for(l);
        if gn_size < ranks {
            return Err(Error::Setting {
                field: "gn_size",
                expected: format!("at least the number of ranks, {ranks}, each holding a part of S"),
                found: gn_size.to_string(),
            });
        }
        Ok(())
    }

    /// Checks every setting, for a training set of `l` samples.
    pub fn validate(&self, l: usize) -> Result<(), Error> {
        rules::count("training set", l)?;
        rules::damping("lambda", self.lambda)?;
        rules::open_unit("xi", self.xi)?;
        rules::unit_to_one("drop", self.drop)?;
        rules::at_least_one("boost", self.boost)?;
        rules::open_unit("eta", self.eta)?;
        rules::count_in("iter_max", self.iter_max, 0, most::ITERATIONS)?;
        rules::count_in("cg_max", self.cg_max, 1, most::CG_STEPS)?;
        rules::count_in("cg_check_every", self.cg_check_every, 1, most::CHECK_EVERY)?;
        rules::count_in("cg_sums_per_product", self.cg_sums_per_product, 1, most::SUMS_PER_PRODUCT)?;
        if let Some(size) = self.gn_size {
            rules::count_up_to("gn_size", size, l, "from 1 to the number of training samples")?;
        }
        if let Some(tol) = self.grad_tol {
            rules::non_negative("grad_tol", tol)?;
        }
        if let Some(precondition) = &self.precondition {
            precondition.validate()?;
        }
        Ok(())
    }
}
