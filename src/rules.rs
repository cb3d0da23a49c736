//! The rules every setting is checked by, the same in the library's constructors and in the
//! program's options (which name the option: the field `cg_check_every` is
//! `--cg-check-every`).

use crate::error::Error;

fn refuse(field: &'static str, expected: &str, found: impl ToString) -> Result<(), Error> {
    Err(Error::Setting { field, expected: expected.into(), found: found.to_string() })
}

/// A finite number > 0.
pub fn positive(field: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value > 0.0 {
        return Ok(());
    }
    refuse(field, "a finite number > 0", value)
}

/// A finite number ≥ 0.
pub fn non_negative(field: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value >= 0.0 {
        return Ok(());
    }
    refuse(field, "a finite number ≥ 0", value)
}

/// The largest damping λ. Boosts stop there: repeated ones would otherwise reach infinity, which
/// no checkpoint can hold (it would be written as null and the run could not be resumed). At
/// λ = 1e20 a CG direction is −g/λ to f32's precision for any curvature met here, a step of
/// nothing, so nothing is lost by going no further; the bound also keeps λ + 1/(C·l) and the
/// products it scales within f32.
pub const MAX_LAMBDA: f64 = 1e20;

/// A damping λ: a number from 0 to [`MAX_LAMBDA`].
pub fn damping(field: &'static str, value: f64) -> Result<(), Error> {
    if (0.0..=MAX_LAMBDA).contains(&value) {
        return Ok(());
    }
    refuse(field, "a number from 0 to 1e20", value)
}

/// λ·factor, at most [`MAX_LAMBDA`].
pub fn boosted(lambda: f64, factor: f64) -> f64 {
    (lambda * factor).min(MAX_LAMBDA)
}

/// A number in (0, 1).
pub fn open_unit(field: &'static str, value: f64) -> Result<(), Error> {
    if value > 0.0 && value < 1.0 {
        return Ok(());
    }
    refuse(field, "in (0, 1)", value)
}

/// A number in [0, 1).
pub fn unit_from_zero(field: &'static str, value: f64) -> Result<(), Error> {
    if (0.0..1.0).contains(&value) {
        return Ok(());
    }
    refuse(field, "in [0, 1)", value)
}

/// A number in (0, 1].
pub fn unit_to_one(field: &'static str, value: f64) -> Result<(), Error> {
    if value > 0.0 && value <= 1.0 {
        return Ok(());
    }
    refuse(field, "in (0, 1]", value)
}

/// A finite number ≥ 1.
pub fn at_least_one(field: &'static str, value: f64) -> Result<(), Error> {
    if value.is_finite() && value >= 1.0 {
        return Ok(());
    }
    refuse(field, "a finite number ≥ 1", value)
}

/// A count ≥ 1.
pub fn count(field: &'static str, value: usize) -> Result<(), Error> {
    if value >= 1 {
        return Ok(());
    }
    refuse(field, "at least 1", value)
}

/// The largest value of each count setting. Every count has one, so that no combination of
/// settings can ask for more than the device or a checkpoint holds; the program checks them
/// before it opens the GPU (docs/command-line.md, "Settings and their bounds").
pub mod most {
    /// Newton iterations, and SGD or SGN epochs.
    pub const ITERATIONS: usize = 1_000_000;
    /// CG steps per solve (`cg_max`, `sgn_cg_steps`): CG counts its steps in an f32 slot,
    /// exact below 2^24.
    pub const CG_STEPS: usize = 1_000_000;
    /// CG steps between two reads of the residual, which is also the most steps one submit
    /// holds.
    pub const CHECK_EVERY: usize = 256;
    /// Pieces a CG step's product is summed in across ranks (a submit and a read each; a
    /// network has a cut point per layer with parameters at most).
    pub const SUMS_PER_PRODUCT: usize = 64;
    /// Random sign probes of diag(G_S) per solve, one product each (replayed from one
    /// recorded probe, so the bound is on time, not memory).
    pub const PROBES: usize = 1000;
    /// Samples in any count of them (`bsize`, `batch`, `sgn_batch`, `gn_size`, `limit`): the
    /// kernels index samples and their values with 32-bit integers.
    pub const SAMPLES: usize = 1 << 30;
    /// Records per epoch.
    pub const EVALS_PER_EPOCH: usize = 10_000;
}

/// A count from `least` to `most`.
pub fn count_in(field: &'static str, value: usize, least: usize, most: usize) -> Result<(), Error> {
    if (least..=most).contains(&value) {
        return Ok(());
    }
    refuse(field, &format!("from {least} to {most}"), value)
}

/// A count from 1 to `most`.
pub fn count_up_to(field: &'static str, value: usize, most: usize, of: &'static str) -> Result<(), Error> {
    if (1..=most).contains(&value) {
        return Ok(());
    }
    Err(Error::Setting { field, expected: of.into(), found: format!("{value} (the most is {most})") })
}

/// Seconds that a [`std::time::Duration`] can hold, > 0.
pub fn seconds(field: &'static str, value: f64) -> Result<std::time::Duration, Error> {
    match std::time::Duration::try_from_secs_f64(value) {
        Ok(duration) if value > 0.0 => Ok(duration),
        _ => refuse(field, "a number of seconds > 0", value).map(|()| std::time::Duration::ZERO),
    }
}
