//! What the process tests share.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// An example program cargo built beside this test.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    let path = target.join("examples").join(name);
    assert!(path.exists(), "{} is missing: cargo test builds it with the examples", path.display());
    path
}

/// Runs `quorum_ctl` against `endpoints` (`ID=HOST:PORT,...`) to its end, bounded by its own
/// `--timeout`, with `options` (TLS files, say) before the operation `op`.
#[allow(dead_code)] // the store's process tests use it, the others do not
pub(crate) fn quorum_ctl(
    endpoints: &str,
    timeout_s: u64,
    options: &[impl AsRef<OsStr>],
    op: &[&str],
) -> Output {
    Command::new(example("quorum_ctl"))
        .args(["--endpoints", endpoints, "--timeout", &timeout_s.to_string()])
        .args(options)
        .args(op)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}
