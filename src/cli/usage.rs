//! Mistakes in how the program was called, told apart from failures at run time: the
//! program exits with status 2 for these, 1 for the others (docs/command-line.md, Exit status).

use std::fmt;

/// The command line is wrong: an option's value out of range, a setting the run cannot use,
/// an output path that cannot be written.
#[derive(Debug)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A setting the library refused, named as the option that gives it (`cg_check_every` is
/// `--cg-check-every`), as a usage error.
pub fn option_error(error: newton_wgpu::Error) -> anyhow::Error {
    match error {
        newton_wgpu::Error::Setting { field, expected, found } => {
            let name = option_of(field);
            anyhow::Error::new(Usage(format!("{name}: expected {expected}, found {found}")))
        }
        other => other.into(),
    }
}

/// The option that gives the library's setting `field`: the same name, dashed, but for the
/// few whose field is named otherwise; a field that is not a lower-case name ("training set",
/// "NEWTON_WGPU_TUNE", "θ") is not an option and keeps its name.
pub fn option_of(field: &str) -> String {
    let is_option = field.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    match field {
        "iter_max" => "--iters".into(),
        _ if !is_option => field.into(),
        _ => format!("--{}", field.replace('_', "-")),
    }
}

/// `result`'s error, if any, as a usage error, with `context` before it.
pub fn usage<T, E: fmt::Display>(result: Result<T, E>, context: &str) -> anyhow::Result<T> {
    result.map_err(|e| anyhow::Error::new(Usage(format!("{context}: {e}"))))
}

/// The exit status for `error`: 2 when the command line or a setting is wrong (an option, an
/// environment variable, an output path), 1 otherwise.
pub fn exit_status(error: &anyhow::Error) -> u8 {
    use newton_wgpu::gpu::GpuError;
    let wrong_setting = |cause: &(dyn std::error::Error + 'static)| {
        cause.is::<Usage>()
            || cause.is::<super::ranks::OnEveryRank>()
            || matches!(
                cause.downcast_ref::<newton_wgpu::Error>(),
                Some(
                    newton_wgpu::Error::Setting { .. } | newton_wgpu::Error::Gpu(GpuError::BadSetting { .. })
                )
            )
            || matches!(cause.downcast_ref::<GpuError>(), Some(GpuError::BadSetting { .. }))
    };
    if error.chain().any(wrong_setting) {
        2
    } else {
        1
    }
}

/// Prints `error` and its causes, one to a line, without a backtrace (panics keep theirs),
/// after `prefix` (the rank, across ranks).
pub fn report(prefix: &str, error: &anyhow::Error) {
    let mut text = format!("{prefix}error: {error}\n");
    for cause in error.chain().skip(1) {
        text.push_str(&format!("{prefix}  because: {cause}\n"));
    }
    // One write, so that the lines of ranks failing together do not interleave.
    let _ = std::io::Write::write_all(&mut std::io::stderr(), text.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_named_as_the_options_that_give_them() {
        assert_eq!(option_of("sgn_batch"), "--sgn-batch");
        assert_eq!(option_of("iter_max"), "--iters");
        assert_eq!(option_of("training set"), "training set");
        assert_eq!(option_of("NEWTON_WGPU_TUNE"), "NEWTON_WGPU_TUNE");
        assert_eq!(option_of("c"), "--c");
        let error = option_error(newton_wgpu::Error::Setting {
            field: "sgn_batch",
            expected: "a mini-batch whose activations one binding of this adapter holds".into(),
            found: "8000".into(),
        });
        assert_eq!(exit_status(&error), 2);
        assert!(error.to_string().starts_with("--sgn-batch: expected a mini-batch"), "{error}");
    }
}
