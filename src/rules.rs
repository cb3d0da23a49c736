//! The rules every setting is checked by, the same in the library's constructors and in the
//! program's options (which name the option: the field `cg_check_every` is
//! `--cg-check-every`).

use crate::error::Error;

fn refuse(field: &'static str, expected: &'static str, found: impl ToString) -> Result<(), Error> {
    Err(Error::Setting { field, expected, found: found.to_string() })
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

/// A count from 1 to `most`.
pub fn count_up_to(field: &'static str, value: usize, most: usize, of: &'static str) -> Result<(), Error> {
    if (1..=most).contains(&value) {
        return Ok(());
    }
    Err(Error::Setting { field, expected: of, found: format!("{value} (the most is {most})") })
}

/// Seconds that a [`std::time::Duration`] can hold, > 0.
pub fn seconds(field: &'static str, value: f64) -> Result<std::time::Duration, Error> {
    match std::time::Duration::try_from_secs_f64(value) {
        Ok(duration) if value > 0.0 => Ok(duration),
        _ => Err(Error::Setting { field, expected: "a number of seconds > 0", found: value.to_string() }),
    }
}
