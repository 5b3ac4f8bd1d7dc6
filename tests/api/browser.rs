//! The pages in real headless Chromium, driven over WebDriver (chromedriver + fantoccini).
//! Skipped when Chromium is absent, unless every backend is required (CI). Screenshots go
//! to `target/screenshots/`, and to `docs/screenshots/` with `SAVE_SCREENSHOTS=1`.

use crate::helpers::{Backend, Fixture, TOKEN, TestApp, bytes, sha256_hex};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::process::{Child, Command};

struct Browser {
    client: Client,
    _driver: Child,
    _profile: tempfile::TempDir,
}

async fn browser() -> Option<Browser> {
    let chromedriver = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(chromedriver) = chromedriver else {
        let required =
            std::env::var("REQUIRE_ALL_BACKENDS").is_ok_and(|v| !v.is_empty() && v != "0");
        assert!(
            !required,
            "REQUIRE_ALL_BACKENDS is set but chromium-driver is not installed"
        );
        eprintln!("skipping browser test: chromium-driver is not installed");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let driver = Command::new(chromedriver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let capabilities = json!({
        "goog:chromeOptions": {
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1100,1000",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let capabilities: fantoccini::wd::Capabilities = capabilities
        .as_object()
        .unwrap()
        .clone()
        .into_iter()
        .collect();
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(client) =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
        {
            return Some(Browser {
                client,
                _driver: driver,
                _profile: profile,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not start");
}

async fn screenshot(client: &Client, name: &str) {
    let png = client.screenshot().await.unwrap();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join(name), &png).unwrap();
    if std::env::var("SAVE_SCREENSHOTS").is_ok_and(|v| v == "1") {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join(name), &png).unwrap();
    }
}

async fn type_into(client: &Client, id: &str, text: &str) {
    client
        .find(Locator::Id(id))
        .await
        .unwrap()
        .send_keys(text)
        .await
        .unwrap();
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn wait_visible(client: &Client, css: &str) {
    let script = format!(
        "const e = document.querySelector({css:?}); return !!e && !e.classList.contains('hidden') && e.offsetParent !== null;"
    );
    for _ in 0..100 {
        if client.execute(&script, vec![]).await.unwrap() == Value::Bool(true) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = client.source().await.unwrap_or_default();
    panic!(
        "{css} never became visible; page: {}",
        &body[..body.len().min(2000)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_student_uploads_through_the_page_and_the_receipt_downloads_the_same_bytes() {
    let Some(browser) = browser().await else {
        return;
    };
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("ada").await;
    let client = &browser.client;

    // A file over the limit is refused in the page, before any upload.
    let big = fixture.data_dir.path().join("too-big.pdf");
    std::fs::write(&big, bytes(3 * 1024 * 1024 + 1, 1)).unwrap();
    client
        .goto(&app.url(&format!("/upload?code={code}")))
        .await
        .unwrap();
    wait_visible(client, "#file-step").await;
    assert!(
        text_of(client, "#student-name")
            .await
            .contains("Ada Lovelace")
    );
    assert_eq!(text_of(client, "#attempts-left").await, "5");
    type_into(client, "file", big.to_str().unwrap()).await;
    wait_visible(client, "#message").await;
    assert!(text_of(client, "#message").await.contains("too large"));

    let answer = fixture.data_dir.path().join("Lösung 1.pdf");
    let data = bytes(700_000, 7);
    std::fs::write(&answer, &data).unwrap();
    let input = client.find(Locator::Id("file")).await.unwrap();
    input.clear().await.unwrap();
    input.send_keys(answer.to_str().unwrap()).await.unwrap();
    click(client, "#upload-button").await;
    wait_visible(client, "#receipt").await;
    screenshot(client, "upload-receipt.png").await;

    let verification = text_of(client, "#r-code").await;
    assert_eq!(text_of(client, "#r-sha256").await, sha256_hex(&data));
    assert_eq!(text_of(client, "#r-file").await, "Lösung 1.pdf");
    assert_eq!(text_of(client, "#r-left").await, "4");
    let downloaded = app.download(&verification).await.bytes().await.unwrap();
    assert_eq!(sha256_hex(&downloaded), sha256_hex(&data));

    // The signed receipt the page offers verifies offline with the CLI.
    wait_visible(client, "#signed-receipt").await;
    let receipt = client
        .execute(
            "return document.getElementById('signed-receipt-text').textContent;",
            vec![],
        )
        .await
        .unwrap();
    let receipt_file = fixture.data_dir.path().join("receipt-from-page.json");
    std::fs::write(&receipt_file, receipt.as_str().unwrap()).unwrap();
    let verified = crate::process::output_of(
        crate::process::binary()
            .args(["verify-receipt", receipt_file.to_str().unwrap()])
            .env_clear()
            .env("DATA_DIR", fixture.data_dir.path()),
    );
    assert!(verified.status.success(), "{verified:?}");

    // The verification page hands out a working link.
    client.goto(&app.url("/verify")).await.unwrap();
    type_into(client, "verification", &verification).await;
    click(client, "#verify-form button").await;
    wait_visible(client, "#link-box").await;
    let href = client
        .find(Locator::Id("download-link"))
        .await
        .unwrap()
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let via_page = app
        .client
        .get(&href)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(sha256_hex(&via_page), sha256_hex(&data));

    // A wrong code gets a clear message.
    client
        .goto(&app.url("/upload?code=WRONG000"))
        .await
        .unwrap();
    wait_visible(client, "#message").await;
    assert!(text_of(client, "#message").await.contains("not known"));
    browser.client.clone().close().await.unwrap();
}

async fn sign_in(client: &Client, app: &TestApp) {
    client.goto(&app.url("/examiner")).await.unwrap();
    type_into(client, "api-key", TOKEN).await;
    click(client, "#sign-in-form button").await;
    wait_visible(client, "#workspace").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_examiner_signs_in_adds_a_student_and_sees_import_errors_by_line() {
    let Some(browser) = browser().await else {
        return;
    };
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("ada").await;
    app.upload_ok(&code, bytes(1000, 1)).await;
    let client = &browser.client;

    // A wrong key is refused.
    client.goto(&app.url("/examiner")).await.unwrap();
    type_into(client, "api-key", "wrong").await;
    click(client, "#sign-in-form button").await;
    wait_visible(client, "#message").await;
    assert!(text_of(client, "#message").await.contains("not accepted"));

    sign_in(client, &app).await;
    assert!(
        text_of(client, "#totals")
            .await
            .contains("1 students, 1 with a submission")
    );

    for (id, value) in [
        ("nickname", "grace"),
        ("email", "grace@example.org"),
        ("first-name", "Grace"),
        ("last-name", "Hopper"),
    ] {
        type_into(client, id, value).await;
    }
    click(client, "#add-form button").await;
    for _ in 0..50 {
        if text_of(client, "#roster").await.contains("grace") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(text_of(client, "#roster").await.contains("Grace Hopper"));
    assert!(text_of(client, "#message").await.contains("upload code"));
    let student: Value = app
        .get_as_examiner("/students/grace")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(student["email"], "grace@example.org");

    let csv = fixture.data_dir.path().join("roster.csv");
    std::fs::write(&csv, "nickname,first_name,last_name,email\nok1,Ok,One,ok1@example.org\nbad one,Bad,Two,bad@example.org\n").unwrap();
    type_into(client, "csv-file", csv.to_str().unwrap()).await;
    click(client, "#import-form button").await;
    wait_visible(client, "#import-errors").await;
    let errors = text_of(client, "#import-errors").await;
    assert!(errors.contains("Line 3"), "{errors}");
    assert_eq!(
        app.get_as_examiner("/students/ok1").await.status(),
        404,
        "nothing imported"
    );
    client
        .execute(
            "document.getElementById('import-title').scrollIntoView();",
            vec![],
        )
        .await
        .unwrap();
    screenshot(client, "examiner.png").await;

    click(client, "#print-slips").await;
    wait_visible(client, "#slips-view").await;
    let slips = text_of(client, "#slips").await;
    assert!(slips.contains(&code), "slips show upload codes");
    assert!(slips.contains(&format!("/upload?code={code}")));
    browser.client.clone().close().await.unwrap();
}
