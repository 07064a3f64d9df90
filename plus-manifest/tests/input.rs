//! Input that is not what it claims: NUL bytes, byte-order marks, other encodings, old Mac line
//! endings, devices and pipes, streams without end, and application lists.

use std::io::Read;

use plus_manifest::{
    Limits, ManifestError, Rule, Source, parse_app_list, parse_file, parse_reader, parse_str,
};

fn temp(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path =
        std::env::temp_dir().join(format!("plus-manifest-{name}-{}.yaml", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn invalid(result: Result<impl std::fmt::Debug, ManifestError>) -> plus_manifest::Report {
    match result {
        Err(ManifestError::Invalid(report)) => *report,
        other => panic!("expected a report, got {other:?}"),
    }
}

/// Everything after a NUL is still validated: the input is rejected whole, with the place.
#[test]
fn a_nul_byte_rejects_the_whole_input() {
    let report = parse_str("m.yaml", "version: v1\nbuild:\0\n  bogus: [").unwrap_err();
    let d = &report.diagnostics()[0];
    assert_eq!(d.rule, Rule::Encoding, "{report}");
    let loc = d.location.unwrap();
    assert_eq!((loc.line, loc.column), (2, 7), "{report}");
    // The same for any other character YAML forbids.
    let report = parse_str("m.yaml", "version: v1\n\u{7}\n").unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::Encoding);
}

#[test]
fn a_byte_order_mark_is_accepted() {
    let manifest = parse_str("m.yaml", "\u{feff}version: v1\n").unwrap();
    assert_eq!(manifest.version, plus_manifest::ManifestVersion::V1);
    let path = temp("bom", b"\xef\xbb\xbfversion: v1\n");
    parse_file(&path).unwrap();
    std::fs::remove_file(path).unwrap();
}

#[test]
fn input_that_is_not_utf8_names_the_first_bad_byte() {
    let path = temp("latin1", b"version: v1\nbuild:\n  os: caf\xe9\n");
    let report = invalid(parse_file(&path));
    std::fs::remove_file(path).unwrap();
    let d = &report.diagnostics()[0];
    assert_eq!(d.rule, Rule::Encoding, "{report}");
    assert!(d.message.contains("0xe9"), "{}", d.message);
    let loc = d.location.unwrap();
    assert_eq!((loc.line, loc.column), (3, 10), "{report}");
}

#[test]
fn old_mac_line_endings_report_the_right_line() {
    let text = "version: v1\rautodeploy:\r  targetDir: opt/app\r  run: ./start.sh\r";
    let report = parse_str("m.yaml", text).unwrap_err();
    let d = report.diagnostics().iter().find(|d| d.rule == Rule::RelativeTargetDir).unwrap();
    let loc = d.location.unwrap();
    assert_eq!((loc.line, loc.column), (3, 14), "{report}");
}

/// A device is refused at once instead of read without bound.
#[test]
fn a_device_or_a_directory_is_not_read() {
    for path in ["/dev/zero", "/dev/null"] {
        let report = invalid(parse_file(path));
        assert_eq!(report.diagnostics()[0].rule, Rule::NotAFile, "{report}");
    }
    let report = invalid(parse_file(std::env::temp_dir()));
    assert_eq!(report.diagnostics()[0].rule, Rule::NotAFile, "{report}");
}

/// A FIFO is refused without opening it (opening one blocks until a writer comes).
#[test]
fn a_fifo_is_refused_without_waiting_for_a_writer() {
    let path = std::env::temp_dir().join(format!("plus-manifest-fifo-{}", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let made = std::process::Command::new("mkfifo").arg(&path).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped: `mkfifo` is not available here");
        return;
    }
    let report = invalid(parse_file(&path));
    std::fs::remove_file(&path).unwrap();
    assert_eq!(report.diagnostics()[0].rule, Rule::NotAFile, "{report}");
}

/// A stream is read only up to the limit, whatever it holds.
#[test]
fn an_endless_stream_stops_at_the_limit() {
    let limits = Limits { max_bytes: 1 << 16, ..Limits::default() };
    let endless = std::io::repeat(b'#');
    let report = invalid(parse_reader("<stdin>", endless, limits));
    assert_eq!(report.diagnostics()[0].rule, Rule::TooLarge, "{report}");
    // A stream within the limit parses.
    let manifest = parse_reader("<stdin>", "version: v1\n".as_bytes().take(100), limits).unwrap();
    assert_eq!(manifest.version, plus_manifest::ManifestVersion::V1);
}

#[test]
fn an_application_list_is_read_with_the_manifest_rules() {
    let text =
        "apps:\n  - app: web\n    dependsOn: [api]\n  - app: api\n    optionalDependsOn: [cache]\n";
    let apps = parse_app_list(Source::new("apps.yaml", text), Limits::default()).unwrap();
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0].depends_on[0].as_str(), "api");
    let bad = "apps:\n  - app: web\n    dependOn: [api]\n  - app: api\n    dependsOn: [api]\n";
    let report = parse_app_list(Source::new("apps.yaml", bad), Limits::default()).unwrap_err();
    let rules: Vec<Rule> = report.diagnostics().iter().map(|d| d.rule).collect();
    assert_eq!(rules, [Rule::UnknownField, Rule::InvalidDependency], "{report}");
    assert!(report.to_string().contains("did you mean `dependsOn`?"), "{report}");
    assert_eq!(report.diagnostics()[1].path, "apps[1].dependsOn[0]");
}

/// The graph reader has the manifest's limits: nested brackets fail fast at the depth limit.
#[test]
fn an_application_list_has_the_same_limits() {
    let deep = format!("apps: {}{}", "[".repeat(100_000), "]".repeat(100_000));
    let report = parse_app_list(Source::new("apps.yaml", deep), Limits::default()).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooDeep, "{report}");
    let big = "#".repeat((1 << 20) + 1);
    let report = parse_app_list(Source::new("apps.yaml", big), Limits::default()).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooLarge, "{report}");
}
