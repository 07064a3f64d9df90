//! One test per rule and per YAML trap: the rule, the message, the line and the column.

use plus_manifest::{Limits, Rule, Source, parse_source, parse_str};

/// Parses `text` and checks that among its diagnostics there is exactly one for `rule`, with
/// `message`, at `line:column`.
#[track_caller]
fn check(text: &str, rule: Rule, message: &str, line: usize, column: usize) {
    let report = parse_str("manifest.yaml", text).expect_err("manifest should be rejected");
    let found: Vec<_> = report.diagnostics().iter().filter(|d| d.rule == rule).collect();
    assert_eq!(found.len(), 1, "diagnostics: {:#?}", report.diagnostics());
    let d = found[0];
    assert_eq!(d.message, message);
    let loc = d.location.expect("diagnostic has a location");
    assert_eq!((loc.line, loc.column), (line, column), "{report}");
    let rendered = report.to_string();
    assert!(rendered.contains(&format!(" --> manifest.yaml:{line}:{column}")), "{rendered}");
    assert!(rendered.contains('^'), "{rendered}");
}

const DEPLOY: &str = "version: v1\nautodeploy:\n  targetDir: /opt/app\n  run: ./start.sh\n";

#[test]
fn unsupported_version() {
    check("version: v2\n", Rule::UnsupportedVersion, "unsupported manifest version `v2`", 1, 10);
}

#[test]
fn missing_version() {
    check(
        "build:\n  run:\n    cmd: [make]\n",
        Rule::MissingField,
        "missing field `version` in the manifest",
        1,
        1,
    );
}

#[test]
fn empty_run_cmd() {
    check(
        "version: v1\nbuild:\n  run:\n    cmd: []\n",
        Rule::EmptyCommand,
        "`build.run.cmd` has no commands",
        4,
        10,
    );
}

#[test]
fn blank_command() {
    check(
        "version: v1\nbuild:\n  run:\n    cmd:\n      - make\n      - '  '\n",
        Rule::EmptyCommand,
        "`build.run.cmd[1]` is blank",
        6,
        9,
    );
}

#[test]
fn negative_retry() {
    check(
        &format!("{DEPLOY}  checkRetry: -1\n"),
        Rule::InvalidRetry,
        "`autodeploy.checkRetry` must not be negative, found -1",
        5,
        15,
    );
}

#[test]
fn fractional_retry() {
    check(
        &format!("{DEPLOY}  checkRetry: 1.5\n"),
        Rule::InvalidRetry,
        "`autodeploy.checkRetry` must be a whole number, found `1.5`",
        5,
        15,
    );
}

#[test]
fn interval_without_unit() {
    check(
        &format!("{DEPLOY}  checkInterval: 30\n"),
        Rule::IntervalWithoutUnit,
        "`autodeploy.checkInterval` has no unit: `30`",
        5,
        18,
    );
}

#[test]
fn interval_garbage() {
    let report = parse_str("m", &format!("{DEPLOY}  checkInterval: soon\n")).unwrap_err();
    let d = &report.diagnostics()[0];
    assert_eq!(d.rule, Rule::InvalidInterval);
    assert!(d.message.starts_with("`autodeploy.checkInterval` is not a duration"), "{}", d.message);
    assert_eq!(d.location.map(|l| (l.line, l.column)), Some((5, 18)));
}

#[test]
fn relative_target_dir() {
    check(
        "version: v1\nautodeploy:\n  targetDir: opt/app\n  run: ./start.sh\n",
        Rule::RelativeTargetDir,
        "`autodeploy.targetDir` must be an absolute path, found `opt/app`",
        3,
        14,
    );
}

#[test]
fn empty_tool_name() {
    check(
        "version: v1\nbuild:\n  tools:\n    '': 8\n  run: {cmd: [make]}\n",
        Rule::EmptyToolName,
        "a tool has an empty name",
        4,
        5,
    );
}

#[test]
fn empty_tool_version() {
    check(
        "version: v1\nbuild:\n  tools:\n    maven:\n  run: {cmd: [make]}\n",
        Rule::InvalidToolVersion,
        "tool `maven` has no version",
        4,
        5,
    );
    check(
        "version: v1\nbuild:\n  tools:\n    maven: ''\n  run: {cmd: [make]}\n",
        Rule::InvalidToolVersion,
        "tool `maven` has no version",
        4,
        12,
    );
}

#[test]
fn unknown_field_suggests() {
    let text = format!("{DEPLOY}  checkRetyr: 2\n");
    check(&text, Rule::UnknownField, "unknown field `checkRetyr` in `autodeploy`", 5, 3);
    let report = parse_str("manifest.yaml", &text).unwrap_err();
    assert_eq!(report.diagnostics()[0].help.as_deref(), Some("did you mean `checkRetry`?"));
    assert_eq!(report.diagnostics()[0].path, "autodeploy.checkRetyr");
    let rendered = report.to_string();
    assert!(rendered.contains("help: did you mean `checkRetry`?"), "{rendered}");
    assert!(rendered.contains("note: field: autodeploy.checkRetyr"), "{rendered}");
    assert!(rendered.contains("5 |   checkRetyr: 2"), "{rendered}");
}

#[test]
fn unknown_field_far_from_everything_lists_known_fields() {
    let report = parse_str("m", "version: v1\nzzzzzz: 1\n").unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::UnknownField);
    assert!(
        report.diagnostics()[0]
            .help
            .as_deref()
            .unwrap()
            .starts_with("known fields here: `version`")
    );
}

#[test]
fn duplicate_field() {
    check(
        "version: v1\nversion: v1\n",
        Rule::DuplicateField,
        "field `version` appears twice",
        2,
        1,
    );
}

#[test]
fn wrong_type() {
    check(
        "version: v1\nbuild:\n  run:\n    cmd: mvn package\n",
        Rule::WrongType,
        "expected a list for `build.run.cmd`, found `mvn package`",
        4,
        10,
    );
}

#[test]
fn trap_python_3_10() {
    check(
        "version: v1\nbuild:\n  tools:\n    python: 3.10\n  run: {cmd: [make]}\n",
        Rule::UnquotedNumericVersion,
        "version `3.10` of tool `python` is read by YAML as the number 3.1",
        4,
        13,
    );
    let report =
        parse_str("m", "version: v1\nbuild:\n  tools:\n    python: 3.10\n  run: {cmd: [make]}\n")
            .unwrap_err();
    assert_eq!(
        report.diagnostics()[0].help.as_deref(),
        Some("quote it to keep it as written: `python: \"3.10\"`")
    );
}

#[test]
fn trap_go_1_20_and_friends() {
    for (version, number) in
        [("1.20", "1.2"), ("08", "8"), ("1e3", "1000"), ("1.0", "1"), ("0x1F", "31")]
    {
        check(
            &format!("version: v1\nbuild:\n  tools:\n    go: {version}\n  run: {{cmd: [make]}}\n"),
            Rule::UnquotedNumericVersion,
            &format!("version `{version}` of tool `go` is read by YAML as the number {number}"),
            4,
            9,
        );
    }
}

#[test]
fn numbers_that_survive_and_quoted_versions_are_fine() {
    for version in ["8", "17", "1.8", "3.3.3", "'3.10'", "\"1.20\"", "v1.20", "11.0.2"] {
        let m = parse_str(
            "m",
            &format!("version: v1\nbuild:\n  tools:\n    t: {version}\n  run: {{cmd: [make]}}\n"),
        )
        .unwrap_or_else(|r| panic!("{version}: {r}"));
        assert_eq!(m.build.unwrap().tools["t"].as_str(), version.trim_matches(['\'', '"']));
    }
}

#[test]
fn bool_is_not_a_version() {
    check(
        "version: v1\nbuild:\n  tools:\n    t: true\n  run: {cmd: [make]}\n",
        Rule::WrongType,
        "expected a version for `build.tools.t`, found `true`",
        4,
        8,
    );
}

#[test]
fn self_and_duplicate_dependencies() {
    check(
        "version: v1\napp: api\ndependsOn: [db, api]\n",
        Rule::InvalidDependency,
        "application `api` depends on itself",
        3,
        17,
    );
    check(
        "version: v1\napp: api\ndependsOn: [db]\noptionalDependsOn: [db]\n",
        Rule::InvalidDependency,
        "dependency `db` is listed more than once",
        4,
        21,
    );
}

#[test]
fn invalid_app_code() {
    check(
        "version: v1\napp: 'order api'\n",
        Rule::InvalidAppCode,
        "invalid application code `order api`: may only hold ASCII letters, digits, `.`, `_`, `-` and `:`",
        2,
        6,
    );
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = "\
version: v9
build:
  tools:
    python: 3.10
  run:
    cmd: []
autodeploy:
  targetDir: relative
  run: ./start.sh
  checkRetry: -2
  checkInterval: 30
  checkRetyr: 1
";
    let report = parse_str("m.yaml", text).unwrap_err();
    let rules: Vec<Rule> = report.diagnostics().iter().map(|d| d.rule).collect();
    assert_eq!(
        rules,
        [
            Rule::UnsupportedVersion,
            Rule::UnquotedNumericVersion,
            Rule::EmptyCommand,
            Rule::RelativeTargetDir,
            Rule::InvalidRetry,
            Rule::IntervalWithoutUnit,
            Rule::UnknownField,
        ]
    );
    assert!(
        report.to_string().ends_with("error: could not read `m.yaml` due to 7 previous errors")
    );
}

#[test]
fn syntax_error_has_a_location() {
    check(
        "version: v1\nbuild: [a\n",
        Rule::Syntax,
        "invalid YAML: while parsing a flow sequence, expected ',' or ']'",
        2,
        10,
    );
}

#[test]
fn empty_and_multi_document_files() {
    let report = parse_str("m", "").unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::Empty);
    assert!(report.to_string().contains("manifest is empty"));
    check(
        "version: v1\n---\nversion: v1\n",
        Rule::MultipleDocuments,
        "manifest holds more than one YAML document",
        2,
        1,
    );
}

#[test]
fn hostile_input_too_large() {
    let limits = Limits { max_bytes: 64, ..Limits::default() };
    let report = parse_source(Source::new("big", "#".repeat(65)), limits).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooLarge);
    assert_eq!(report.diagnostics()[0].message, "manifest is 65 bytes, more than the limit of 64");
}

#[test]
fn hostile_input_deep_nesting() {
    let deep = format!("version: v1\nbuild: {}{}\n", "[".repeat(10_000), "]".repeat(10_000));
    let report = parse_str("deep", &deep).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooDeep);
    let shallow_enough = format!("version: v1\nbuild: {}{}\n", "[".repeat(40), "]".repeat(40));
    let report = parse_str("deep", &shallow_enough).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooDeep);
    assert_eq!(report.diagnostics()[0].message, "nesting deeper than 32 levels");
    let block: String = (0..200).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
    let report = parse_str("deep-block", &block).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooDeep);
}

#[test]
fn hostile_input_billion_laughs() {
    let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let report = parse_str("lol", &text).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::TooManyNodes);
    assert_eq!(report.diagnostics()[0].message, "document expands to more than 100000 nodes");
    // Not a timing assertion on speed: a guard that the expansion was not attempted at all
    // (10^10 nodes would take hours and terabytes).
    assert!(started.elapsed() < std::time::Duration::from_secs(60));
}

#[test]
fn render_matches_cargo_style() {
    let report = parse_str("manifest.yaml", &format!("{DEPLOY}  checkRetry: -1\n")).unwrap_err();
    let expected = "\
error: `autodeploy.checkRetry` must not be negative, found -1
 --> manifest.yaml:5:15
  |
5 |   checkRetry: -1
  |               ^^ invalid retry count
  |
  = help: retries count extra health checks after the first: 0, 1, 2, ...
  = note: field: autodeploy.checkRetry

error: could not read `manifest.yaml` due to 1 previous error";
    assert_eq!(report.to_string(), expected);
}

/// Old Mac line ends (a lone `\r`): the problem is shown on its own line, in the location and
/// in the rendered snippet.
#[test]
fn lone_carriage_returns_end_lines() {
    check(
        "version: v1\rautodeploy:\r  targetDir: opt\r  run: x\r",
        Rule::RelativeTargetDir,
        "`autodeploy.targetDir` must be an absolute path, found `opt`",
        3,
        14,
    );
}

/// A large document without aliases is not told about aliases.
#[test]
fn too_many_nodes_without_aliases_names_the_limit() {
    let limits = Limits { max_nodes: 50, ..Limits::default() };
    let text = format!("version: v1\nbuild:\n  run:\n    cmd: [{}]\n", vec!["make"; 60].join(", "));
    let report = parse_source(Source::new("big", text), limits).unwrap_err();
    let d = &report.diagnostics()[0];
    assert_eq!(d.rule, Rule::TooManyNodes);
    assert_eq!(d.message, "document holds more than 50 nodes");
    assert!(!d.help.as_deref().unwrap_or("").contains("alias"), "{:?}", d.help);
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: [*a, *a, *a, *a, *a, *a]\n";
    let report = parse_source(Source::new("lol", laughs), limits).unwrap_err();
    assert!(report.diagnostics()[0].help.as_deref().unwrap_or("").contains("alias"));
}
