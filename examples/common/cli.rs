//! What every example's `main` does the same way: parse arguments (help on `-h`, usage errors
//! exit 2) and run async work on a tokio runtime.

#![allow(dead_code)] // each example uses the part it needs

use std::future::Future;
use std::process::ExitCode;

/// Parses the command line with `parse`, which returns `Ok(None)` for `--help`.
///
/// Prints the usage and returns the exit code to use (0 after help, 2 after a usage error)
/// when the program should stop.
pub(crate) fn parse_args<T>(
    usage: &str,
    parse: impl FnOnce(&[String]) -> Result<Option<T>, String>,
) -> Result<T, ExitCode> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match parse(&raw) {
        Ok(Some(args)) => Ok(args),
        Ok(None) => {
            println!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(msg) => {
            eprintln!("error: {msg}\n\n{usage}");
            Err(ExitCode::from(2))
        }
    }
}

/// Runs `work` on a multi-threaded tokio runtime: success when it returns `Ok(true)`, failure
/// for `Ok(false)`, and an error message plus failure for `Err`.
pub(crate) fn run_async(work: impl Future<Output = Result<bool, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A count or duration from the command line, refused (as a usage error) outside
/// `min..=max` before anything is sized or timed from it.
pub(crate) fn bounded(flag: &str, text: &str, min: u64, max: u64) -> Result<u64, String> {
    let n: u64 =
        text.trim().parse().map_err(|_| format!("`{flag}` takes a whole number, got `{text}`"))?;
    if (min..=max).contains(&n) {
        Ok(n)
    } else {
        Err(format!("`{flag}` must be between {min} and {max}, got {n}"))
    }
}

/// [`bounded`] as a `usize` (every maximum used here fits one).
pub(crate) fn bounded_usize(flag: &str, text: &str, min: u64, max: u64) -> Result<usize, String> {
    bounded(flag, text, min, max).map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}
