//! Environments files: one test per validation rule (the rule, the message, the line, the
//! column and the help), layering, and templates (feature `templates`).

use plus_manifest::{Limits, Rule, Source, parse_environments};

const APPS: &str = "\
version: v1
apps:
  - app: mysql
    source: git@example.com:infra/mysql.git
    buildType: docker
    check: /ping
    port: 3306
  - app: user-service
    source: git@example.com:user/user-service.git
    buildType: maven
    check: /health
    port: 8080
    dependsOn: [mysql]
";

fn code(text: &str) -> plus_core::AppCode {
    text.parse().unwrap()
}

fn parse(text: &str) -> Result<plus_manifest::Environments, plus_manifest::Report> {
    parse_environments(Source::new("environments.yaml", text), Limits::default())
}

/// `APPS` then `environments`, rejected with exactly one diagnostic for `rule`: its message
/// holds `message`, it is at `line:column`, and its help holds `help`.
#[track_caller]
fn check(
    environments: &str,
    rule: Rule,
    message: &str,
    (line, column): (usize, usize),
    help: &str,
) {
    let text = format!("{APPS}{environments}");
    let report = parse(&text).expect_err("the file should be rejected");
    let found: Vec<_> = report.diagnostics().iter().filter(|d| d.rule == rule).collect();
    assert_eq!(found.len(), 1, "{report}");
    let d = found[0];
    assert!(d.message.contains(message), "{}", d.message);
    let at = d.location.expect("a location");
    assert_eq!((at.line, at.column), (line, column), "{report}");
    assert!(d.help.as_deref().unwrap_or("").contains(help), "{:?}", d.help);
}

#[test]
fn an_unknown_application_in_an_environment() {
    check(
        "environments:\n  - name: beta\n    apps:\n      user-servise: {}\n",
        Rule::UnknownApplication,
        "environment `beta` names `user-servise`",
        (17, 7),
        "did you mean `user-service`?",
    );
}

#[test]
fn an_unknown_dependency_in_the_registry() {
    let text = APPS.replace("dependsOn: [mysql]", "dependsOn: [mysq1]");
    let report = parse(&text).unwrap_err();
    let d = &report.diagnostics()[0];
    assert_eq!(d.rule, Rule::UnknownApplication, "{report}");
    assert_eq!(d.help.as_deref(), Some("did you mean `mysql`?"));
    assert_eq!(d.location.map(|l| (l.line, l.column)), Some((13, 17)));
}

#[test]
fn a_dependency_outside_the_environment() {
    check(
        "environments:\n  - name: beta\n    apps:\n      user-service: {}\n",
        Rule::DependencyOutsideEnvironment,
        "`user-service` depends on `mysql`, which the environment does not include",
        (17, 7),
        "add `mysql` to the environment's `apps`",
    );
    // Left out by `without` in a layer above: the same.
    check(
        "environments:\n  - name: beta\n    apps:\n      mysql:\n      user-service:\n  - name: dev\n    from: beta\n    without: [mysql]\n",
        Rule::DependencyOutsideEnvironment,
        "in environment `dev`",
        (19, 11),
        "add `mysql`",
    );
}

#[test]
fn a_circle_of_from() {
    check(
        "environments:\n  - name: a\n    from: c\n  - name: b\n    from: a\n  - name: c\n    from: b\n",
        Rule::FromCycle,
        "a -> c -> b -> a",
        (16, 11),
        "must start from nothing",
    );
}

#[test]
fn an_unknown_environment_in_from() {
    check(
        "environments:\n  - name: beta\n  - name: dev\n    from: betta\n",
        Rule::UnknownEnvironment,
        "starts from `betta`, which is not defined",
        (17, 11),
        "did you mean `beta`?",
    );
}

#[test]
fn an_override_of_a_field_that_does_not_exist() {
    check(
        "environments:\n  - name: beta\n    apps:\n      mysql: { branch: main, biuldType: rpm }\n",
        Rule::UnknownField,
        "unknown field `biuldType`",
        (17, 30),
        "did you mean `buildType`?",
    );
}

#[test]
fn names_defined_twice() {
    check(
        "environments:\n  - name: beta\n  - name: beta\n",
        Rule::DuplicateName,
        "environment `beta` is defined twice",
        (16, 11),
        "the first is at line 15",
    );
}

#[test]
fn a_port_that_is_not_one() {
    let text = APPS.replace("port: 3306", "port: 70000");
    let report = parse(&text).unwrap_err();
    assert_eq!(report.diagnostics()[0].rule, Rule::InvalidPort, "{report}");
}

#[test]
fn a_circle_of_dependencies() {
    let text = APPS.replace("    port: 3306\n", "    port: 3306\n    dependsOn: [user-service]\n");
    let text = format!(
        "{text}environments:\n  - name: beta\n    apps:\n      mysql:\n      user-service:\n"
    );
    let report = parse(&text).unwrap_err();
    let d = &report.diagnostics()[0];
    assert_eq!(d.rule, Rule::DependencyCycle, "{report}");
    assert!(d.message.contains("mysql, user-service"), "{}", d.message);
}

#[test]
fn a_constant_both_value_and_group() {
    check(
        "environments:\n  - name: beta\n    constants:\n      db: x\n      db.host: y\n",
        Rule::InvalidName,
        "constants `db` and `db.host` cannot both exist",
        (17, 7),
        "rename one",
    );
    // Across layers too.
    check(
        "environments:\n  - name: beta\n    constants:\n      db: x\n    apps:\n      mysql:\n  - name: dev\n    from: beta\n    constants:\n      db.host: y\n",
        Rule::InvalidName,
        "in environment `dev`, constants `db` and `db.host`",
        (20, 11),
        "rename one",
    );
}

#[test]
fn every_problem_is_reported_not_only_the_first() {
    let text = format!(
        "{APPS}environments:\n  - name: beta\n    from: nowhere\n    apps:\n      nobody: {{}}\n      mysql: {{ port: zero }}\n"
    );
    let report = parse(&text).unwrap_err();
    let rules: Vec<Rule> = report.diagnostics().iter().map(|d| d.rule).collect();
    for rule in [Rule::UnknownEnvironment, Rule::UnknownApplication, Rule::InvalidPort] {
        assert!(rules.contains(&rule), "{rule:?} missing: {report}");
    }
}

#[test]
fn layers_apply_from_the_farthest_to_the_environment_itself() {
    let text = format!(
        "{APPS}environments:
  - name: beta
    constants:
      log_level: info
      mysql.password: {{ value: hunter2, secret: true }}
    apps:
      mysql: {{ branch: '5.7' }}
      user-service:
  - name: dev
    from: beta
    constants:
      log_level: debug
    apps:
      user-service: {{ buildType: gradle, constants: {{ log_level: trace }} }}
"
    );
    let environments = parse(&text).unwrap();
    let dev = environments.resolve("dev").unwrap();
    assert_eq!(dev.chain, ["dev", "beta"]);
    let user = &dev.apps[&code("user-service")];
    assert_eq!(user.build_type.value, "gradle");
    assert_eq!(user.build_type.origin.to_string(), "environment dev, user-service buildType");
    assert_eq!(user.branch.value, "master");
    assert_eq!(
        user.branch.origin.to_string(),
        "environment dev, from the application registry, user-service branch"
    );
    assert_eq!(user.constants["log_level"].value.value, "trace");
    assert_eq!(dev.constants["log_level"].value.value, "debug");
    let mysql = &dev.apps[&code("mysql")];
    assert_eq!(mysql.branch.origin.to_string(), "environment dev, from beta, mysql branch");
    let password = &dev.constants["mysql.password"];
    assert_eq!(password.origin.to_string(), "environment dev, from beta, constant mysql.password");
    assert!(!format!("{password:?}").contains("hunter2"), "a secret in Debug: {password:?}");
    assert_eq!(dev.levels().unwrap().len(), 2);
}

#[cfg(feature = "templates")]
mod templates {
    use plus_manifest::{Address, Facts, RenderError, Rule, SECRET_MASK, Templates};

    use super::{APPS, code, parse};

    fn environments() -> plus_manifest::Environments {
        let text =
            APPS.replace("dependsOn: [mysql]", "dependsOn: [mysql]\n    config: [app.properties]");
        parse(&format!(
            "{text}environments:
  - name: beta
    constants:
      log_level: info
      mysql.password: {{ value: hunter2, secret: true }}
    apps:
      mysql:
      user-service:
"
        ))
        .unwrap()
    }

    fn render(template: &str) -> Result<plus_manifest::Rendered, RenderError> {
        let beta = environments().resolve("beta").unwrap();
        let mut templates = Templates::new();
        templates.insert("app.properties", template);
        beta.render(&templates, &Facts::planned(&beta, "test"))
    }

    #[test]
    fn values_come_from_constants_and_the_dependencies_addresses() {
        let rendered = render(
            "level={{ const.log_level }}\ndb={{ deps.mysql.host }}:{{ deps.mysql.port }}\npassword={{ const.mysql.password }}\n",
        )
        .unwrap();
        let file = &rendered.files[&code("user-service")][0];
        assert_eq!(file.text(), "level=info\ndb=mysql.beta.test:3306\npassword=hunter2\n");
        assert_eq!(
            file.shown,
            format!("level=info\ndb=mysql.beta.test:3306\npassword={SECRET_MASK}\n")
        );
        assert!(!format!("{file:?}").contains("hunter2"));
        let password = file.references.iter().find(|r| r.name == "const.mysql.password").unwrap();
        assert!(password.secret && password.shown == SECRET_MASK);
        let host = file.references.iter().find(|r| r.name == "deps.mysql.host").unwrap();
        assert_eq!(host.origin, "address of mysql in environment beta, as planned");
    }

    #[test]
    fn a_deployed_address_replaces_the_planned_one() {
        let beta = environments().resolve("beta").unwrap();
        let mut facts = Facts::planned(&beta, "test");
        facts.deployed("beta", code("mysql"), Address { host: "10.0.0.7".into(), port: 3307 });
        let mut templates = Templates::new();
        templates.insert("app.properties", "db={{ deps.mysql.url }}");
        let rendered = beta.render(&templates, &facts).unwrap();
        assert_eq!(rendered.files[&code("user-service")][0].text(), "db=http://10.0.0.7:3307");
    }

    #[test]
    fn an_application_listens_where_its_dependents_are_told_it_does() {
        let beta = environments().resolve("beta").unwrap();
        let mut templates = Templates::new();
        templates.insert("app.properties", "listen={{ app.host }}:{{ app.port }}");
        // Without an address of its own, the port is the one it was given and there is no host.
        let Err(RenderError::Invalid(reports)) = beta.render(&templates, &Facts::new()) else {
            panic!("app.host rendered without an address")
        };
        assert_eq!(reports[0].diagnostics()[0].rule, Rule::UnknownReference);
        let mut facts = Facts::new();
        facts.deployed("beta", code("mysql"), Address { host: "127.0.0.1".into(), port: 40001 });
        facts.deployed(
            "beta",
            code("user-service"),
            Address { host: "127.0.0.1".into(), port: 40002 },
        );
        let rendered = beta.render(&templates, &facts).unwrap();
        let file = &rendered.files[&code("user-service")][0];
        assert_eq!(file.text(), "listen=127.0.0.1:40002");
        let port = file.references.iter().find(|r| r.name == "app.port").unwrap();
        assert_eq!(port.origin, "address of user-service in environment beta, as deployed");
    }

    #[track_caller]
    fn rejected(template: &str, rule: Rule, line: usize, column: usize, help: &str) {
        let Err(RenderError::Invalid(reports)) = render(template) else {
            panic!("rendered: {template}")
        };
        assert_eq!(reports.len(), 1);
        let d = &reports[0].diagnostics()[0];
        assert_eq!(d.rule, rule, "{}", reports[0]);
        assert_eq!(d.location.map(|l| (l.line, l.column)), Some((line, column)), "{}", reports[0]);
        assert!(d.help.as_deref().unwrap_or("").contains(help), "{:?}", d.help);
        let shown = reports[0].to_string();
        assert!(shown.contains(" --> app.properties:"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn an_unknown_constant_is_an_error_with_its_place_never_an_empty_string() {
        rejected(
            "a=1\nlevel={{ const.log_levl }}\n",
            Rule::UnknownReference,
            2,
            10,
            "did you mean `const.log_level`?",
        );
    }

    #[test]
    fn a_dependency_not_declared_is_not_there() {
        rejected("x={{ deps.redis.host }}\n", Rule::UnknownReference, 1, 6, "");
    }

    #[test]
    fn a_template_that_is_not_one() {
        rejected("x={{ const.log_level \n", Rule::TemplateSyntax, 1, 12, "");
    }

    #[test]
    fn a_loop_that_would_not_end_is_stopped() {
        let Err(RenderError::Invalid(_)) = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}",
        ) else {
            panic!("a template running ten billion steps rendered")
        };
    }

    #[test]
    fn two_environments_differ_where_their_layers_do_and_secrets_stay_masked() {
        let text =
            APPS.replace("dependsOn: [mysql]", "dependsOn: [mysql]\n    config: [app.properties]");
        let environments = parse(&format!(
            "{text}environments:
  - name: beta
    constants:
      log_level: info
      mysql.password: {{ value: hunter2, secret: true }}
    apps:
      mysql:
      user-service:
  - name: dev
    from: beta
    constants:
      log_level: debug
      mysql.password: {{ value: correct-horse, secret: true }}
    apps:
      user-service: {{ branch: feature/x }}
"
        ))
        .unwrap();
        let mut templates = Templates::new();
        templates.insert(
            "app.properties",
            "level={{ const.log_level }}\npassword={{ const.mysql.password }}\n",
        );
        let render = |name: &str| {
            let env = environments.resolve(name).unwrap();
            env.render(&templates, &Facts::planned(&env, "test")).unwrap()
        };
        let diff = render("beta").diff(&render("dev"));
        let shown = diff.to_string();
        assert!(shown.contains("constant log_level: info -> debug"), "{shown}");
        assert!(shown.contains("constant mysql.password: <secret> -> <secret>"), "{shown}");
        assert!(shown.contains("branch: master -> feature/x"), "{shown}");
        assert!(shown.contains("-level=info") && shown.contains("+level=debug"), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("correct-horse"), "{shown}");
        assert!(render("beta").diff(&render("beta")).is_empty());
    }
}
