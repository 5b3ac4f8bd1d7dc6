//! Student uploads: limits, replacement, concurrency, storage failure.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, MIB, TestApp, bytes, sha256_hex};
use md5::Digest as _;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

backend_tests!(
    upload_returns_the_receipt_and_status,
    size_limit_is_exact,
    content_length_far_over_the_limit_is_refused_before_the_body,
    missing_or_empty_files_use_no_attempt,
    unknown_codes_are_not_found,
    five_uploads_replace_each_other_and_the_sixth_is_refused,
    twenty_concurrent_uploads_accept_exactly_five,
    concurrent_uploads_for_the_last_slot_accept_exactly_one,
    storage_failure_answers_500_and_records_an_error,
);

async fn uploads_used(app: &TestApp, nickname: &str) -> i64 {
    let student: Value = app
        .get_as_examiner(&format!("/students/{nickname}"))
        .await
        .json()
        .await
        .unwrap();
    student["uploads_used"].as_i64().unwrap()
}

async fn upload_returns_the_receipt_and_status(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("ada").await;
    let status = app.get_json(&format!("/submissions/{code}")).await;
    assert_eq!(status["uploads_available"], 5);
    assert_eq!(status["has_submission"], false);
    assert_eq!(status["last_submission"], Value::Null);
    assert_eq!(
        status["student"],
        serde_json::json!({"nickname": "ada", "first_name": "Ada", "last_name": "Lovelace"})
    );
    assert_eq!(
        status["window"]["opens_at"],
        Value::Null,
        "no window configured"
    );
    assert!(status["window"]["server_time"].is_string());
    assert_eq!(status["download_urls_issued_at"], serde_json::json!([]));

    let data = bytes(1000, 3);
    let response = app
        .upload_named(
            &code,
            data.clone(),
            "../../Lösung \"1\".pdf",
            "application/pdf",
        )
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["uploads_available"], 4);
    assert_eq!(body["has_submission"], true);
    let receipt = &body["last_submission"];
    assert_eq!(receipt["size_bytes"], 1000);
    assert_eq!(receipt["sha256"], sha256_hex(&data));
    assert_eq!(receipt["md5"], hex::encode(md5::Md5::digest(&data)));
    assert_eq!(receipt["original_filename"], "Lösung 1.pdf");
    assert_eq!(receipt["content_type"], "application/pdf");
    assert_eq!(receipt["attempt"], 1);
    assert!(
        receipt.get("file_name").is_none(),
        "students do not see the object name"
    );
    let code_v = receipt["verification_code"].as_str().unwrap();
    assert!(exam_depository::domain::codes::looks_like_verification_code(code_v));

    let status = app.get_json(&format!("/submissions/{code}")).await;
    let (mut status, mut body) = (status, body);
    for value in [&mut status, &mut body] {
        value["window"]["server_time"] = Value::Null;
    }
    assert_eq!(status, body);
    let student: Value = app
        .get_as_examiner("/students/ada")
        .await
        .json()
        .await
        .unwrap();
    let key = student["last_submission"]["file_name"].as_str().unwrap();
    assert!(
        exam_depository::domain::codes::looks_like_storage_key(key),
        "random key {key}"
    );
    app.audit().await;
}

async fn size_limit_is_exact(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("edge").await;

    let response = app.upload(&code, bytes(3 * MIB + 1, 1)).await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("3145728"));
    assert_eq!(uploads_used(&app, "edge").await, 0, "no attempt used");
    assert!(
        app.state
            .depository
            .store
            .list_keys()
            .await
            .unwrap()
            .is_empty(),
        "nothing stored"
    );

    let exact = bytes(3 * MIB, 2);
    let verification = app.upload_ok(&code, exact.clone()).await;
    let downloaded = app.download(&verification).await.bytes().await.unwrap();
    assert_eq!(downloaded.len(), 3 * MIB);
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&exact));
    app.audit().await;
}

async fn content_length_far_over_the_limit_is_refused_before_the_body(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("liar").await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "POST /submissions/{code} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: multipart/form-data; boundary=X\r\nContent-Length: 104857600\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Not one byte of the body is sent: the answer must come anyway.
    let mut answer = vec![0; 1024];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .expect("answered without reading the body")
        .unwrap();
    let text = String::from_utf8_lossy(&answer[..read]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert_eq!(uploads_used(&app, "liar").await, 0);
}

async fn missing_or_empty_files_use_no_attempt(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("empty").await;
    let url = app.url(&format!("/submissions/{code}"));

    let empty = app.upload(&code, Vec::new()).await;
    assert_eq!(empty.status(), 422);
    let body: Value = empty.json().await.unwrap();
    assert_eq!(body["detail"], "Empty file");

    let other_part = reqwest::multipart::Form::new().text("note", "hello");
    let response = app
        .client
        .post(&url)
        .multipart(other_part)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().starts_with("No file"));

    let response = app
        .client
        .post(&url)
        .body("raw bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "not multipart");

    let response = app
        .client
        .post(&url)
        .header("content-type", "multipart/form-data; boundary=X")
        .body("--X\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nabc")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "truncated multipart");

    assert_eq!(uploads_used(&app, "empty").await, 0);
    app.audit().await;
}

async fn unknown_codes_are_not_found(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    for code in ["ZZZZZZZZ", "short", "lower123", "..%2F..%2Fetc"] {
        let response = app.upload(code, bytes(10, 0)).await;
        assert_eq!(response.status(), 404, "{code}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"], "Upload code not found");
        assert_eq!(app.get(&format!("/submissions/{code}")).await.status(), 404);
    }
    for code in ["zzzzzzzzz", "short", "UPPERCASE"] {
        assert_eq!(app.download_url(code).await.status(), 404, "{code}");
    }
    assert!(
        app.state
            .depository
            .store
            .list_keys()
            .await
            .unwrap()
            .is_empty()
    );
}

async fn five_uploads_replace_each_other_and_the_sixth_is_refused(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("five").await;
    let mut codes = Vec::new();
    for attempt in 1..=5u8 {
        let response = app.upload(&code, bytes(2000, attempt)).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["uploads_available"], 5 - i64::from(attempt));
        assert_eq!(body["last_submission"]["attempt"], i64::from(attempt));
        codes.push(
            body["last_submission"]["verification_code"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        app.audit().await; // the replaced file is gone from storage
    }
    let sixth = app.upload(&code, bytes(2000, 6)).await;
    assert_eq!(sixth.status(), 422);
    let body: Value = sixth.json().await.unwrap();
    assert_eq!(body["detail"], "Upload limit reached");
    assert_eq!(uploads_used(&app, "five").await, 5);

    for old in &codes[..4] {
        let response = app.download_url(old).await;
        assert_eq!(response.status(), 410, "replaced");
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].as_str().unwrap().contains("replaced"));
    }
    let latest = app.download(&codes[4]).await.bytes().await.unwrap();
    assert_eq!(latest.as_ref(), bytes(2000, 5).as_slice());
    assert_eq!(
        app.state.depository.store.list_keys().await.unwrap().len(),
        1
    );
    app.audit().await;
}

async fn race(app: &TestApp, code: &str, count: usize) -> (usize, usize) {
    let uploads = (0..count).map(|i| app.upload(code, bytes(50_000, i as u8)));
    let statuses: Vec<u16> = futures_util::future::join_all(uploads)
        .await
        .iter()
        .map(|r| r.status().as_u16())
        .collect();
    let accepted = statuses.iter().filter(|s| **s == 201).count();
    let refused = statuses.iter().filter(|s| **s == 422).count();
    assert_eq!(accepted + refused, count, "{statuses:?}");
    (accepted, refused)
}

async fn twenty_concurrent_uploads_accept_exactly_five(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    for round in 0..3 {
        let nickname = format!("rush{round}");
        let code = app.upload_code(&nickname).await;
        let (accepted, _) = race(&app, &code, 20).await;
        assert_eq!(accepted, 5, "round {round}");
        assert_eq!(uploads_used(&app, &nickname).await, 5);
    }
    app.audit().await;
}

async fn concurrent_uploads_for_the_last_slot_accept_exactly_one(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    for round in 0..3 {
        let nickname = format!("last{round}");
        let code = app.upload_code(&nickname).await;
        for i in 0..4 {
            app.upload_ok(&code, bytes(100, i)).await;
        }
        let (accepted, _) = race(&app, &code, 20).await;
        assert_eq!(accepted, 1, "round {round}");
        assert_eq!(uploads_used(&app, &nickname).await, 5);
    }
    app.audit().await;
}

async fn storage_failure_answers_500_and_records_an_error(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("unlucky").await;
    // Break the real store: the local directory becomes a file; the bucket disappears.
    match &backend {
        Backend::Embedded => {
            let files = fixture.data_dir.path().join("files");
            std::fs::remove_dir_all(&files).unwrap();
            std::fs::write(&files, b"not a directory").unwrap();
        }
        Backend::Production(p) => {
            let bucket = fixture.bucket.as_deref().unwrap();
            crate::helpers::s3_bucket_request(p, bucket, reqwest::Method::DELETE).await;
        }
    }
    let response = app.upload(&code, bytes(5000, 1)).await;
    assert_eq!(response.status(), 500);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"detail": "Submission Storage Error"})
    );
    let request_id = response_request_id(&app, &code).await;

    assert_eq!(uploads_used(&app, "unlucky").await, 0, "no attempt used");
    let status = app.get_json(&format!("/submissions/{code}")).await;
    assert_eq!(status["has_submission"], false);
    let errors = app.state.depository.db.recent_errors(10).await.unwrap();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].detail, "Submission Storage Error");
    assert_eq!(
        errors[0].route.as_deref(),
        Some("/submissions/{upload_code}")
    );
    assert_eq!(errors[0].request_id.as_deref(), Some(request_id.as_str()));
    assert!(errors[0].cause.is_some());

    // The operator's view: `exam-depository errors`.
    let output = crate::process::output_of(
        crate::process::binary()
            .args(["errors", "--last", "5"])
            .env_clear()
            .env("DATA_DIR", fixture.data_dir.path())
            .envs(
                fixture
                    .database_url
                    .as_ref()
                    .map(|url| ("DATABASE_URL", url)),
            ),
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "{stdout}");
    assert!(stdout.contains("Submission Storage Error"));
    assert!(stdout.contains(&request_id));
}

/// Makes a second failing upload and returns its `x-request-id`.
async fn response_request_id(app: &TestApp, code: &str) -> String {
    let response = app.upload(code, bytes(10, 2)).await;
    assert_eq!(response.status(), 500);
    response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned()
}
