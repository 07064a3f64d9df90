//! What the process tests share.

use std::path::{Path, PathBuf};

/// An example program cargo built beside this test.
pub(crate) fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().and_then(Path::parent).unwrap();
    let path = target.join("examples").join(name);
    assert!(path.exists(), "{} is missing: cargo test builds it with the examples", path.display());
    path
}
