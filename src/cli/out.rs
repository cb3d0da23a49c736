//! The program's standard output. Printing never ends a run: once the reader has gone
//! (`newton-wgpu train … | head`), what is left to print is dropped, the work goes on and its
//! files are written, and the exit status says that the output was cut short
//! ([`CLOSED_STATUS`]). Use [`say!`](crate::say) and [`sayln!`](crate::sayln) where
//! `print!` and `println!` would panic.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a write to standard output has failed.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// The exit status of a command that did its work while its standard output was closed.
pub const CLOSED_STATUS: u8 = 3;

/// Writes to standard output, or nothing once it has failed.
pub fn write(args: std::fmt::Arguments) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if out.write_fmt(args).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// Flushes standard output; true when everything printed was delivered.
pub fn finish() -> bool {
    if !CLOSED.load(Ordering::Relaxed) && std::io::stdout().lock().flush().is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
    !CLOSED.load(Ordering::Relaxed)
}

/// `print!` that never panics (see the module).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!($($arg)*)) };
}

/// `println!` that never panics (see the module).
#[macro_export]
macro_rules! sayln {
    () => { $crate::cli::out::write(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out::write(format_args!("{}\n", format_args!($($arg)*))) };
}
