//! Conjugate gradient for (G_S + λI)s = −g, entirely on the device.
//!
//! A step (the product, two dots that α and β finish, the vector updates, the test that ends
//! CG) is a program recorded once per subsample and replayed: one submit per step, and
//! nothing created on the device. The device decides when CG ends: converged (‖r‖ ≤ ξ‖g‖,
//! tested in f32 with the bound that gives the host's f64 answer), broken down (pᵀ(G+λI)p ≤ 0)
//! or non-finite; then the following steps skip their product (its dispatches are indirect,
//! and the step zeroes their counts) and change nothing. The host keeps up to [`DEPTH`] steps
//! in flight, reads the scalars back every `check_every` steps through a ring of staging
//! buffers while later steps run, and stops submitting once it sees CG stopped: it never
//! drains the queue inside CG, and the result is exactly the one a check after every step
//! gives. A submit holds the steps between two looks (one step on a software GPU, four
//! elsewhere, by default) and the read.
//!
//! Preconditioned ([`CgBuffers::preconditioned`]), CG solves with M = (diag(G_S) + λ +
//! 1/(C·l))^0.75 (Martens' form), the diagonal of G_S estimated before every solve on that
//! solve's subsample as the mean of v ⊙ G_S v over random sign probes v (Bekas, Kokiopoulou and
//! Saad's estimator): the recurrences run on ρ = rᵀM⁻¹r, and sᵀ(G + λI)s is Σ α ρ.

use std::collections::VecDeque;

use crate::comm::{self, CommError, Communicator};
use crate::curvature::{Damping, Subsample};
use crate::error::Error;
use crate::gpu::{Gpu, GpuBuffer, IndirectArgs, Program, ReadRing, ReadTicket, Recorder};
use crate::kernels::blas1;
pub use crate::kernels::cg::Stop;
use crate::kernels::cg::{self as kernels, slot};
use crate::nn::device::GradientDone;
use crate::rules;

/// Submits of CG steps in flight at most: the host takes the oldest's read before submitting
/// another.
pub const DEPTH: usize = 3;

/// Pieces a CG step's product is summed in across ranks unless asked otherwise
/// ([`CgSettings::sums_per_product`]).
pub const DEFAULT_SUMS_PER_PRODUCT: usize = 2;

/// The programs of solves on one subsample, from one gradient buffer.
struct Programs {
    /// The subsample and the gradient buffer they bind.
    key: (u64, u64),
    /// s = 0, r = −g, p = r, rᵀr.
    start: Program,
    /// One CG step, its product an indirect section.
    step: Program,
    section: IndirectArgs,
    /// gᵀs and sᵀs.
    end: Program,
    /// A step across ranks, in two (recorded only there).
    split: Option<Split>,
    /// With a preconditioner: its estimate of diag(G_S) on this subsample, and M⁻¹.
    refresh: Option<Refresh>,
}

/// A CG step across ranks: the rank's part of the product, and after the parts are summed on
/// the host, the rest of the step. The product is gated like the one-process step's (the rest
/// closes the gate once the device's stop test holds) and cut into pieces at points of its
/// backward pass where a tail of its values is final: each piece's submit reads the values it
/// finished, so the host sums one piece while the device computes the next. The first read
/// also carries the device's stop slot, so that the sums of a step carry both the product and
/// the decision.
struct Split {
    /// The most pieces asked for ([`CgSettings::sums_per_product`]).
    requested: usize,
    pieces: Vec<Program>,
    /// The product's values each piece's read carries, tails first: the first ends at n.
    ranges: Vec<std::ops::Range<usize>>,
    /// One read per piece, a step's read taken before the next step submits it again.
    reads: Vec<ReadRing<f32>>,
    section: IndirectArgs,
    rest: Program,
}

/// Where to cut a product whose backward pass finishes tails at `done` (growing) into
/// `pieces` pieces, or as many as it has points (a layer with parameters each): the j-th cut
/// the point whose tail is nearest j/pieces of θ, each later than the one before and leaving
/// a point for each cut after it. The point that finishes all of θ is the product's end, not
/// a cut.
fn cut_points(done: &[GradientDone], n: usize, pieces: usize) -> Vec<GradientDone> {
    let candidates: Vec<GradientDone> = done.iter().copied().filter(|d| d.from > 0).collect();
    let count = pieces.saturating_sub(1).min(candidates.len());
    let mut cuts: Vec<GradientDone> = Vec::with_capacity(count);
    let mut next = 0;
    for j in 1..=count {
        let share = j * n / (count + 1);
        let last = candidates.len() - (count - j);
        let distance = |d: &GradientDone| (n - d.from).abs_diff(share);
        let (offset, &point) = candidates[next..last]
            .iter()
            .enumerate()
            .min_by_key(|(_, d)| distance(d))
            .expect("a point is left for each cut");
        cuts.push(point);
        next += offset + 1;
    }
    cuts
}

/// The programs that estimate diag(G_S) and make M⁻¹: one probe is recorded and replayed for
/// every probe (each draws its signs from the PROBE_INDEX slot and moves it on), so that what
/// is recorded does not grow with the number of probes.
struct Refresh {
    /// The estimate set to 0.
    clear: Program,
    /// One probe in two, so that across ranks the product's parts are summed between them:
    /// v and (this rank's part of) G_S v; then the estimate += v ⊙ G_S v / probes.
    probe: Program,
    accumulate: Program,
    /// M⁻¹ from the estimate.
    invert: Program,
}

/// How the diagonal preconditioner estimates diag(G_S).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PreconditionerOptions {
    /// Random sign probes per solve, each one product G_S v. Each solve estimates afresh
    /// (its subsample and θ are new), so that nothing but the seed carries from one solve to
    /// the next and a resumed run solves as an uninterrupted one.
    pub probes: usize,
    /// M = (diag + λ + 1/(C·l))^exponent; Martens used 0.75.
    pub exponent: f64,
}

impl Default for PreconditionerOptions {
    fn default() -> Self {
        Self { probes: 2, exponent: 0.75 }
    }
}

impl PreconditionerOptions {
    pub fn validate(&self) -> Result<(), Error> {
        rules::count_in("probes", self.probes, 1, rules::most::PROBES)?;
        rules::non_negative("exponent", self.exponent)
    }
}

/// The preconditioner's vectors: the estimate of diag(G_S), M⁻¹, a probe and its product,
/// and z = M⁻¹r.
struct Preconditioner {
    options: PreconditionerOptions,
    diagonal: GpuBuffer<f32>,
    m_inv: GpuBuffer<f32>,
    probe: GpuBuffer<f32>,
    probe_product: GpuBuffer<f32>,
    z: GpuBuffer<f32>,
    /// The next solve's seed for its probes' signs (see [`CgBuffers::seed_probes`]).
    seed: u32,
}

/// The vectors and scalars of a solve, and its programs; allocated once per run.
pub struct CgBuffers {
    /// The solution s.
    pub direction: GpuBuffer<f32>,
    residual: GpuBuffer<f32>,
    conjugate: GpuBuffer<f32>,
    product: GpuBuffer<f32>,
    scalars: GpuBuffer<f32>,
    scratch: GpuBuffer<f32>,
    ring: ReadRing<f32>,
    programs: Option<Programs>,
    preconditioner: Option<Preconditioner>,
}

impl CgBuffers {
    pub fn new(gpu: &Gpu, n: usize) -> Result<Self, Error> {
        Self::preconditioned(gpu, n, None)
    }

    /// Buffers for CG preconditioned as `preconditioner` says (None: plain CG).
    pub fn preconditioned(
        gpu: &Gpu,
        n: usize,
        preconditioner: Option<PreconditionerOptions>,
    ) -> Result<Self, Error> {
        let preconditioner = match preconditioner {
            None => None,
            Some(options) => {
                options.validate()?;
                Some(Preconditioner {
                    options,
                    diagonal: gpu.zeros(n, "estimate of diag(G_S)")?,
                    m_inv: gpu.zeros(n, "CG M⁻¹")?,
                    probe: gpu.zeros(n, "probe v")?,
                    probe_product: gpu.zeros(n, "probe G_S v")?,
                    z: gpu.zeros(n, "CG z = M⁻¹r")?,
                    seed: 0,
                })
            }
        };
        Ok(Self {
            preconditioner,
            direction: gpu.zeros(n, "CG s")?,
            residual: gpu.zeros(n, "CG r")?,
            conjugate: gpu.zeros(n, "CG p")?,
            product: gpu.zeros(n, "CG (G + λI)p")?,
            scalars: gpu.zeros(slot::COUNT, "CG scalars")?,
            scratch: gpu.zeros(kernels::step_sums_len(n), "CG partial sums")?,
            // One read per step in flight, and the final one.
            ring: gpu.read_ring(slot::COUNT, DEPTH + 1)?,
            programs: None,
        })
    }

    /// True when CG is preconditioned.
    pub fn is_preconditioned(&self) -> bool {
        self.preconditioner.is_some()
    }

    /// M⁻¹ of the last solve (preconditioned CG only).
    pub fn inverse_preconditioner(&self) -> Option<&GpuBuffer<f32>> {
        self.preconditioner.as_ref().map(|pc| &pc.m_inv)
    }

    /// Products G_S v a solve spends on the preconditioner's probes.
    pub fn probes_per_solve(&self) -> usize {
        self.preconditioner.as_ref().map_or(0, |pc| pc.options.probes)
    }

    /// Seeds the next solve's probes (the optimisers give their iteration or step number, so
    /// that a resumed run draws the signs an uninterrupted one does); each solve moves the
    /// seed on by one.
    pub fn seed_probes(&mut self, seed: u64) {
        if let Some(pc) = &mut self.preconditioner {
            pc.seed = (seed % (1 << 24)) as u32;
        }
    }

    /// The scalars a solve starts from: the damping (`damping`, on this rank), λ + 1/(C·l)
    /// (`shift`), the stop bound, and the probes' seed (moved on for the next solve).
    fn initial_scalars(&mut self, damping: f32, shift: f32, tol_rr: f32) -> Vec<f32> {
        let mut scalars = vec![0.0f32; slot::COUNT];
        scalars[slot::DAMPING] = damping;
        scalars[slot::SHIFT] = shift;
        scalars[slot::TOL_RR] = tol_rr;
        if let Some(pc) = &mut self.preconditioner {
            // A whole number below 2^24, which f32 holds exactly.
            scalars[slot::PROBE_SEED] = pc.seed as f32;
            pc.seed = (pc.seed + 1) % (1 << 24);
        }
        scalars
    }

    /// Across ranks, the pieces the last solve's product was read and summed in (at most
    /// [`CgSettings::sums_per_product`], at most the network's layers with parameters); None
    /// before a solve across ranks.
    pub fn sums_per_step(&self) -> Option<usize> {
        self.programs.as_ref().and_then(|p| p.split.as_ref()).map(|split| split.pieces.len())
    }

    /// Dispatches of the recorded programs: the start, one step, the end.
    pub fn dispatches_per_program(&self) -> Option<(usize, usize, usize)> {
        self.programs.as_ref().map(|p| (p.start.dispatches(), p.step.dispatches(), p.end.dispatches()))
    }

    /// The programs for `subsample` and `grad`, recorded if they are not the last ones;
    /// across ranks (`pieces`), with the step split in two and its product in up to that many
    /// pieces.
    fn programs(
        &mut self,
        gpu: &Gpu,
        subsample: &Subsample,
        grad: &GpuBuffer<f32>,
        pieces: Option<usize>,
    ) -> Result<&Programs, Error> {
        let key = (subsample.id(), grad.id());
        let recorded = |p: &Programs| p.split.as_ref().map(|split| split.requested);
        if self.programs.as_ref().is_none_or(|p| p.key != key || recorded(p) != pieces) {
            self.programs = Some(self.record(gpu, subsample, grad, key, pieces)?);
        }
        Ok(self.programs.as_ref().expect("recorded above"))
    }

    fn record(
        &self,
        gpu: &Gpu,
        subsample: &Subsample,
        grad: &GpuBuffer<f32>,
        key: (u64, u64),
        pieces: Option<usize>,
    ) -> Result<Programs, Error> {
        let (s, r, p, ap) = (&self.direction, &self.residual, &self.conjugate, &self.product);
        let (scalars, scratch, n) = (&self.scalars, &self.scratch, s.len());
        let mut rec = gpu.recorder();
        blas1::fill(&mut rec, s, n, 0.0)?;
        blas1::copy(&mut rec, grad, 0, r, 0, n)?;
        blas1::scale(&mut rec, -1.0, r, n)?;
        blas1::dot(&mut rec, r, r, n, scratch, scalars, slot::RR)?;
        match &self.preconditioner {
            None => {
                blas1::copy(&mut rec, r, 0, p, 0, n)?;
                blas1::dot(&mut rec, r, r, n, scratch, scalars, slot::RHO)?;
            }
            Some(pc) => {
                kernels::precondition(&mut rec, &pc.m_inv, r, &pc.z)?;
                blas1::copy(&mut rec, &pc.z, 0, p, 0, n)?;
                blas1::dot(&mut rec, r, &pc.z, n, scratch, scalars, slot::RHO)?;
            }
        }
        let start = rec.finish()?;
        let refresh = match &self.preconditioner {
            None => None,
            Some(pc) => {
                let mut rec = gpu.recorder();
                blas1::fill(&mut rec, &pc.diagonal, n, 0.0)?;
                let clear = rec.finish()?;
                let mut rec = gpu.recorder();
                let weight = (1.0 / pc.options.probes as f64) as f32;
                let (v, gv) = (&pc.probe, &pc.probe_product);
                kernels::rademacher(&mut rec, scalars, v)?;
                subsample.record_gauss_newton(&mut rec, v, Damping::Undamped, gv)?;
                let probe = rec.finish()?;
                let mut rec = gpu.recorder();
                kernels::probe_accumulate(&mut rec, scalars, v, gv, &pc.diagonal, weight)?;
                let accumulate = rec.finish()?;
                let mut rec = gpu.recorder();
                let exponent = pc.options.exponent as f32;
                kernels::inverse_diagonal(&mut rec, scalars, &pc.diagonal, exponent, &pc.m_inv)?;
                Some(Refresh { clear, probe, accumulate, invert: rec.finish()? })
            }
        };

        let mut rec = gpu.recorder();
        rec.begin_indirect();
        subsample.record_gauss_newton(&mut rec, p, Damping::Slot { scalars, slot: slot::DAMPING }, ap)?;
        let section = rec.end_indirect()?;
        self.record_after_product(&mut rec, &section)?;
        let step = rec.finish()?;

        let mut rec = gpu.recorder();
        blas1::dot(&mut rec, grad, s, n, scratch, scalars, slot::GS)?;
        blas1::dot(&mut rec, s, s, n, scratch, scalars, slot::SS)?;
        let end = rec.finish()?;
        let Some(requested) = pieces else {
            return Ok(Programs { key, start, step, section, end, split: None, refresh });
        };

        let mut rec = gpu.recorder();
        rec.begin_indirect();
        let damping = Damping::Slot { scalars, slot: slot::DAMPING };
        let done = subsample.record_gauss_newton_marked(&mut rec, p, damping, ap)?;
        let split_section = rec.end_indirect()?;
        let cuts = cut_points(&done, n, requested);
        let pieces = rec.finish_parts(&cuts.iter().map(|c| c.dispatch).collect::<Vec<_>>())?;
        let ends: Vec<usize> = std::iter::once(n).chain(cuts.iter().map(|c| c.from)).collect();
        let starts = cuts.iter().map(|c| c.from).chain(std::iter::once(0));
        let ranges: Vec<_> = starts.zip(&ends).map(|(start, &end)| start..end).collect();
        // The first read carries the stop slot after its values.
        let reads = ranges
            .iter()
            .enumerate()
            .map(|(i, range)| gpu.read_ring(range.len() + usize::from(i == 0), 1))
            .collect::<Result<_, _>>()?;
        let mut rec = gpu.recorder();
        self.record_after_product(&mut rec, &split_section)?;
        let rest = rec.finish()?;
        let split = Split { requested, pieces, ranges, reads, section: split_section, rest };
        Ok(Programs { key, start, step, section, end, split: Some(split), refresh })
    }

    /// A step after its product: the partial sums of pᵀ(G + λI)p, then advance (α finished
    /// from them; s, r, z; the partial sums of rᵀr and rᵀz) and conjugate (β finished from
    /// those, with the stop test and the next product's counts in `section`; p).
    fn record_after_product(&self, rec: &mut Recorder, section: &IndirectArgs) -> Result<(), Error> {
        let (s, r, p, ap) = (&self.direction, &self.residual, &self.conjugate, &self.product);
        let (scalars, sums, n) = (&self.scalars, &self.scratch, s.len());
        blas1::dot_partials(rec, p, ap, n, sums)?;
        let preconditioner = self.preconditioner.as_ref().map(|pc| (&pc.m_inv, &pc.z));
        kernels::advance(rec, scalars, sums, &kernels::StepVectors { p, ap, s, r, preconditioner })?;
        let source = preconditioner.map_or(r, |(_, z)| z);
        kernels::conjugate(rec, scalars, sums, source, p, preconditioner.is_some(), section)?;
        Ok(())
    }
}

/// When CG stops.
#[derive(Clone, Copy, Debug)]
pub struct CgSettings {
    /// Stop when ‖r‖ ≤ xi·‖g‖.
    pub xi: f64,
    pub max_steps: usize,
    /// Read the residual back every this many steps (at least 1).
    pub check_every: usize,
    /// Across ranks, the most pieces a step's product is read and summed in (at least 1):
    /// cut where the backward pass has finished a tail of θ's layers, each piece is summed
    /// while the device computes the next. 1 sums the whole product once it is done.
    pub sums_per_product: usize,
}

/// How a solve ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CgOutcome {
    /// Steps whose update was kept.
    pub steps: usize,
    pub residual_norm: f64,
    /// Why CG stopped before max_steps, if it did.
    pub stop: Option<Stop>,
    /// True when a step had pᵀ(G + λI)p ≤ 0 or a non-finite value; s is the last good iterate.
    pub broke_down: bool,
    /// gᵀs.
    pub gs: f64,
    /// sᵀG_S s without the λ term, from the CG recurrences: Σ αᵢ rᵢᵀrᵢ − λ sᵀs.
    pub s_g_s: f64,
    /// Across ranks, the seconds spent exchanging the products' parts (read back, summed,
    /// written back) and the decisions; 0 for one process.
    pub comm_s: f64,
}

/// The largest f32 bound b with rᵀr ≤ b exactly when √rᵀr ≤ `tolerance` in f64, for every
/// f32 rᵀr: the device's test then gives the host's answer.
pub fn rr_bound(tolerance: f64) -> f32 {
    if tolerance.is_nan() || tolerance < 0.0 {
        return f32::NEG_INFINITY;
    }
    if tolerance == f64::INFINITY {
        return f32::INFINITY;
    }
    let holds = |b: f32| (b as f64).sqrt() <= tolerance;
    let mut bound = (tolerance * tolerance) as f32;
    while bound > 0.0 && !holds(bound) {
        bound = bound.next_down();
    }
    while bound.next_up().is_finite() && holds(bound.next_up()) {
        bound = bound.next_up();
    }
    bound
}

/// Solves (G_S + λI)s = −g from s = 0; the solution is left in `buffers.direction`.
pub fn solve(
    gpu: &Gpu,
    subsample: &Subsample,
    lambda: f64,
    grad: &GpuBuffer<f32>,
    grad_norm: f64,
    settings: &CgSettings,
    buffers: &mut CgBuffers,
) -> Result<CgOutcome, Error> {
    let check_every = settings.check_every.clamp(1, rules::most::CHECK_EVERY);
    let damping = subsample.damping(lambda);
    let scalars = buffers.initial_scalars(damping, damping, rr_bound(settings.xi * grad_norm));
    gpu.write(&buffers.scalars, &scalars)?;
    let probes = buffers.probes_per_solve();
    let programs = buffers.programs(gpu, subsample, grad, None)?;
    // Every step's product runs until the device says otherwise.
    gpu.write(&programs.section.args, &programs.section.host)?;
    if let Some(refresh) = &programs.refresh {
        let programs = std::iter::once(&refresh.clear)
            .chain(std::iter::repeat_n([&refresh.probe, &refresh.accumulate], probes).flatten())
            .chain(std::iter::once(&refresh.invert));
        gpu.submit(&programs.collect::<Vec<_>>())?;
    }
    gpu.submit(&[&programs.start])?;

    let Programs { step, end, .. } = buffers.programs.as_ref().expect("recorded above");
    let (ring, source) = (&mut buffers.ring, &buffers.scalars);
    // Each submit holds the steps up to the next look at the scalars, and their read.
    let mut in_flight: VecDeque<ReadTicket> = VecDeque::new();
    let (mut submitted, mut stopped) = (0, false);
    while submitted < settings.max_steps && !stopped {
        if in_flight.len() >= DEPTH {
            let oldest = in_flight.pop_front().expect("submits in flight");
            stopped = gpu.take(ring, oldest)?[slot::STOP] != 0.0;
            continue;
        }
        let count = check_every.min(settings.max_steps - submitted);
        in_flight.push_back(gpu.submit_reading(&vec![step; count], source, ring)?);
        submitted += count;
    }
    // The final figures: gᵀs and sᵀs on the device, read back with the scalars. The reads
    // still in flight are done by then and are taken without waiting.
    let last = gpu.submit_reading(&[end], source, ring)?;
    let last = gpu.take(ring, last)?;
    for ticket in in_flight {
        gpu.take(ring, ticket)?;
    }
    let figures = OUTCOME_SLOTS.map(|i| last[i] as f64);
    Ok(CgOutcome::from_figures(figures, lambda, 0.0))
}

/// The slots a solve's outcome is made of, in [`CgOutcome::from_figures`]'s order.
const OUTCOME_SLOTS: [usize; 6] = [slot::STEP, slot::RR, slot::STOP, slot::GS, slot::SS, slot::SAS];

impl CgOutcome {
    /// The outcome from the final scalars (those of [`OUTCOME_SLOTS`]) of a solve with `lambda`.
    fn from_figures([steps, rr, stop, gs, ss, sas]: [f64; 6], lambda: f64, comm_s: f64) -> Self {
        let stop = Stop::from_slot(stop as f32);
        Self {
            steps: steps as usize,
            // RR holds the residual of the last kept step (β does not move it after a stop).
            residual_norm: rr.sqrt(),
            stop,
            broke_down: matches!(stop, Some(Stop::Breakdown | Stop::NonFinite)),
            gs,
            s_g_s: sas - lambda * ss,
            comm_s,
        }
    }
}

/// [`solve`] as one rank of a data-parallel job, each rank holding its part of S
/// ([`Subsample::across`]): every step sums the ranks' parts of the product (n values read
/// back, summed, written back: the price of the sum), rank 0 alone adds the damping. The
/// product is read and summed in up to [`CgSettings::sums_per_product`] pieces, each as soon
/// as the device has finished it, while the device computes the next. Whether CG goes on is
/// rank 0's answer, carried in the first piece's read and sum: the product runs behind the
/// previous step's stop test on every device (skipped, like the one-process step's, once the
/// test holds), so a step waits for the device and sums once per piece, and CG's end costs no
/// dropped product. Ranks whose devices disagree on the test
/// (GPUs that round differently) end with an error rather than sum parts that were not all
/// computed. Preconditioned, each probe's product G_S v is summed the same way before it
/// joins the estimate, so that M is the same on every rank (and one process's, up to the order
/// of the additions). The outcome is rank 0's on every rank. With one rank this is [`solve`].
#[allow(clippy::too_many_arguments)]
pub fn solve_across(
    gpu: &Gpu,
    comm: &dyn Communicator,
    subsample: &Subsample,
    lambda: f64,
    grad: &GpuBuffer<f32>,
    grad_norm: f64,
    settings: &CgSettings,
    buffers: &mut CgBuffers,
) -> Result<CgOutcome, Error> {
    if comm.size() == 1 {
        return solve(gpu, subsample, lambda, grad, grad_norm, settings, buffers);
    }
    let rank0 = comm.rank() == 0;
    let damping = subsample.damping(lambda);
    let rank_damping = if rank0 { damping } else { 0.0 };
    let scalars = buffers.initial_scalars(rank_damping, damping, rr_bound(settings.xi * grad_norm));
    gpu.write(&buffers.scalars, &scalars)?;
    let probes = buffers.probes_per_solve();
    let pieces = settings.sums_per_product.clamp(1, rules::most::SUMS_PER_PRODUCT);
    buffers.programs(gpu, subsample, grad, Some(pieces))?;
    let n = buffers.product.len();
    let mut comm_s = 0.0;
    {
        let programs = buffers.programs.as_ref().expect("recorded above");
        let split = programs.split.as_ref().expect("recorded split");
        // Every step's product runs until the device says otherwise.
        gpu.write(&split.section.args, &split.section.host)?;
        if let (Some(refresh), Some(pc)) = (&programs.refresh, &buffers.preconditioner) {
            gpu.submit(&[&refresh.clear])?;
            for _ in 0..probes {
                gpu.submit(&[&refresh.probe])?;
                comm_s += comm::sum_on_device(gpu, comm, &pc.probe_product)?;
                gpu.submit(&[&refresh.accumulate])?;
            }
            gpu.submit(&[&refresh.invert])?;
        }
    }
    let (ap, scalars) = (&buffers.product, &buffers.scalars);
    let programs = buffers.programs.as_mut().expect("recorded above");
    let (start, split) = (&programs.start, programs.split.as_mut().expect("recorded split"));
    gpu.submit(&[start])?;
    let mut product = vec![0.0f32; n];
    let mut tickets = Vec::with_capacity(split.pieces.len());
    if settings.max_steps > 0 {
        submit_product(gpu, split, false, ap, scalars, &mut tickets)?;
    }
    for step in 0..settings.max_steps {
        // Each read waits for its piece alone: later pieces keep the device busy while this
        // one is summed. The first brings the stop test before the product.
        let mut stop = false;
        for (piece, ticket) in tickets.drain(..).enumerate() {
            let mut values = gpu.take(&mut split.reads[piece], ticket)?;
            if stop {
                // Every rank stopped at the first piece: the rest is not summed.
                continue;
            }
            let exchange = std::time::Instant::now();
            let range = split.ranges[piece].clone();
            if piece == 0 {
                // Rank 0's stop slot alone, and how many devices skipped the product.
                let stopped_here = values[range.len()] != 0.0;
                values.push(f32::from(u8::from(stopped_here)));
                if !rank0 {
                    values[range.len()] = 0.0;
                }
                comm.sum_f32(&mut values)?;
                let skipped = values[range.len() + 1] as usize;
                stop = values[range.len()] != 0.0;
                check_agreement(comm, stop, skipped)?;
            } else {
                comm.sum_f32(&mut values)?;
            }
            product[range.clone()].copy_from_slice(&values[..range.len()]);
            comm_s += exchange.elapsed().as_secs_f64();
        }
        if stop {
            break;
        }
        gpu.write(ap, &product)?;
        if step + 1 < settings.max_steps {
            submit_product(gpu, split, true, ap, scalars, &mut tickets)?;
        } else {
            gpu.submit(&[&split.rest])?;
        }
    }
    gpu.submit(&[&buffers.programs.as_ref().expect("recorded above").end])?;
    let last = gpu.read(&buffers.scalars)?;
    // Rank 0's figures on every rank.
    let mut figures: Vec<f64> = OUTCOME_SLOTS.map(|i| if rank0 { last[i] as f64 } else { 0.0 }).to_vec();
    comm.sum_f64(&mut figures)?;
    let figures = <[f64; 6]>::try_from(figures).expect("six figures");
    Ok(CgOutcome::from_figures(figures, lambda, comm_s))
}

/// Submits a step's product across ranks (after the rest of the step before it, with
/// `after_rest`), a piece per submit, each reading the values it finished (the first also the
/// stop slot).
fn submit_product(
    gpu: &Gpu,
    split: &mut Split,
    after_rest: bool,
    ap: &GpuBuffer<f32>,
    scalars: &GpuBuffer<f32>,
    tickets: &mut Vec<ReadTicket>,
) -> Result<(), Error> {
    let Split { pieces, ranges, reads, rest, .. } = split;
    for (piece, program) in pieces.iter().enumerate() {
        let range = ranges[piece].clone();
        let stop = slot::STOP..slot::STOP + 1;
        let segments: &[(&GpuBuffer<f32>, std::ops::Range<usize>)] =
            if piece == 0 { &[(ap, range), (scalars, stop)] } else { &[(ap, range)] };
        let programs: Vec<&Program> = match piece == 0 && after_rest {
            true => vec![rest, program],
            false => vec![program],
        };
        tickets.push(gpu.submit_reading_segments(&programs, segments, &mut reads[piece])?);
    }
    Ok(())
}

/// Fails unless every device took rank 0's decision: all skipped the product (`skipped`
/// of them) if rank 0's stopped, none if it went on.
fn check_agreement(comm: &dyn Communicator, stop: bool, skipped: usize) -> Result<(), Error> {
    if skipped == if stop { comm.size() } else { 0 } {
        return Ok(());
    }
    Err(CommError::Failed {
        rank: comm.rank(),
        size: comm.size(),
        what: format!(
            "the ranks' devices disagree on CG's stop test (rank 0 {}, {skipped} of {} stopped): \
             GPUs that round differently cannot share a solve; run the ranks on one kind of GPU",
            if stop { "stopped" } else { "went on" },
            comm.size()
        ),
    }
    .into())
}

#[cfg(test)]
mod tests {
    use super::{cut_points, GradientDone};

    /// Points of a backward pass over θ of 100 values in four layers: [60, 100) finished
    /// first, then [30, 60), [10, 30) and [0, 10).
    fn points() -> Vec<GradientDone> {
        [(5, 60), (9, 30), (14, 10), (20, 0)].map(|(dispatch, from)| GradientDone { dispatch, from }).to_vec()
    }

    fn cut(pieces: usize) -> Vec<usize> {
        cut_points(&points(), 100, pieces).iter().map(|c| c.from).collect()
    }

    #[test]
    fn cuts_split_the_product_near_equal_shares_at_its_layers() {
        assert_eq!(cut(1), Vec::<usize>::new());
        // Tails of 40, 70 and 90 values: 40 is nearest half of 100.
        assert_eq!(cut(2), [60]);
        // Shares 33 and 67: tails 40 and 70.
        assert_eq!(cut(3), [60, 30]);
        // Every layer at most, never the end of the pass.
        assert_eq!(cut(4), [60, 30, 10]);
        assert_eq!(cut(64), [60, 30, 10]);
    }

    #[test]
    fn a_cut_leaves_points_for_the_cuts_after_it() {
        // A last layer holding nearly all of θ: the first share (a third) is nearest the
        // first point's tail (90), and the second cut still has a point of its own.
        let done = [(5, 10), (9, 5), (14, 0)].map(|(dispatch, from)| GradientDone { dispatch, from });
        let cuts: Vec<usize> = cut_points(&done, 100, 3).iter().map(|c| c.from).collect();
        assert_eq!(cuts, [10, 5]);
        assert!(cut_points(&[], 100, 4).is_empty());
    }
}
