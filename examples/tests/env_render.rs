//! `env_render` on the example environments (42 applications, `beta` and `dev-alice`): the
//! deployment order and counts, explain, diff and written files, secrets shown nowhere but in
//! the written files, and a broken template refused with its place.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::example;

const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/environments/environments.yaml");
const SECRETS: [&str; 3] = ["beta-db-secret", "beta-cache-secret", "sandbox-key-beta"];

fn run(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(example("env_render")).arg(FILE).args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn the_personal_environment_renders_in_dependency_order_without_showing_a_secret() {
    let (ok, out, err) = run(&["dev-alice", "--explain", "--diff", "beta"]);
    assert!(ok, "{err}");
    assert_eq!(out.lines().last(), Some("env=dev-alice apps=41 levels=10 rendered=41"), "{out}");
    assert!(
        out.starts_with(
            "level 0: elasticsearch memcached mongodb mysql rabbitmq redis zookeeper\n"
        ),
        "{out}"
    );
    assert!(
        out.contains(
            "payment-service: buildType gradle (environment dev-alice, payment-service buildType)"
        ),
        "{out}"
    );
    assert!(out.contains("const.mysql.password = <secret> (environment dev-alice, from beta, constant mysql.password)"));
    assert!(out.contains("+ report-batch: only in beta"), "{out}");
    assert!(out.contains("constant log_level: debug -> info"), "{out}");
    for secret in SECRETS {
        assert!(!out.contains(secret) && !err.contains(secret), "{secret} shown");
    }
}

#[test]
fn written_files_hold_the_real_values() {
    let dir = std::env::temp_dir().join(format!("plus-env-render-{}", std::process::id()));
    let (ok, _, err) = run(&["beta", "--out", dir.to_str().unwrap()]);
    let written = std::fs::read_to_string(
        dir.join("payment-service/config/payment-service/application.properties"),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "{err}");
    let written = written.unwrap();
    assert!(written.contains("payment.provider.key=sandbox-key-beta\n"), "{written}");
    assert!(
        written.contains("db.url=jdbc:mysql://mysql.beta.env.internal:3306/payment_service\n"),
        "{written}"
    );
}

#[test]
fn a_broken_template_is_refused_with_its_place() {
    let dir = std::env::temp_dir().join(format!("plus-env-broken-{}", std::process::id()));
    let source = std::path::Path::new(FILE).parent().unwrap();
    let copy = Command::new("cp").arg("-r").arg(source).arg(&dir).status().unwrap();
    assert!(copy.success());
    let template = dir.join("config/user-service/application.properties");
    let text =
        std::fs::read_to_string(&template).unwrap().replace("const.log_level", "const.log_levle");
    std::fs::write(&template, text).unwrap();
    let output = Command::new(example("env_render"))
        .arg(dir.join("environments.yaml"))
        .arg("beta")
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{err}");
    assert!(err.contains("--> config/user-service/application.properties:3:18"), "{err}");
    assert!(err.contains("did you mean `const.log_level`?"), "{err}");
}
