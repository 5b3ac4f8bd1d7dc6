//! The deployment files agree with the service: fly.toml, Dockerfile.

use std::path::Path;

fn read(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap()
}

#[test]
fn fly_toml_matches_the_server() {
    let fly: toml::Table = read("fly.toml").parse().expect("fly.toml is valid TOML");
    let env = fly["env"].as_table().unwrap();
    let service = fly["http_service"].as_table().unwrap();
    let port: i64 = env["PORT"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        service["internal_port"].as_integer(),
        Some(port),
        "internal port = PORT"
    );
    assert_eq!(env["HOST"].as_str(), Some("0.0.0.0"));
    assert_eq!(env["TRUSTED_PROXY_HEADER"].as_str(), Some("Fly-Client-IP"));
    assert_eq!(env["LOG_FORMAT"].as_str(), Some("json"));

    let checks = service["checks"].as_array().unwrap();
    assert!(
        checks
            .iter()
            .any(|c| c["path"].as_str() == Some("/healthz"))
    );

    let concurrency = service["concurrency"].as_table().unwrap();
    let max_connections: i64 = env["MAX_CONNECTIONS"].as_str().unwrap().parse().unwrap();
    assert!(concurrency["hard_limit"].as_integer().unwrap() <= max_connections);
    assert!(
        concurrency["soft_limit"].as_integer().unwrap()
            < concurrency["hard_limit"].as_integer().unwrap()
    );

    let grace: u64 = env["SHUTDOWN_GRACE_SECONDS"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let kill: u64 = fly["kill_timeout"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(kill > grace, "Fly waits longer than the grace period");
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));
    assert!(fly["deploy"]["strategy"].as_str().is_some());

    for secret in [
        "AUTH_TOKEN",
        "DATABASE_URL",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
    ] {
        assert!(!env.contains_key(secret), "{secret} belongs in fly secrets");
    }
}

#[test]
fn dockerfile_runs_the_binary_as_a_non_root_user_with_a_health_check() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("USER 10001"), "non-root");
    assert!(dockerfile.contains("HEALTHCHECK"));
    assert!(dockerfile.contains(r#"ENTRYPOINT ["exam-depository"]"#));
    assert!(dockerfile.contains(r#"CMD ["serve"]"#));
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage");
}

#[test]
fn healthcheck_command_reports_the_local_server() {
    let down = crate::process::output_of(
        crate::process::binary()
            .arg("healthcheck")
            .env_clear()
            .env("PORT", "1"),
    );
    assert_eq!(down.status.code(), Some(1), "nothing listens on port 1");
}

#[tokio::test]
async fn healthcheck_command_passes_against_a_running_server() {
    let fixture = crate::helpers::Fixture::new(&crate::helpers::Backend::Embedded).await;
    let server = crate::process::ServerProcess::start(&fixture).await;
    let port = server.address().rsplit(':').next().unwrap().to_owned();
    let up = crate::process::output_of(
        crate::process::binary()
            .arg("healthcheck")
            .env_clear()
            .env("PORT", &port),
    );
    assert!(up.status.success(), "{up:?}");
    server.kill().await;
}
