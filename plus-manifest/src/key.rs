use std::fmt;

use sha2::{Digest, Sha256};

use crate::model::{Manifest, Tools};

/// The base OS assumed when `build.os` is absent: the Meituan Plus talk's `centos7`.
pub const DEFAULT_BASE_OS: &str = "centos7";

/// A stable name for a build environment image: base OS plus tool set (Meituan's Plus build platform talk, "cached
/// environment image"). Two manifests that need the same OS and the same tools at the same
/// versions get the same key, whatever their key order, quoting or formatting, so they share one
/// image.
///
/// # Algorithm (format `v1`, fixed: changing it would orphan every cached image)
///
/// SHA-256 over the bytes of `plus-env-v1`, then the OS, then for each tool in byte order of its
/// name, the name and the version; each of those strings is written as its length in decimal, a
/// `:`, and its bytes, so no choice of names can make two different sets collide by
/// concatenation. The key is `env-` followed by the first 16 bytes of the digest in lowercase hex.
/// It depends on nothing but those strings: not on the Rust version, the platform or the run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EnvImageKey(String);

impl EnvImageKey {
    /// The key for `os` with `tools`.
    #[must_use]
    pub fn new(os: &str, tools: &Tools) -> Self {
        let mut hasher = Sha256::new();
        let mut field = |s: &str| {
            hasher.update(s.len().to_string().as_bytes());
            hasher.update(b":");
            hasher.update(s.as_bytes());
        };
        field("plus-env-v1");
        field(os);
        for (name, version) in tools {
            field(name);
            field(version.as_str());
        }
        let digest = hasher.finalize();
        let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        Self(format!("env-{hex}"))
    }

    /// The key as text (`env-` and 32 hex digits).
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EnvImageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Manifest {
    /// The build environment's image key: `build.os` (or [`DEFAULT_BASE_OS`]) and `build.tools`.
    #[must_use]
    pub fn env_image_key(&self) -> EnvImageKey {
        match &self.build {
            Some(build) => {
                EnvImageKey::new(build.os.as_deref().unwrap_or(DEFAULT_BASE_OS), &build.tools)
            }
            None => EnvImageKey::new(DEFAULT_BASE_OS, &Tools::new()),
        }
    }
}
