//! The command line as an operator's script sees it: output and exit codes.

use crate::helpers::{Backend, Fixture};
use crate::process::{binary, output_of};

async fn migrate_sweep_and_errors(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let migrate = fixture.cli(&["migrate"]);
    assert!(migrate.status.success(), "{migrate:?}");
    assert!(String::from_utf8_lossy(&migrate.stdout).contains("up to date"));
    let again = fixture.cli(&["migrate"]);
    assert!(again.status.success(), "migrating twice is harmless");
    if matches!(backend, Backend::Embedded) {
        assert!(fixture.data_dir.path().join("exam-depository.db").exists());
        let sweep = fixture.cli(&["sweep"]);
        assert!(sweep.status.success(), "{sweep:?}");
        assert!(String::from_utf8_lossy(&sweep.stdout).contains("deleted 0 objects"));
    }
    let errors = fixture.cli(&["errors"]);
    assert!(errors.status.success());
    assert!(errors.stdout.is_empty());
}

crate::backend_tests!(migrate_sweep_and_errors);

#[tokio::test]
async fn failures_exit_non_zero_with_a_clear_message() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let output = output_of(
        binary()
            .arg("migrate")
            .env_clear()
            .env("DATABASE_URL", "mysql://localhost/exam")
            .env("DATA_DIR", fixture.data_dir.path()),
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unsupported DATABASE_URL scheme \"mysql\""),
        "{stderr}"
    );

    let usage = output_of(binary().arg("no-such-command"));
    assert_eq!(usage.status.code(), Some(2), "usage errors exit 2");

    let help = output_of(binary().arg("--help"));
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "serve",
        "migrate",
        "errors",
        "sweep",
        "[env: MAX_SUBMISSION_BYTES=",
    ] {
        assert!(text.contains(needle), "{needle} in --help");
    }
}

async fn named_keys_are_created_listed_and_revoked(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let created = fixture.cli(&["keys", "create", "alice"]);
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout).unwrap().trim().to_owned();
    assert!(key.len() >= 43);
    let duplicate = fixture.cli(&["keys", "create", "alice"]);
    assert_eq!(duplicate.status.code(), Some(1), "one live key per name");

    let with_key = |key: String| {
        let client = app.client.clone();
        let url = app.url("/students");
        async move { client.get(url).bearer_auth(key).send().await.unwrap() }
    };
    assert_eq!(with_key(key.clone()).await.status(), 200);

    let listed = fixture.cli(&["keys", "list"]);
    let text = String::from_utf8(listed.stdout).unwrap();
    assert!(text.contains("alice"));
    assert!(!text.contains(&key), "keys are never shown again");
    let stored: Vec<String> = {
        let db = &app.state.depository.db;
        db.list_api_keys()
            .await
            .unwrap()
            .into_iter()
            .map(|k| format!("{k:?}"))
            .collect()
    };
    assert!(
        stored.iter().all(|row| !row.contains(&key)),
        "only a digest is stored"
    );
    assert!(stored[0].contains("last_used_at: Some"), "use is recorded");

    let revoked = fixture.cli(&["keys", "revoke", "alice"]);
    assert!(revoked.status.success());
    let refused = with_key(key).await;
    assert_eq!(refused.status(), 401);
    let wrong = with_key("not-a-key".into()).await;
    assert_eq!(
        refused.headers()["www-authenticate"],
        wrong.headers()["www-authenticate"]
    );
    assert_eq!(
        refused.text().await.unwrap(),
        wrong.text().await.unwrap(),
        "revoked looks like wrong"
    );
    let again = fixture.cli(&["keys", "revoke", "alice"]);
    assert_eq!(again.status.code(), Some(1));
    let recreated = fixture.cli(&["keys", "create", "alice"]);
    assert!(recreated.status.success(), "the name is free again");
}

crate::backend_tests!(named_keys_are_created_listed_and_revoked);

#[tokio::test]
async fn demo_mode_is_announced_as_a_warning_at_startup() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let log = fixture.data_dir.path().join("demo.log");
    let server = crate::process::ServerProcess::start_with(
        &fixture,
        &[("DEMO_MODE", "true".into()), ("RUST_LOG", "info".into())],
        Some(&log),
    )
    .await;
    let token = reqwest::get(format!("{}/auth/token", server.base))
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    server.kill().await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("WARN") && text.contains("DEMO_MODE is on"),
        "{text}"
    );
}
