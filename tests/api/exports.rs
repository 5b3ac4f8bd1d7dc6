//! The ZIP export: contents, manifest, scale, and failure mid-stream.

use crate::backend_tests;
use crate::faults::spawn_faulty;
use crate::helpers::{Backend, Fixture, TOKEN, TestApp, bytes, sha256_hex};
use async_zip::base::read::mem::ZipFileReader;
use futures_util::{StreamExt, TryStreamExt};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

backend_tests!(
    export_contains_every_current_file_and_a_manifest,
    export_of_a_thousand_students
);

async fn fetch_zip(app: &TestApp) -> Vec<u8> {
    let response = app
        .client
        .get(app.url("/exports/submissions.zip"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/zip");
    response.bytes().await.unwrap().to_vec()
}

async fn unzip(archive: Vec<u8>) -> BTreeMap<String, Vec<u8>> {
    let reader = ZipFileReader::new(archive).await.unwrap();
    let mut files = BTreeMap::new();
    for index in 0..reader.file().entries().len() {
        let name = reader.file().entries()[index]
            .filename()
            .as_str()
            .unwrap()
            .to_owned();
        let mut entry = reader.reader_with_entry(index).await.unwrap();
        let mut data = Vec::new();
        entry.read_to_end_checked(&mut data).await.unwrap();
        files.insert(name, data);
    }
    files
}

/// Each entry's name and modification time.
async fn entry_dates(archive: Vec<u8>) -> Vec<(String, chrono::DateTime<chrono::Utc>)> {
    let reader = ZipFileReader::new(archive).await.unwrap();
    reader
        .file()
        .entries()
        .iter()
        .map(|entry| {
            let date = entry.last_modification_date().as_chrono().single().unwrap();
            (entry.filename().as_str().unwrap().to_owned(), date)
        })
        .collect()
}

async fn export_contains_every_current_file_and_a_manifest(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let ada = app.upload_code("ada").await;
    let bob = app.upload_code("bob").await;
    app.upload_code("cyd").await; // no submission: not in the archive
    app.upload_named(&ada, bytes(1000, 1), "first.pdf", "application/pdf")
        .await;
    let ada_final = bytes(2000, 2);
    let response = app
        .upload_named(&ada, ada_final.clone(), "final, v2.pdf", "application/pdf")
        .await;
    let ada_code =
        response.json::<serde_json::Value>().await.unwrap()["last_submission"]["verification_code"]
            .as_str()
            .unwrap()
            .to_owned();
    let bob_file = bytes(3 * 1024 * 1024, 3);
    app.upload_named(
        &bob,
        bob_file.clone(),
        "Lösung.docx",
        "application/octet-stream",
    )
    .await;

    let archive = fetch_zip(&app).await;
    let dates = entry_dates(archive.clone()).await;
    let files = unzip(archive).await;
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["ada/final, v2.pdf", "bob/Lösung.docx", "manifest.csv"]
    );
    assert_eq!(files["ada/final, v2.pdf"], ada_final);
    assert_eq!(sha256_hex(&files["bob/Lösung.docx"]), sha256_hex(&bob_file));
    let manifest = String::from_utf8(files["manifest.csv"].clone()).unwrap();
    let lines: Vec<&str> = manifest.lines().collect();
    assert_eq!(
        lines[0],
        "nickname,first_name,last_name,verification_code,size_bytes,sha256,uploaded_at,file"
    );
    assert!(lines[1].starts_with(&format!(
        "ada,Ada,Lovelace,{ada_code},2000,{},",
        sha256_hex(&ada_final)
    )));
    assert!(lines[1].ends_with(",\"ada/final, v2.pdf\""));
    assert!(lines[2].starts_with("bob,"));
    assert_eq!(lines.len(), 3);
    // Each file carries its upload time (ZIP times count in 2 s steps).
    for line in &lines[1..] {
        let nickname = line.split(',').next().unwrap();
        let uploaded_at = line.split(',').nth(6).unwrap();
        let uploaded_at = chrono::DateTime::parse_from_rfc3339(uploaded_at).unwrap();
        let (_, date) = dates
            .iter()
            .find(|(name, _)| name.starts_with(&format!("{nickname}/")))
            .unwrap();
        let off = (*date - uploaded_at.to_utc()).num_milliseconds().abs();
        assert!(
            off < 2000,
            "{nickname}: {date} for an upload at {uploaded_at}"
        );
    }

    let unauthenticated = app.get("/exports/submissions.zip").await;
    assert_eq!(unauthenticated.status(), 401);
}

async fn export_of_a_thousand_students(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let codes = app.import_students(1000).await;
    let statuses: Vec<u16> = futures_util::stream::iter(codes.iter().enumerate())
        .map(|(i, code)| {
            let app = &app;
            async move {
                app.upload(code, bytes(1024, i as u8))
                    .await
                    .status()
                    .as_u16()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|s| *s == 201));
    let files = unzip(fetch_zip(&app).await).await;
    assert_eq!(files.len(), 1001);
    assert_eq!(files["s999/answer.pdf"], bytes(1024, (999 % 256) as u8));
    let manifest = String::from_utf8(files["manifest.csv"].clone()).unwrap();
    assert_eq!(manifest.lines().count(), 1001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storage_error_mid_stream_fails_the_download_instead_of_truncating_it() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let (app, faults) = spawn_faulty(&fixture).await;
    for name in ["one", "two"] {
        let code = app.upload_code(name).await;
        app.upload_ok(&code, bytes(100_000, 1)).await;
    }
    faults.fail_get.store(true, Ordering::SeqCst);
    let response = app
        .client
        .get(app.url("/exports/submissions.zip"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        200,
        "the error happens after the headers"
    );
    let body: Result<Vec<_>, _> = response.bytes_stream().try_collect().await;
    assert!(body.is_err(), "the transfer fails visibly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hanging_up_mid_export_stops_the_reads() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let (app, faults) = spawn_faulty(&fixture).await;
    // 48 MiB of files: far more than the socket buffers between the server and the client.
    let codes = app.import_students(48).await;
    for (i, code) in codes.iter().enumerate() {
        app.upload_ok(code, bytes(1024 * 1024, i as u8)).await;
    }
    let mut response = app.get_as_examiner("/exports/submissions.zip").await;
    assert_eq!(response.status(), 200);
    assert!(response.chunk().await.unwrap().is_some());
    drop(response);

    let mut reads = faults.gets.load(Ordering::SeqCst);
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = faults.gets.load(Ordering::SeqCst);
        if now == reads {
            break;
        }
        reads = now;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(faults.gets.load(Ordering::SeqCst), reads, "reading stopped");
    assert!(reads < 48, "the export stopped after {reads} of 48 files");
    // The server is unharmed: the next export is whole.
    assert_eq!(unzip(fetch_zip(&app).await).await.len(), 49);
}
