//! The autotuner: for each convolution pass of each layer shape, the candidate kernels
//! ([`ConvKernel::ALL`]; for the weight gradient, its groups of samples,
//! [`ConvPlan::WEIGHT_GROUPS`]) are timed on the adapter at hand and the fastest is kept, in memory and
//! in a cache file, so that a later run on the same adapter, build and shaders starts with the
//! winners and times nothing.
//!
//! How a shape is timed (`race`): each candidate is recorded (which compiles its pipelines:
//! that time is reported apart) and run once; those more than [`DROP_BEHIND`] times slower
//! than the leader are dropped; the others run [`TIMED_RUNS`] times, each run repeating the
//! pass until it lasts about [`RUN_SECONDS`], and the median decides. Wall time is used (a
//! submit and a wait around the repeated pass), so it works on every adapter.
//!
//! The key of a choice ([`Tuner::conv_key`]): the pass, the exact kernel size, stride and
//! padding, the channels and spatial sizes rounded up to powers of two, the batch rounded up
//! to a power of two and capped (`tuning_batch`), and whether the input and output channels
//! and the width are multiples of 4 (`by4:` three bits); the cache file's name and contents add the adapter (name, vendor,
//! device id, driver, driver info, backend, type), the crate's version and a hash of every
//! shader's source (`cache`).

mod cache;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use crate::error::Error;
use crate::gpu::{Gpu, GpuBuffer, GpuError, Recorder};
use crate::kernels::conv::{ConvKernel, ConvLayer, ConvPass, ConvPlan, PARTIAL_VALUES};
use crate::nn::ConvGeometry;

pub use cache::{cache_dir, Choice};

/// A candidate this many times slower than the leader after one run is dropped.
pub const DROP_BEHIND: f64 = 1.5;
/// Timed runs of each remaining candidate (the median decides).
pub const TIMED_RUNS: usize = 3;
/// Each timed run repeats the pass until it lasts about this long (at most `MAX_REPEATS`).
pub const RUN_SECONDS: f64 = 0.002;
const MAX_REPEATS: usize = 32;

/// When the tuner times kernels (`NEWTON_WGPU_TUNE`, `--tune`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TuneMode {
    /// Never: every pass runs the fallback kernel ([`ConvKernel::fallback`]).
    Off,
    /// Choices from the cache only; a shape it lacks runs the fallback kernel, untimed.
    Cached,
    /// Choices from the cache; a shape it lacks is timed once and added to it.
    #[default]
    Full,
}

impl std::str::FromStr for TuneMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(Self::Off),
            "cached" => Ok(Self::Cached),
            "full" => Ok(Self::Full),
            _ => Err(format!("{s:?}: expected off, cached or full")),
        }
    }
}

impl std::fmt::Display for TuneMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Off => "off",
            Self::Cached => "cached",
            Self::Full => "full",
        })
    }
}

impl TuneMode {
    /// `NEWTON_WGPU_TUNE`, when set.
    pub fn from_env() -> Result<Option<Self>, Error> {
        match std::env::var("NEWTON_WGPU_TUNE") {
            Ok(value) if !value.is_empty() => value.parse().map(Some).map_err(|_| Error::Setting {
                field: "NEWTON_WGPU_TUNE",
                expected: "off, cached or full".into(),
                found: format!("{value:?}"),
            }),
            _ => Ok(None),
        }
    }
}

/// What the tuner did so far.
#[derive(Clone, Debug, Default)]
pub struct TuneReport {
    /// Choices timed in this run.
    pub timed: usize,
    /// Choices taken from the cache.
    pub cached: usize,
    /// Choices left to the fallback kernel (mode off, or cached without an entry).
    pub fallback: usize,
    /// Seconds spent tuning, compiling included, and compiling alone.
    pub seconds: f64,
    pub compile_seconds: f64,
    /// Problems with the cache file (unreadable, tampered, not writable): each was a miss.
    pub warnings: Vec<String>,
}

/// One timed choice, as `newton-wgpu tune` prints it.
#[derive(Clone, Debug)]
pub struct TunedShape {
    pub key: String,
    pub choice: Choice,
    pub gflops: f64,
}

/// The tuner of one device: the choices so far, where they are cached, and what it did.
pub struct Tuner {
    mode: TuneMode,
    file: Option<PathBuf>,
    adapter: cache::AdapterKey,
    fallback: ConvKernel,
    state: Mutex<State>,
}

struct State {
    choices: BTreeMap<String, Choice>,
    report: TuneReport,
    /// The choices timed in this run, in order, with their speed.
    timed: Vec<TunedShape>,
}

impl Tuner {
    /// A tuner for `gpu` in `mode`, caching in `dir` (None: in memory only). The cache file
    /// of this adapter, build and shaders is read now; an unreadable or tampered one is a
    /// warning ([`Tuner::report`]) and counts as empty.
    pub fn new(gpu: &Gpu, mode: TuneMode, dir: Option<&Path>) -> Self {
        let adapter = cache::AdapterKey::of(gpu);
        let file = dir.map(|dir| dir.join(adapter.file_name()));
        let mut report = TuneReport::default();
        let choices = match (&file, mode) {
            (Some(path), TuneMode::Cached | TuneMode::Full) => {
                cache::read(path, &adapter).unwrap_or_else(|warning| {
                    report.warnings.push(warning);
                    BTreeMap::new()
                })
            }
            _ => BTreeMap::new(),
        };
        Self {
            mode,
            file,
            adapter,
            fallback: ConvKernel::fallback(),
            state: Mutex::new(State { choices, report, timed: Vec::new() }),
        }
    }

    /// A tuner that reads no cache and times every shape anew, writing the winners to the
    /// cache file in `dir` (replacing what it held for this adapter and build).
    pub fn fresh(gpu: &Gpu, dir: Option<&Path>) -> Self {
        let mut tuner = Self::new(gpu, TuneMode::Off, dir);
        tuner.mode = TuneMode::Full;
        tuner
    }

    /// A tuner in the mode `NEWTON_WGPU_TUNE` names (else [`TuneMode::Full`]), caching in
    /// [`cache_dir`].
    pub fn from_env(gpu: &Gpu) -> Result<Self, Error> {
        let mode = TuneMode::from_env()?.unwrap_or_default();
        Ok(Self::new(gpu, mode, cache_dir().as_deref()))
    }

    pub fn mode(&self) -> TuneMode {
        self.mode
    }

    /// The cache file, if the choices are cached.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    pub fn report(&self) -> TuneReport {
        self.lock().report.clone()
    }

    /// The choices timed in this run, in order.
    pub fn timed(&self) -> Vec<TunedShape> {
        self.lock().timed.clone()
    }

    /// Every choice known (cached or timed), by key.
    pub fn choices(&self) -> BTreeMap<String, Choice> {
        self.lock().choices.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("tuner poisoned")
    }

    /// The key of `pass` (a [`ConvPass`]'s name, or `weight_grad`) of layer `g` on batches of
    /// `batch` samples (see the module's page).
    pub fn conv_key(&self, pass: &str, g: &ConvGeometry, batch: usize) -> String {
        let p2 = |n: usize| n.next_power_of_two();
        let by4 = |n: usize| u8::from(n.is_multiple_of(4));
        format!(
            "conv {} k{}x{} s{} p{} c{}>{} {}x{} b{} by4:{}{}{}",
            pass,
            g.kernel_h,
            g.kernel_w,
            g.stride,
            g.padding,
            p2(g.input.channels),
            p2(g.output.channels),
            p2(g.input.height),
            p2(g.input.width),
            tuning_batch(&self.adapter, batch),
            by4(g.input.channels),
            by4(g.output.channels),
            by4(g.input.width),
        )
    }

    /// The kernel of each pass of layer `g` on batches of `batch` samples, and its weight
    /// gradient's groups: from memory or the cache, else timed now (in [`TuneMode::Full`]) and
    /// cached.
    pub fn conv_plan(&self, gpu: &Gpu, g: &ConvGeometry, batch: usize) -> Result<ConvPlan, GpuError> {
        let mut plan = ConvPlan::all(self.fallback);
        let mut state = self.lock();
        let tuning_batch = tuning_batch(&self.adapter, batch);
        let mut added = false;
        let mut passes: Vec<&str> = ConvPass::ALL.iter().map(|p| p.name()).collect();
        passes.push(WEIGHT_GRAD);
        for pass in passes {
            // At stride > 1 the backward pass to the input has one kernel: nothing to choose.
            if pass == ConvPass::BackwardInput.name() && g.stride != 1 {
                continue;
            }
            let key = self.conv_key(pass, g, batch);
            let choice = match state.choices.get(&key).cloned() {
                Some(choice) => {
                    state.report.cached += 1;
                    choice
                }
                None if self.mode != TuneMode::Full => {
                    state.report.fallback += 1;
                    continue;
                }
                None => {
                    let started = Instant::now();
                    let (choice, compile_seconds) = if pass == WEIGHT_GRAD {
                        tune_weight_grad(gpu, g, tuning_batch)?
                    } else {
                        let pass = ConvPass::ALL.into_iter().find(|p| p.name() == pass).expect("a pass");
                        tune_conv(gpu, pass, g, tuning_batch)?
                    };
                    let passes_of_work = if pass == ConvPass::Jvp.name() { 2.0 } else { 1.0 };
                    let flops = passes_of_work * 2.0 * g.macs_per_sample() as f64 * tuning_batch as f64;
                    state.report.timed += 1;
                    state.report.seconds += started.elapsed().as_secs_f64();
                    state.report.compile_seconds += compile_seconds;
                    let gflops = flops / (choice.us * 1e3);
                    state.timed.push(TunedShape { key: key.clone(), choice: choice.clone(), gflops });
                    state.choices.insert(key, choice.clone());
                    added = true;
                    choice
                }
            };
            match pass {
                WEIGHT_GRAD => {
                    // Timed at the tuning batch, the choice is kept as a number of groups (the
                    // parallelism and the partial sums that the timing measured) at this batch.
                    let samples = parse_group(&choice.kernel).expect("a valid choice");
                    let groups = tuning_batch.div_ceil(samples);
                    plan.weight_group = batch.div_ceil(groups).max(1);
                }
                pass => {
                    let pass = ConvPass::ALL.into_iter().find(|p| p.name() == pass).expect("a pass");
                    plan.set(pass, choice.kernel.parse().expect("a valid choice"));
                }
            }
        }
        if added {
            if let Some(path) = &self.file {
                if let Err(warning) = cache::write(path, &self.adapter, &state.choices) {
                    state.report.warnings.push(warning);
                }
            }
        }
        Ok(plan)
    }
}

/// The key word of the weight gradient's choice, whose candidates are groups of samples.
const WEIGHT_GRAD: &str = "weight_grad";

/// The name of a weight-gradient candidate: `groups of N` samples.
fn group_name(samples: usize) -> String {
    format!("groups of {samples}")
}

fn parse_group(name: &str) -> Option<usize> {
    let samples = name.strip_prefix("groups of ")?.parse().ok()?;
    ConvPlan::WEIGHT_GROUPS.contains(&samples).then_some(samples)
}

/// Whether `name` is a candidate of the choice `key` names: what a cache may hold.
pub(crate) fn is_candidate(key: &str, name: &str) -> bool {
    if key.starts_with(&format!("conv {WEIGHT_GRAD} ")) {
        parse_group(name).is_some()
    } else {
        name.parse::<ConvKernel>().is_ok()
    }
}

/// The batch a shape is timed at and keyed by: `batch` rounded up to a power of two, at most
/// 64 on a software adapter (where a pass of 64 samples already fills every core, and larger
/// ones only make tuning slower) and 512 on others.
fn tuning_batch(adapter: &cache::AdapterKey, batch: usize) -> usize {
    let cap = if adapter.is_software() { 64 } else { 512 };
    batch.max(1).next_power_of_two().min(cap)
}

/// Times every candidate kernel of `pass` of layer `g` over `batch` samples: the winner, with
/// every candidate's microseconds (None: dropped after one run), and the seconds spent
/// compiling.
fn tune_conv(gpu: &Gpu, pass: ConvPass, g: &ConvGeometry, batch: usize) -> Result<(Choice, f64), GpuError> {
    let buffers = PassBuffers::new(gpu, g, batch)?;
    let mut layers = Vec::new();
    for kernel in ConvKernel::ALL {
        let layer = ConvLayer::new(gpu, ConvPlan::all(kernel), g)?;
        let mut rec = gpu.recorder();
        layer.pack_theta(&mut rec, &buffers.theta)?;
        rec.submit()?;
        layers.push((kernel.to_string(), layer));
    }
    race(gpu, &layers, |rec, layer| buffers.record(rec, layer, pass, batch))
}

/// Times the weight gradient of layer `g` over `batch` samples in groups of each of
/// [`ConvPlan::WEIGHT_GROUPS`] samples, with the scratch space a workspace gives it.
fn tune_weight_grad(gpu: &Gpu, g: &ConvGeometry, batch: usize) -> Result<(Choice, f64), GpuError> {
    let buffers = PassBuffers::new(gpu, g, batch)?;
    let partial =
        gpu.zeros((batch * g.params()).min(PARTIAL_VALUES.max(g.params())), "tuning partial sums")?;
    let grad = gpu.zeros(g.bias_offset + g.output.channels, "tuning gradient")?;
    let fallback = ConvPlan::all(ConvKernel::fallback());
    let layers: Vec<(String, ConvLayer)> = ConvPlan::WEIGHT_GROUPS
        .iter()
        .map(|&samples| {
            let plan = ConvPlan { weight_group: samples, ..fallback };
            Ok((group_name(samples), ConvLayer::new(gpu, plan, g)?))
        })
        .collect::<Result<_, GpuError>>()?;
    race(gpu, &layers, |rec, layer| {
        layer.backward_params(rec, batch, &buffers.x, &buffers.y, &partial, &grad)
    })
}

/// Times each candidate's pass (see the module's page) and returns the winner and the seconds
/// spent recording (compiling) the candidates.
fn race<C>(
    gpu: &Gpu,
    candidates: &[(String, C)],
    record: impl Fn(&mut Recorder, &C) -> Result<(), GpuError>,
) -> Result<(Choice, f64), GpuError> {
    let mut compile = 0.0;
    let mut first = Vec::with_capacity(candidates.len());
    for (_, candidate) in candidates {
        // Recording makes the pipelines, and some drivers finish compiling them at their
        // first run: both count as compiling, and the second run is the one compared.
        let started = Instant::now();
        let mut rec = gpu.recorder();
        record(&mut rec, candidate)?;
        let program = rec.finish()?;
        run_seconds(gpu, &program)?;
        compile += started.elapsed().as_secs_f64();
        first.push(run_seconds(gpu, &program)?);
    }
    let leader = first.iter().copied().fold(f64::INFINITY, f64::min);
    let mut times: BTreeMap<String, Option<f64>> = BTreeMap::new();
    let mut best: Option<(&str, f64)> = None;
    for ((name, candidate), once) in candidates.iter().zip(&first) {
        if *once > DROP_BEHIND * leader {
            times.insert(name.clone(), None);
            continue;
        }
        let repeats = ((RUN_SECONDS / once.max(1e-9)).ceil() as usize).clamp(1, MAX_REPEATS);
        let mut rec = gpu.recorder();
        for _ in 0..repeats {
            record(&mut rec, candidate)?;
        }
        let program = rec.finish()?;
        let mut runs: Vec<f64> =
            (0..TIMED_RUNS).map(|_| run_seconds(gpu, &program)).collect::<Result<_, _>>()?;
        runs.sort_by(f64::total_cmp);
        // To a hundredth of a microsecond: the cache holds what it shows.
        let us = (runs[runs.len() / 2] / repeats as f64 * 1e8).round() / 100.0;
        times.insert(name.clone(), Some(us));
        if best.is_none_or(|(_, b)| us < b) {
            best = Some((name, us));
        }
    }
    let (name, us) = best.expect("the leader always runs again");
    Ok((Choice { kernel: name.to_owned(), us, candidates: times }, compile))
}

/// Wall seconds of one submit of `program`, waited for.
fn run_seconds(gpu: &Gpu, program: &crate::gpu::Program) -> Result<f64, GpuError> {
    let started = Instant::now();
    gpu.submit(&[program])?;
    gpu.wait()?;
    Ok(started.elapsed().as_secs_f64())
}

/// The buffers of one layer's passes while it is timed (values do not change the speed).
struct PassBuffers {
    theta: GpuBuffer<f32>,
    v: GpuBuffer<f32>,
    x: GpuBuffer<f32>,
    rx: GpuBuffer<f32>,
    y: GpuBuffer<f32>,
    dx: GpuBuffer<f32>,
}

impl PassBuffers {
    fn new(gpu: &Gpu, g: &ConvGeometry, batch: usize) -> Result<Self, GpuError> {
        let params = g.bias_offset + g.output.channels;
        let (input, output) = (batch * g.input.len(), batch * g.output.len());
        let ramp = |len: usize| (0..len).map(|i| (i % 17) as f32 / 17.0 - 0.5).collect::<Vec<_>>();
        Ok(Self {
            theta: gpu.upload(&ramp(params), "tuning θ")?,
            v: gpu.upload(&ramp(params), "tuning direction")?,
            x: gpu.upload(&ramp(input), "tuning inputs")?,
            rx: gpu.upload(&ramp(input), "tuning input directions")?,
            y: gpu.zeros(output, "tuning outputs")?,
            dx: gpu.zeros(input, "tuning input gradients")?,
        })
    }

    fn record(
        &self,
        rec: &mut Recorder,
        layer: &ConvLayer,
        pass: ConvPass,
        batch: usize,
    ) -> Result<(), GpuError> {
        match pass {
            ConvPass::Forward => layer.forward(rec, batch, &self.x, &self.theta, &self.y),
            ConvPass::Jvp => layer.jvp(rec, batch, &self.x, Some(&self.rx), &self.theta, &self.v, &self.y),
            // dy is any buffer of the output's size: y.
            ConvPass::BackwardInput => layer.backward_input(rec, batch, &self.y, &self.theta, &self.dx),
        }
    }
}
