//! Arbitrary input never panics; valid manifests round-trip.

use plus_manifest::{Autodeploy, Build, BuildRun, Manifest, ManifestVersion, Tools, parse_str};
use proptest::prelude::*;

fn yamlish() -> impl Strategy<Value = String> {
    // Fragments that exercise the parser's corners: indentation, flow, anchors, quotes, tags.
    let token = prop_oneof![
        Just("version: v1\n".to_owned()),
        Just("build:\n".to_owned()),
        Just("  tools:\n".to_owned()),
        Just("    python: 3.10\n".to_owned()),
        Just("  run: {cmd: [make]}\n".to_owned()),
        Just("autodeploy:\n  targetDir: /x\n  run: r\n".to_owned()),
        Just("&a [1, *a]\n".to_owned()),
        Just("*b\n".to_owned()),
        Just("- ".to_owned()),
        Just(": ".to_owned()),
        Just("'".to_owned()),
        Just("\"\\u00e9\"".to_owned()),
        Just("!!str ".to_owned()),
        Just("[".to_owned()),
        Just("{".to_owned()),
        Just("---\n".to_owned()),
        "[ -~]{0,12}",
        "[ \n\t]{0,3}",
    ];
    prop::collection::vec(token, 0..24).prop_map(|parts| parts.concat())
}

fn word() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,10}"
}

fn version() -> impl Strategy<Value = plus_core::Version> {
    "[0-9]{1,2}(\\.[0-9]{1,2}){0,2}|v[0-9]\\.[0-9]{1,2}"
        .prop_map(|v| plus_core::Version::new(v).unwrap())
}

fn tools() -> impl Strategy<Value = Tools> {
    prop::collection::btree_map(word(), version(), 0..4)
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let build =
        (tools(), prop::collection::vec("[a-z][ -~]{0,20}", 1..3)).prop_map(|(tools, cmd)| Build {
            os: None,
            tools,
            run: BuildRun { cmd },
            target: None,
            cache: None,
        });
    let deploy = (tools(), word(), proptest::option::of(0u32..10), proptest::option::of(1u64..600))
        .prop_map(|(tools, dir, retry, secs)| Autodeploy {
            target_dir: format!("/opt/{dir}"),
            tools,
            run: format!("./{dir}.sh"),
            check: None,
            check_retry: retry,
            check_interval: secs.map(std::time::Duration::from_secs),
        });
    (proptest::option::of(build), proptest::option::of(deploy)).prop_map(|(build, autodeploy)| {
        Manifest {
            version: ManifestVersion::V1,
            app: None,
            depends_on: Vec::new(),
            optional_depends_on: Vec::new(),
            build,
            autodeploy,
        }
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        if let Err(report) = parse_str("fuzz", &text) {
            prop_assert!(report.error_count() > 0);
            let _ = report.to_string();
        }
    }

    #[test]
    fn arbitrary_yaml_never_panics(text in yamlish()) {
        if let Err(report) = parse_str("fuzz", &text) {
            prop_assert!(!report.diagnostics().is_empty());
            for d in report.diagnostics() {
                if let Some(span) = d.span {
                    prop_assert!(span.start <= text.len());
                }
            }
            let _ = report.to_string();
        }
    }

    #[test]
    fn valid_manifests_round_trip(m in manifest()) {
        prop_assert_eq!(m.validate(), Ok(()));
        let text = m.to_yaml();
        let back = parse_str("rt", &text);
        prop_assert_eq!(back.as_ref().ok(), Some(&m), "{}", text);
    }
}
