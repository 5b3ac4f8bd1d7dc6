//! SPEC section 3: durable acknowledgements, no orphans, convergence after faults, outages,
//! crashes and graceful shutdown. Each test ends with an audit of the invariants.

use crate::backend_tests;
use crate::faults::{FreezableProxy, spawn_faulty};
use crate::helpers::{Backend, Fixture, MIB, audit, audit_after_leases, bytes, slow_part};
use crate::process::ServerProcess;
use serde_json::Value;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

backend_tests!(
    commits_are_synchronous,
    client_hanging_up_mid_body_uses_no_attempt,
    crash_between_storing_and_committing_converges_after_a_sweep,
    failed_delete_of_a_replaced_file_is_retried_until_it_succeeds,
    server_killed_during_uploads_loses_nothing_and_leaves_nothing,
    sigterm_lets_uploads_in_flight_finish,
    storage_outage_fails_fast_and_recovers,
);

async fn status(app_base: &str, code: &str) -> Value {
    reqwest::get(format!("{app_base}/submissions/{code}"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn commits_are_synchronous(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let durability = app.state.depository.db.durability().await.unwrap();
    let expected = match backend {
        Backend::Embedded => "synchronous=2",
        Backend::Production(_) => "synchronous_commit=on",
    };
    assert_eq!(durability, expected);
}

/// Sends the head and part of a 1 MiB upload, then hangs up.
async fn abandon_upload(address: &str, code: &str) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let head = format!(
        "POST /submissions/{code} HTTP/1.1\r\nHost: {address}\r\n\
         Content-Type: multipart/form-data; boundary=XYZ\r\nContent-Length: {}\r\n\r\n\
         --XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.bin\"\r\n\r\n",
        MIB + 200
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&bytes(300_000, 1)).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
}

async fn client_hanging_up_mid_body_uses_no_attempt(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("quitter").await;
    abandon_upload(app.base.trim_start_matches("http://"), &code).await;
    let spool = fixture.data_dir.path().join("tmp");
    let mut spool_empty = false;
    for _ in 0..50 {
        if std::fs::read_dir(&spool).unwrap().next().is_none() {
            spool_empty = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spool_empty, "the partial spool file is removed");
    assert_eq!(status(&app.base, &code).await["uploads_available"], 5);
    app.audit().await;
    app.upload_ok(&code, bytes(100, 1)).await;
    app.audit().await;
}

async fn crash_between_storing_and_committing_converges_after_a_sweep(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let (app, faults) = spawn_faulty(&fixture).await;
    let code = app.upload_code("crash").await;
    let kept = app.upload_ok(&code, bytes(1000, 1)).await;

    faults.crash_after_put.store(true, Ordering::SeqCst);
    let outcome = app
        .client
        .post(app.url(&format!("/submissions/{code}")))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(bytes(2000, 2)).file_name("b.pdf"),
        ))
        .send()
        .await;
    assert!(outcome.is_err() || outcome.unwrap().status().is_server_error());
    faults.crash_after_put.store(false, Ordering::SeqCst);

    let depository = &app.state.depository;
    assert_eq!(
        depository.store.list_keys().await.unwrap().len(),
        2,
        "the orphan exists"
    );
    assert_eq!(
        status(&app.base, &code).await["uploads_available"],
        4,
        "no attempt used"
    );
    // Within the reservation's lease the sweeper leaves the object alone …
    let early = depository.sweep_once().await.unwrap();
    assert_eq!(early.deleted, 0);
    // … and once it has lapsed, removes it.
    audit_after_leases(depository).await;
    assert_eq!(depository.store.list_keys().await.unwrap().len(), 1);
    assert_eq!(app.download(&kept).await.status(), 200);
}

async fn failed_delete_of_a_replaced_file_is_retried_until_it_succeeds(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let (app, faults) = spawn_faulty(&fixture).await;
    let depository = &app.state.depository;
    let code = app.upload_code("sticky").await;
    app.upload_ok(&code, bytes(1000, 1)).await;
    faults.fail_delete.store(true, Ordering::SeqCst);
    let current = app.upload_ok(&code, bytes(1000, 2)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        depository.store.list_keys().await.unwrap().len(),
        2,
        "old file still there"
    );
    assert_eq!(
        depository.db.pending_deletions().await.unwrap(),
        1,
        "and queued in the database"
    );

    let report = depository.sweep_once().await.unwrap();
    assert_eq!((report.deleted, report.failed), (0, 1));
    let report = depository.sweep_once().await.unwrap();
    assert_eq!((report.deleted, report.failed), (0, 0), "backing off");

    faults.fail_delete.store(false, Ordering::SeqCst);
    let later = chrono::Utc::now() + chrono::Duration::seconds(3);
    let report = depository.sweep_once_at(later).await.unwrap();
    assert_eq!(report.deleted, 1);
    app.audit().await;
    assert_eq!(app.download(&current).await.status(), 200);
}

async fn server_killed_during_uploads_loses_nothing_and_leaves_nothing(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let server = ServerProcess::start(&fixture).await;
    let client = reqwest::Client::new();
    let code = server.register("victim").await;

    // A kill while the body streams …
    abandon_upload(&server.address(), &code).await;
    server.kill().await;
    // … and kills at several points of complete uploads (spool, store, commit, answer).
    let mut accepted = 0;
    for delay_ms in [5u64, 20, 40, 80, 150] {
        let server = ServerProcess::start(&fixture).await;
        let upload = client
            .post(format!("{}/submissions/{code}", server.base))
            .multipart(reqwest::multipart::Form::new().part(
                "file",
                reqwest::multipart::Part::bytes(bytes(3 * MIB, delay_ms as u8)).file_name("a.bin"),
            ))
            .send();
        tokio::select! {
            response = upload => {
                if response.is_ok_and(|r| r.status() == 201) {
                    accepted += 1;
                }
            }
            () = tokio::time::sleep(Duration::from_millis(delay_ms)) => {}
        }
        server.kill().await;
    }

    let server = ServerProcess::start(&fixture).await;
    let status = status(&server.base, &code).await;
    let used = 5 - status["uploads_available"].as_i64().unwrap();
    assert!(
        used >= accepted,
        "every 201 counted ({used} used, {accepted} acknowledged)"
    );
    server.kill().await;
    let depository = fixture.depository().await;
    // Objects of interrupted uploads are gone after one sweep past the reservation lease.
    audit_after_leases(&depository).await;
}

async fn sigterm_lets_uploads_in_flight_finish(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let server = ServerProcess::start(&fixture).await;
    let client = reqwest::Client::new();
    let mut codes = Vec::new();
    for i in 0..4 {
        codes.push(server.register(&format!("s{i}")).await);
    }
    let slow_body = || slow_part(10, 64 * 1024, Duration::from_millis(100), "slow.bin");
    let uploads: Vec<_> = codes
        .iter()
        .map(|code| {
            client
                .post(format!("{}/submissions/{code}", server.base))
                .multipart(reqwest::multipart::Form::new().part("file", slow_body()))
                .send()
        })
        .collect();
    let base = server.base.clone();
    let signal = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.terminate();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let refused = reqwest::get(format!("{base}/healthz")).await;
        assert!(refused.is_err(), "no new connections after SIGTERM");
        server
    };
    let (responses, server) = tokio::join!(futures_util::future::join_all(uploads), signal);
    for response in responses {
        assert_eq!(
            response.unwrap().status(),
            201,
            "in-flight upload completed"
        );
    }
    assert_eq!(server.wait().await, Some(0), "clean exit");
    let depository = fixture.depository().await;
    audit(&depository, chrono::Utc::now()).await;
    assert_eq!(depository.db.live_storage_keys().await.unwrap().len(), 4);
}

async fn storage_outage_fails_fast_and_recovers(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let proxy = match &backend {
        Backend::Production(p) => {
            Some(FreezableProxy::start(p.s3_endpoint.trim_start_matches("http://")).await)
        }
        Backend::Embedded => None,
    };
    let app = fixture
        .spawn(|c| {
            c.storage_timeout_seconds = 2;
            if let Some(proxy) = &proxy {
                c.aws_s3_endpoint_url = Some(format!("http://127.0.0.1:{}", proxy.port));
            }
        })
        .await;
    let code = app.upload_code("outage").await;
    app.upload_ok(&code, bytes(1000, 1)).await;

    let files = fixture.data_dir.path().join("files");
    let moved = fixture.data_dir.path().join("files.away");
    match &proxy {
        Some(proxy) => proxy.freeze(),
        None => std::fs::rename(&files, &moved).unwrap(),
    }
    let started = Instant::now();
    let response = app.upload(&code, bytes(1000, 2)).await;
    assert_eq!(response.status(), 500);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(
        status(&app.base, &code).await["uploads_available"],
        4,
        "no attempt used"
    );

    match &proxy {
        Some(proxy) => proxy.thaw(),
        None => std::fs::rename(&moved, &files).unwrap(),
    }
    let mut ready = false;
    for _ in 0..100 {
        if app.get("/readyz").await.status() == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "recovers by itself");
    app.upload_ok(&code, bytes(1000, 3)).await;
    audit_after_leases(&app.state.depository).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_outage_fails_fast_and_recovers() {
    let Some(backend) = Backend::production() else {
        return;
    };
    let Backend::Production(_) = &backend else {
        unreachable!()
    };
    let fixture = Fixture::new(&backend).await;
    let database = url::Url::parse(fixture.database_url.as_ref().unwrap()).unwrap();
    let upstream = format!(
        "{}:{}",
        database.host_str().unwrap(),
        database.port().unwrap_or(5432)
    );
    let proxy = FreezableProxy::start(&upstream).await;
    let mut proxied = database.clone();
    proxied.set_port(Some(proxy.port)).unwrap();
    let app = fixture
        .spawn(|c| {
            c.db_timeout_seconds = 2;
            c.database_url = Some(proxied.as_str().parse().unwrap());
        })
        .await;
    let code = app.upload_code("dbdown").await;
    app.upload_ok(&code, bytes(1000, 1)).await;

    proxy.freeze();
    let started = Instant::now();
    let response = app.get(&format!("/submissions/{code}")).await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let upload = app.upload(&code, bytes(1000, 2)).await;
    assert!(upload.status().is_server_error(), "{}", upload.status());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(app.get("/readyz").await.status(), 503);
    assert_eq!(app.get("/healthz").await.status(), 200);

    proxy.thaw();
    let mut recovered = false;
    for _ in 0..100 {
        if app.get(&format!("/submissions/{code}")).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "recovers by itself");
    let status = status(&app.base, &code).await;
    assert_eq!(
        status["uploads_available"], 4,
        "the failed upload used no attempt"
    );
    app.upload_ok(&code, bytes(1000, 3)).await;
    audit_after_leases(&app.state.depository).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sweepers_share_the_work_without_errors() {
    let Some(backend) = Backend::production() else {
        return;
    };
    let fixture = Fixture::new(&backend).await;
    let first = fixture.spawn(|_| {}).await;
    let second = fixture.spawn(|_| {}).await;
    for i in 0..12 {
        let code = first.upload_code(&format!("old{i}")).await;
        first.upload_ok(&code, bytes(500, i as u8)).await;
    }
    let past_retention = chrono::Utc::now() + chrono::Duration::days(4);
    let (a, b) = tokio::join!(
        first.state.depository.sweep_once_at(past_retention),
        second.state.depository.sweep_once_at(past_retention)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        a.expired + b.expired,
        12,
        "each submission expired once: {a:?} {b:?}"
    );
    assert_eq!(
        a.deleted + b.deleted,
        12,
        "each object deleted once: {a:?} {b:?}"
    );
    assert_eq!(a.failed + b.failed, 0);
    audit(&first.state.depository, past_retention).await;
}
