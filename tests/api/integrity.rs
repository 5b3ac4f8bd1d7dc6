//! Exam integrity: the submission window, signed receipts, the audit log, and what the
//! student sees of downloads.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, TOKEN, TestApp, bytes, slow_part};
use serde_json::Value;
use std::time::Duration;

backend_tests!(
    uploads_follow_the_window_and_extensions,
    receipts_verify_and_name_a_changed_field,
    audit_chain_holds_under_concurrent_uploads_and_finds_an_edit,
    audit_chain_links_across_a_many_statement_append,
);

fn rfc3339_in(seconds: f64) -> String {
    let at = chrono::Utc::now() + chrono::Duration::milliseconds((seconds * 1000.0) as i64);
    exam_depository::domain::time::format(at)
}

async fn patch_extra(app: &TestApp, nickname: &str, seconds: i64) -> reqwest::Response {
    app.client
        .patch(app.url(&format!("/students/{nickname}")))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"extra_seconds": seconds}))
        .send()
        .await
        .unwrap()
}

async fn uploads_follow_the_window_and_extensions(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let close = rfc3339_in(2.5);
    let app = fixture
        .spawn(|c| c.submissions_close_at = Some(close.clone()))
        .await;
    let punctual = app.upload_code("punctual").await;
    let slow = app.upload_code("slow").await;
    let late = app.upload_code("late").await;
    let extended = app.upload_code("extended").await;

    // Before the close: accepted, and the status shows the window and the server's clock.
    app.upload_ok(&punctual, bytes(100, 1)).await;
    let status: Value = app
        .get(&format!("/submissions/{punctual}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["window"]["closes_at"], close.as_str());
    assert!(status["window"]["server_time"].as_str().unwrap() < close.as_str());

    // An upload that arrives before the close but whose body ends after it counts.
    let part = slow_part(8, 1000, Duration::from_millis(400), "slow.pdf");
    let in_flight = app
        .client
        .post(app.url(&format!("/submissions/{slow}")))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    assert!(chrono::Utc::now() > chrono::DateTime::parse_from_rfc3339(&close).unwrap());
    assert_eq!(in_flight.status(), 201, "arrived before the close");

    // After the close: 403, no attempt used.
    let refused = app.upload(&late, bytes(100, 2)).await;
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Submissions closed at")
    );
    let status: Value = app
        .get(&format!("/submissions/{late}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["uploads_available"], 5);

    // An extension reopens the window for that student only.
    let response = patch_extra(&app, "extended", 60).await;
    assert_eq!(response.status(), 200);
    let student: Value = response.json().await.unwrap();
    assert_eq!(student["extra_seconds"], 60);
    app.upload_ok(&extended, bytes(100, 3)).await;
    let status: Value = app
        .get(&format!("/submissions/{extended}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(status["window"]["closes_at"].as_str().unwrap() > close.as_str());
    assert_eq!(app.upload(&late, bytes(100, 4)).await.status(), 403);
    assert_eq!(patch_extra(&app, "extended", -1).await.status(), 422);
    assert_eq!(patch_extra(&app, "nobody", 10).await.status(), 404);
    app.stop().await;

    // Before the opening: 403 as well.
    let app = fixture
        .spawn(|c| c.submissions_open_at = Some(rfc3339_in(3600.0)))
        .await;
    let early = app.upload(&late, bytes(100, 5)).await;
    assert_eq!(early.status(), 403);
    let body: Value = early.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Submissions open at")
    );
    app.audit().await;
}

async fn receipts_verify_and_name_a_changed_field(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("proof").await;
    let verification = app.upload_ok(&code, bytes(4321, 9)).await;
    let receipt: Value = app
        .get(&format!("/receipts/{verification}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["nickname"], "proof");
    assert_eq!(receipt["size_bytes"], 4321);
    assert_eq!(receipt["attempt"], 1);
    assert_eq!(receipt["service_url"], app.base.as_str());
    let key: Value = app.get("/receipts/public-key").await.json().await.unwrap();
    assert_eq!(key["algorithm"], "Ed25519");
    assert_eq!(receipt["public_key"], key["public_key"]);
    assert_eq!(app.get("/receipts/zzzzzzzzz").await.status(), 404);

    let file = fixture.data_dir.path().join("receipt.json");
    std::fs::write(&file, receipt.to_string()).unwrap();
    let public_key = key["public_key"].as_str().unwrap();
    let ok = fixture.cli(&[
        "verify-receipt",
        file.to_str().unwrap(),
        "--public-key",
        public_key,
    ]);
    assert!(ok.status.success(), "{ok:?}");
    let default_key = fixture.cli(&["verify-receipt", file.to_str().unwrap()]);
    assert!(
        default_key.status.success(),
        "the installation's own key by default"
    );

    for (field, value) in [
        ("sha256", Value::from("0".repeat(64))),
        ("attempt", Value::from(3)),
        ("nickname", Value::from("mallory")),
    ] {
        let mut forged = receipt.clone();
        forged[field] = value;
        std::fs::write(&file, forged.to_string()).unwrap();
        let bad = fixture.cli(&[
            "verify-receipt",
            file.to_str().unwrap(),
            "--public-key",
            public_key,
        ]);
        assert_eq!(bad.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(
            stderr.contains(&format!("changed after signing: {field}")),
            "{stderr}"
        );
    }

    // A replaced submission keeps its receipt: it proves what was accepted then.
    app.upload_ok(&code, bytes(10, 1)).await;
    let old: Value = app
        .get(&format!("/receipts/{verification}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(old["size_bytes"], 4321);
}

async fn audit_chain_holds_under_concurrent_uploads_and_finds_an_edit(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let mut codes = Vec::new();
    for i in 0..4 {
        codes.push(app.upload_code(&format!("chain{i}")).await);
    }
    let uploads = codes
        .iter()
        .flat_map(|code| (0..6).map(move |i| (code, i)))
        .map(|(code, i)| {
            let app = &app;
            async move { app.upload(code, bytes(500, i)).await.status().as_u16() }
        });
    let statuses = futures_util::future::join_all(uploads).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 20);
    let status: Value = app
        .get(&format!("/submissions/{}", codes[0]))
        .await
        .json()
        .await
        .unwrap();
    let verification = status["last_submission"]["verification_code"]
        .as_str()
        .unwrap()
        .to_owned();
    // Concurrent disclosures share transactions (group commit) and still form one chain.
    let links = (0..20).map(|_| app.download_url(&verification));
    for response in futures_util::future::join_all(links).await {
        assert_eq!(response.status(), 200);
    }

    // The student sees when download links were issued.
    let status: Value = app
        .get(&format!("/submissions/{}", codes[0]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        status["download_urls_issued_at"].as_array().unwrap().len(),
        20
    );

    let verified = fixture.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    assert!(String::from_utf8_lossy(&verified.stdout).contains("audit log intact"));

    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page: Value = app
            .get_as_examiner(&format!("/audit?after={after}&limit=10"))
            .await
            .json()
            .await
            .unwrap();
        events.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_after"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    let count = |action: &str| events.iter().filter(|e| e["action"] == action).count();
    assert_eq!(count("student.created"), 4);
    assert_eq!(count("upload.accepted"), 20);
    assert_eq!(count("upload.replaced"), 16);
    assert_eq!(count("upload.refused"), 4);
    assert_eq!(count("download_url.issued"), 20);
    assert_eq!(events[0]["actor"], "AUTH_TOKEN");
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as i64).collect::<Vec<_>>(),
        "one gap-free chain"
    );
    let text = serde_json::to_string(&events).unwrap();
    for secret in codes.iter().chain([&verification]) {
        assert!(!text.contains(secret.as_str()), "no codes in the audit log");
    }
    assert_eq!(app.get("/audit").await.status(), 401);

    // The log refuses edits; someone who bypasses that (a database administrator) is caught.
    let edit = "UPDATE audit_event SET actor = 'mallory' WHERE audit_event_id = 7";
    assert!(raw_sql(&fixture, edit).await.is_err(), "append-only");
    let bypass = match backend {
        Backend::Embedded => "DROP TRIGGER audit_event_no_update",
        Backend::Production(_) => "DROP TRIGGER audit_event_no_change ON audit_event",
    };
    raw_sql(&fixture, bypass).await.unwrap();
    raw_sql(&fixture, edit).await.unwrap();
    let broken = fixture.cli(&["audit", "verify"]);
    assert_eq!(broken.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&broken.stderr);
    assert!(stderr.contains("broken at event 7"), "{stderr}");
}

async fn raw_sql(fixture: &Fixture, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(&fixture.effective_database_url()).await?;
    sqlx::raw_sql(sql).execute(&mut conn).await?;
    conn.close().await
}

/// An import appends more events than one INSERT carries (500 rows), and the head update
/// rides on the last INSERT: the chain must still verify, and the next append link to it.
async fn audit_chain_links_across_a_many_statement_append(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    app.import_students(1201).await;
    let code = app.upload_code("afterimport").await;
    app.upload_ok(&code, bytes(100, 1)).await;

    let verified = fixture.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
    assert!(String::from_utf8_lossy(&verified.stdout).contains("audit log intact"));
    let page: Value = app
        .get_as_examiner("/audit?after=1200&limit=10")
        .await
        .json()
        .await
        .unwrap();
    let events = page["events"].as_array().unwrap();
    assert!(events.len() >= 2, "{page}");
    assert_eq!(events[0]["id"], 1201);
    assert_eq!(events[1]["prev_hash"], events[0]["hash"]);
}
