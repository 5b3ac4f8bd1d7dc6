//! Metrics, request ids and structured logs.

use crate::helpers::{Backend, Fixture, TOKEN, bytes};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_uploads_by_outcome_and_time_dependencies() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("metric").await;
    app.upload_ok(&code, bytes(1234, 1)).await;
    assert_eq!(app.upload(&code, Vec::new()).await.status(), 422);
    assert_eq!(app.upload("ZZZZZZZZ", bytes(10, 1)).await.status(), 404);
    assert_eq!(
        app.get("/metrics").await.status(),
        401,
        "metrics need the examiner key"
    );
    app.state.depository.sweep_once().await.unwrap();

    let response = app.get_as_examiner("/metrics").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("openmetrics-text")
    );
    let text = response.text().await.unwrap();
    for needle in [
        r#"exam_depository_uploads_total{outcome="accepted"} 1"#,
        r#"exam_depository_uploads_total{outcome="empty_file"} 1"#,
        r#"exam_depository_uploads_total{outcome="unknown_code"} 1"#,
        "exam_depository_stored_bytes_total 1234",
        r#"exam_depository_http_requests_total{method="POST",route="/submissions/{upload_code}",status="201"} 1"#,
        r#"exam_depository_http_request_duration_seconds_count{method="POST",route="/submissions/{upload_code}"} 3"#,
        r#"exam_depository_storage_call_duration_seconds_count{operation="put"} 1"#,
        "exam_depository_db_call_duration_seconds_count",
        "exam_depository_db_pool_connections",
        "exam_depository_uploads_in_flight 0",
    ] {
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }
    assert!(!text.contains(&code), "no codes in metrics");
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_a_request_id_and_a_given_one_is_kept() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(|_| {}).await;
    let first = app.get("/").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let second = app.get("/nowhere").await.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_ne!(first, second);
    assert_eq!(first.len(), 36, "a UUID");
    let given = app
        .client
        .get(app.url("/"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-123");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_with_the_request_id() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let log = fixture.data_dir.path().join("json.log");
    let server = crate::process::ServerProcess::start_with(
        &fixture,
        &[("LOG_FORMAT", "json".into()), ("RUST_LOG", "info".into())],
        Some(&log),
    )
    .await;
    let client = reqwest::Client::new();
    let response = client
        .get(format!("{}/students", server.base))
        .bearer_auth(TOKEN)
        .header("x-request-id", "req-json-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.terminate();
    assert_eq!(server.wait().await, Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let mut saw_request = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(value.is_object());
        if value["span"]["request_id"] == "req-json-1" {
            saw_request = true;
            assert_eq!(value["span"]["route"], "/students");
        }
    }
    assert!(
        saw_request,
        "the request's log line carries its id:\n{text}"
    );
}
