//! Talk 000's manifest, its round trip and its environment key.

use std::time::Duration;

use plus_manifest::{EnvImageKey, Manifest, ManifestVersion, parse_str};

/// Talk 000's manifest, as the talk gives it.
const REFERENCE: &str = include_str!("data/reference.yaml");

#[test]
fn the_reference_manifest_parses_to_exactly_its_values() {
    let m = parse_str("manifest.yaml", REFERENCE).unwrap();
    assert_eq!(m.version, ManifestVersion::V1);
    let build = m.build.as_ref().unwrap();
    let tools: Vec<(&str, &str)> =
        build.tools.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(tools, [("maven", "3.3.3"), ("oracle-jdk", "8")]);
    assert_eq!(build.run.cmd, ["mvn package"]);
    let target = build.target.as_ref().unwrap();
    assert_eq!(target.dist_dir.as_deref(), Some("target"));
    assert_eq!(target.files, ["./"]);
    assert_eq!(build.cache.as_ref().unwrap().dirs, ["/opt/gocache/go-build"]);
    let deploy = m.autodeploy.as_ref().unwrap();
    assert_eq!(deploy.target_dir, "/opt/meituan/apptest/");
    assert_eq!(deploy.tools["oracle-jdk"].as_str(), "8");
    assert_eq!(deploy.run, "java -jar dependency/jetty-runner.jar helloworld.war");
    assert_eq!(deploy.check.as_deref(), Some("sh check.sh"));
    assert_eq!(deploy.check_retry, Some(2));
    assert_eq!(deploy.check_interval, Some(Duration::from_secs(30)));
    assert_eq!(m.app, None);
    assert!(m.depends_on.is_empty());
    assert_eq!(m.validate(), Ok(()));
}

#[test]
fn round_trips_through_yaml() {
    let m = parse_str("manifest.yaml", REFERENCE).unwrap();
    let text = m.to_yaml();
    let again = parse_str("again.yaml", &text).unwrap_or_else(|r| panic!("{r}\n{text}"));
    assert_eq!(again, m);
    // serde_yaml's own typed reading agrees with ours.
    let via_serde: Manifest = serde_yaml::from_str(&text).unwrap();
    assert_eq!(via_serde, m);
}

#[test]
fn dependency_extension_parses() {
    let m = parse_str(
        "m.yaml",
        "version: v1\napp: order-api\ndependsOn: [order-db, user-api]\noptionalDependsOn:\n  - search\n",
    )
    .unwrap();
    assert_eq!(m.app.unwrap().as_str(), "order-api");
    assert_eq!(
        m.depends_on.iter().map(AsRef::as_ref).collect::<Vec<&str>>(),
        ["order-db", "user-api"]
    );
    assert_eq!(m.optional_depends_on[0].as_str(), "search");
}

#[test]
fn env_key_ignores_order_and_formatting_and_is_pinned() {
    let a = parse_str("a", "version: v1\nbuild:\n  tools: {maven: 3.3.3, oracle-jdk: 8}\n  run: {cmd: [mvn package]}\n").unwrap();
    let b = parse_str(
        "b",
        "version: v1\nbuild:\n  run:\n    cmd: ['make']\n  tools:\n    \"oracle-jdk\": '8'\n    maven: \"3.3.3\"\n",
    )
    .unwrap();
    let c = parse_str("c", "version: v1\nbuild:\n  tools: {maven: 3.3.3, oracle-jdk: '11'}\n  run: {cmd: [mvn package]}\n").unwrap();
    assert_eq!(a.env_image_key(), b.env_image_key());
    assert_ne!(a.env_image_key(), c.env_image_key());
    let reference = parse_str("reference", REFERENCE).unwrap();
    assert_eq!(reference.env_image_key(), a.env_image_key());
    // Pinned: the key must not change across runs, machines or releases of this crate.
    assert_eq!(a.env_image_key().as_str(), EXPECTED_SEED_KEY);
    assert_ne!(
        EnvImageKey::new("centos7", &a.build.as_ref().unwrap().tools),
        EnvImageKey::new("centos8", &a.build.as_ref().unwrap().tools)
    );
}

/// Computed independently: python3 -c "import hashlib; print(hashlib.sha256(b'11:plus-env-v17:centos75:maven5:3.3.310:oracle-jdk1:8').hexdigest()[:32])"
const EXPECTED_SEED_KEY: &str = "env-08c8e2bbba9f5c52c820a126e081e693";

/// Strings that YAML would read as something else if written plain (numbers in every notation,
/// booleans, null) are written quoted, and read back as the same strings.
#[test]
fn strings_that_look_like_other_types_survive_a_round_trip() {
    let versions =
        ["3.10", "8", "0o17", "0x1F", "1e3", ".5", "yes", "off", "null", "~", "true", "-1", "+1"];
    let mut text = String::from("version: v1\nbuild:\n  tools:\n");
    for (i, v) in versions.iter().enumerate() {
        text.push_str(&format!("    tool{i}: \"{v}\"\n"));
    }
    text.push_str("  run: {cmd: [make]}\n");
    let m = parse_str("manifest.yaml", &text).unwrap_or_else(|r| panic!("{r}"));
    let written = m.to_yaml();
    let again = parse_str("again.yaml", &written).unwrap_or_else(|r| panic!("{r}\n{written}"));
    assert_eq!(again, m, "{written}");
    let mut tools: Vec<&str> =
        again.build.as_ref().unwrap().tools.values().map(plus_core::Version::as_str).collect();
    let mut expected = versions.to_vec();
    tools.sort_unstable();
    expected.sort_unstable();
    assert_eq!(tools, expected);
}
