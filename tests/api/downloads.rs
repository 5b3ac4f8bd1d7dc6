//! Download links: exact bytes, protective headers, tampering, expiry, retention.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, bytes, sha256_hex};
use serde_json::Value;
use std::time::Duration;

backend_tests!(
    download_link_serves_the_exact_bytes_with_safe_headers,
    expired_links_are_refused,
    retention_deletes_files_without_any_request,
    concurrent_lookups_get_their_own_answers,
);

async fn download_link_serves_the_exact_bytes_with_safe_headers(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("dl").await;
    let data = bytes(300_000, 9);
    let response = app
        .upload_named(&code, data.clone(), "Lösung 1.pdf", "application/pdf")
        .await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let verification = body["last_submission"]["verification_code"]
        .as_str()
        .unwrap();

    let link = app.download_url(verification).await;
    assert_eq!(link.status(), 200);
    assert_eq!(link.headers()["cache-control"], "no-store");
    let link: Value = link.json().await.unwrap();
    assert_eq!(link["expires_seconds"], 600);
    let url = link["download_url"].as_str().unwrap();
    assert!(
        !url.contains(verification),
        "the link does not reveal the code"
    );

    let file = app.client.get(url).send().await.unwrap();
    assert_eq!(file.status(), 200);
    let headers = file.headers().clone();
    assert_eq!(headers["content-type"], "application/pdf");
    assert_eq!(
        headers["content-disposition"],
        "attachment; filename=\"L_sung 1.pdf\"; filename*=UTF-8''L%C3%B6sung%201.pdf"
    );
    let received = file.bytes().await.unwrap();
    assert_eq!(sha256_hex(&received), sha256_hex(&data));
    if !backend.is_s3() {
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "private, no-store");

        // Any change to the link is refused.
        let tampered_signature = format!("{}0", &url[..url.len() - 1]);
        let tampered_signature = if tampered_signature == url {
            format!("{}1", &url[..url.len() - 1])
        } else {
            tampered_signature
        };
        let expires: i64 = url
            .split("expires=")
            .nth(1)
            .unwrap()
            .split('&')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let later = url.replace(
            &format!("expires={expires}"),
            &format!("expires={}", expires + 3600),
        );
        let no_signature = url.split("&signature").next().unwrap().to_owned();
        for bad in [tampered_signature, later, no_signature] {
            let response = app.client.get(&bad).send().await.unwrap();
            assert_eq!(response.status(), 403, "{bad}");
        }
    }
}

async fn expired_links_are_refused(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|c| c.download_url_expires_seconds = 1).await;
    let code = app.upload_code("late").await;
    let verification = app.upload_ok(&code, bytes(1000, 1)).await;
    let link: Value = app.download_url(&verification).await.json().await.unwrap();
    assert_eq!(link["expires_seconds"], 1);
    let url = link["download_url"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let response = app.client.get(&url).send().await.unwrap();
    assert!(
        matches!(response.status().as_u16(), 400 | 403),
        "expired link refused, got {}",
        response.status()
    );
    // A fresh link works again.
    let fresh = app.download(&verification).await;
    assert_eq!(fresh.status(), 200);
}

async fn retention_deletes_files_without_any_request(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture
        .spawn(|c| {
            c.retention_seconds = 2;
            c.sweep_interval_seconds = 1;
        })
        .await;
    let code = app.upload_code("old").await;
    let verification = app.upload_ok(&code, bytes(1000, 1)).await;
    assert_eq!(
        app.state.depository.store.list_keys().await.unwrap().len(),
        1
    );
    let store = app.state.depository.store.clone();
    let mut gone = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if store.list_keys().await.unwrap().is_empty() {
            gone = true;
            break;
        }
    }
    assert!(gone, "the sweeper deleted the expired file by itself");
    let response = app.download_url(&verification).await;
    assert_eq!(response.status(), 410);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("expired"));
    app.audit().await;
}

/// Concurrent lookups (they share group-committed batches) each get their own answer, and
/// only the links handed out are recorded as disclosures.
async fn concurrent_lookups_get_their_own_answers(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("many").await;
    let replaced = app.upload_ok(&code, bytes(100, 1)).await;
    let current = app.upload_ok(&code, bytes(100, 2)).await;
    let lookups = (0..48).map(|i| {
        let (verification, expected) = match i % 3 {
            0 => (current.clone(), 200),
            1 => (replaced.clone(), 410),
            _ => (format!("zzzzzz{i:03}"), 404),
        };
        let app = &app;
        async move { (app.download_url(&verification).await.status(), expected) }
    });
    for (status, expected) in futures_util::future::join_all(lookups).await {
        assert_eq!(status, expected);
    }
    let status = app.get_json(&format!("/submissions/{code}")).await;
    assert_eq!(
        status["download_urls_issued_at"].as_array().unwrap().len(),
        16,
        "{status}"
    );
    let verified = fixture.cli(&["audit", "verify"]);
    assert!(verified.status.success(), "{verified:?}");
}
