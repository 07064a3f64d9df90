use std::collections::BTreeMap;
use std::time::Duration;

use plus_core::{AppCode, Version};
use serde::{Deserialize, Serialize};

/// Tool name -> version, sorted by name (`oracle-jdk: 8`, `maven: 3.3.3`).
pub type Tools = BTreeMap<String, Version>;

/// The manifest format versions this crate reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ManifestVersion {
    /// `version: v1`, the format of Meituan's Plus build platform talk.
    #[serde(rename = "v1")]
    V1,
}

impl ManifestVersion {
    /// Every supported version, as written in a manifest.
    pub const SUPPORTED: &'static [&'static str] = &["v1"];

    pub(crate) fn parse(text: &str) -> Option<Self> {
        match text {
            "v1" => Some(Self::V1),
            _ => None,
        }
    }
}

/// A project's `manifest.yaml`: how to build it and how to start it.
///
/// On the wire every field is camelCase. The three dependency fields are `plus` extensions for
/// dependency-ordered deployment (Qunar's dev/beta environment talk):
///
/// ```yaml
/// version: v1
/// app: order-api              # this application's code
/// dependsOn: [order-db]       # deployed and healthy before this one starts
/// optionalDependsOn: [cache]  # used when present; its failure is only a warning
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Manifest {
    /// Format version; only `v1` exists.
    pub version: ManifestVersion,
    /// This application's code, for dependency-ordered deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<AppCode>,
    /// Applications that must be deployed and healthy before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<AppCode>,
    /// Applications used when present; if one fails this one still starts, with a warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_depends_on: Vec<AppCode>,
    /// How to build the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<Build>,
    /// How to start the built project on a test host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autodeploy: Option<Autodeploy>,
}

/// `build:` how to build the project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Build {
    /// Base OS of the build image (`centos7`); [`DEFAULT_BASE_OS`](crate::DEFAULT_BASE_OS) when
    /// absent. A `plus` extension: Meituan's Plus build platform talk fixes the OS per platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    /// Tools the build image needs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: Tools,
    /// The build commands.
    pub run: BuildRun,
    /// What the build produces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Directories kept between builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<Cache>,
}

/// `build.run:` the build commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuildRun {
    /// Shell commands run in order; at least one.
    pub cmd: Vec<String>,
}

/// `build.target:` what the build produces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// Directory the artifacts are in, relative to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dist_dir: Option<String>,
    /// Files or directories, relative to `distDir`, to package.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
}

/// `build.cache:` directories kept between builds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cache {
    /// Directories to save after a build and restore before the next.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
}

/// `autodeploy:` how to start the built project on a test host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autodeploy {
    /// Absolute directory the package is unpacked into.
    pub target_dir: String,
    /// Tools the runtime image needs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: Tools,
    /// The command that starts the application.
    pub run: String,
    /// The health-check command; exit status 0 means healthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<String>,
    /// How many more times a failed health check is tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_retry: Option<u32>,
    /// Time between health-check tries, with a unit (`30s`, `1m 30s`, `500ms`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "humantime_opt")]
    pub check_interval: Option<Duration>,
}

/// `Option<Duration>` as a humantime string (`30s`), the form people write.
mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let text = Option::<String>::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

/// One application of a list read by [`parse_app_list`](crate::parse_app_list): its code and
/// what it depends on, as in a manifest's dependency extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppEntry {
    /// The application's code.
    pub app: AppCode,
    /// Applications that must be deployed and healthy before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<AppCode>,
    /// Applications used when present; if one fails this one still starts, with a warning.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub optional_depends_on: Vec<AppCode>,
}
