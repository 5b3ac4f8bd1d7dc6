//! Group commit: writes of concurrent requests share a transaction, yet each one succeeds or
//! fails on its own, and an upload's record keeps its guarantees inside a shared batch.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, audit_after_leases, bytes, sha256_hex};
use exam_depository::db::{
    BatchOp, BatchOutcome, CommitOutcome, NewSubmission, StudentRow, UploadCommit,
};
use exam_depository::domain::audit::AuditEntry;
use exam_depository::domain::{codes, time};
use exam_depository::storage::ObjectHeaders;

backend_tests!(
    one_failing_write_in_a_batch_fails_alone,
    an_upload_record_redraws_a_taken_code_and_gives_back_a_lost_reservation,
    other_writers_get_the_database_while_batches_stream,
    a_batch_locked_out_fails_alone_and_the_writer_recovers,
    lookups_in_a_batch_record_only_downloadable_submissions,
    a_lookup_locked_out_answers_503_and_records_nothing,
);

fn event(n: u32) -> AuditEntry {
    AuditEntry::new(
        "test",
        "test.event",
        format!("event:{n}"),
        serde_json::json!({}),
    )
}

/// The subjects of the first 100 audit events.
async fn audit_subjects(db: &exam_depository::db::Db) -> Vec<String> {
    db.audit_events(0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.subject)
        .collect()
}

fn disclose(verification_code: &str) -> BatchOp {
    BatchOp::Disclose {
        verification_code: verification_code.to_owned(),
        event: AuditEntry::new("test", "test.disclosed", "", serde_json::json!({})),
    }
}

/// The submission id a disclosure found, or `None` for an unknown code.
fn disclosed_id(result: &Result<BatchOutcome, String>) -> Option<i64> {
    match result {
        Ok(BatchOutcome::Disclosed(found)) => found.as_ref().map(|s| s.id),
        other => panic!("not a disclosure: {other:?}"),
    }
}

/// The record of an upload of `bytes(500, 2)` stored under `key`.
fn upload_record(student: &StudentRow, key: &str, verification_code: &str) -> UploadCommit {
    UploadCommit {
        student_id: student.id,
        nickname: student.nickname.clone(),
        limit: 5,
        new: NewSubmission {
            verification_code: verification_code.to_owned(),
            storage_key: key.to_owned(),
            original_filename: "b.pdf".into(),
            content_type: "application/pdf".into(),
            size_bytes: 500,
            md5: "0".repeat(32),
            sha256: sha256_hex(&bytes(500, 2)),
            expires_at: time::from_now(std::time::Duration::from_secs(3600)),
        },
    }
}

fn reserve(key: &str) -> BatchOp {
    BatchOp::Reserve {
        key: key.to_owned(),
        lease_until: time::now(),
    }
}

async fn one_failing_write_in_a_batch_fails_alone(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let db = &app.state.depository.db;
    let key = codes::new_storage_key();
    let results = db
        .write_batch(&[
            reserve(&key),
            BatchOp::Audit(event(1)),
            reserve(&key), // the same key again: a primary-key violation
            BatchOp::Audit(event(2)),
        ])
        .await;
    let failed: Vec<bool> = results.iter().map(Result::is_err).collect();
    assert_eq!(failed, [false, false, true, false], "{results:?}");
    let subjects = audit_subjects(db).await;
    assert!(subjects.ends_with(&["event:1".to_owned(), "event:2".to_owned()]));
    let verify = fixture.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    // The reservation without an object is swept like any abandoned upload.
    audit_after_leases(&app.state.depository).await;
}

async fn an_upload_record_redraws_a_taken_code_and_gives_back_a_lost_reservation(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let depository = &app.state.depository;
    let code = app.upload_code("ada").await;
    let taken = app.upload_ok(&code, bytes(1000, 1)).await;
    let (student, _) = depository
        .db
        .student_by_upload_code(&code)
        .await
        .unwrap()
        .unwrap();

    // A stored object whose record is given the verification code of the first upload.
    let key = codes::new_storage_key();
    let spooled = depository.store.spool_dir().join("object");
    tokio::fs::write(&spooled, bytes(500, 2)).await.unwrap();
    let headers = ObjectHeaders {
        content_type: "application/pdf".into(),
        content_disposition: "attachment".into(),
    };
    let upload =
        |key: &str, verification_code: &str| upload_record(&student, key, verification_code);
    let results = depository
        .db
        .write_batch(&[
            reserve(&key),
            // Not reserved (as if the sweeper had claimed it): the attempt is given back.
            BatchOp::Upload(Box::new(upload(&codes::new_storage_key(), "zzzzzzzzz"))),
        ])
        .await;
    assert!(
        matches!(
            results[1],
            Ok(BatchOutcome::Upload(CommitOutcome::ReservationLost))
        ),
        "{results:?}"
    );
    depository
        .store
        .put_file(&key, &spooled, 500, &headers)
        .await
        .unwrap();
    let outcome = depository
        .group
        .commit_upload(upload(&key, &taken))
        .await
        .unwrap();
    let CommitOutcome::Accepted {
        submission,
        uploads_used,
        replaced_key,
    } = outcome
    else {
        panic!("not accepted: {outcome:?}");
    };
    assert_ne!(
        submission.verification_code, taken,
        "a fresh code was drawn"
    );
    assert!(codes::looks_like_verification_code(
        &submission.verification_code
    ));
    assert_eq!(uploads_used, 2, "the lost reservation used no attempt");
    assert!(replaced_key.is_some());
    let status: serde_json::Value = app
        .get(&format!("/submissions/{code}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["uploads_available"], 3);
    if let Some(old) = replaced_key {
        depository.store.delete(&old).await.unwrap();
        depository.db.deletion_done(&old).await.unwrap();
    }
    audit_after_leases(depository).await;
}

/// The group-commit task keeps the writer connection while batches queue up; other writes
/// (registering a student here) must still get it well within the database timeout.
async fn other_writers_get_the_database_while_batches_stream(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|c| c.db_timeout_seconds = 1).await;
    let group = app.state.depository.group.clone();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streams: Vec<_> = (0..64)
        .map(|n| {
            let (group, stop) = (group.clone(), stop.clone());
            tokio::spawn(async move {
                let mut written = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    group.submit(BatchOp::Audit(event(n))).await.unwrap();
                    written += 1;
                }
                written
            })
        })
        .collect();
    for i in 0..10 {
        app.create_student(&format!("writer{i}")).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for stream in streams {
        written += stream.await.unwrap();
    }
    assert!(written > 64, "the batches kept coming ({written} events)");
    let verify = fixture.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}

/// Another process holds the write lock (SQLite) or the audit head's row (PostgreSQL) past
/// the database timeout: the batch waiting for it fails, none of its writes land, and once
/// the lock is gone the next batches commit on a writer that was not left in a transaction.
/// Another connection holding the write lock (SQLite) or the audit head's row lock
/// (PostgreSQL), as another process or replica in a long transaction would; see
/// [`release_the_audit_log`].
async fn lock_the_audit_log(fixture: &Fixture, backend: &Backend) -> sqlx::AnyConnection {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    let mut locker = sqlx::AnyConnection::connect(&fixture.effective_database_url())
        .await
        .unwrap();
    let lock = match backend {
        Backend::Embedded => "BEGIN IMMEDIATE",
        Backend::Production(_) => {
            "BEGIN; SELECT seq FROM audit_head WHERE audit_head_id = 1 FOR UPDATE"
        }
    };
    sqlx::raw_sql(lock).execute(&mut locker).await.unwrap();
    locker
}

/// Rolls back and closes the connection from [`lock_the_audit_log`].
async fn release_the_audit_log(mut locker: sqlx::AnyConnection) {
    use sqlx::Connection as _;
    sqlx::raw_sql("ROLLBACK")
        .execute(&mut locker)
        .await
        .unwrap();
    locker.close().await.unwrap();
}

async fn a_batch_locked_out_fails_alone_and_the_writer_recovers(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|c| c.db_timeout_seconds = 1).await;
    let group = &app.state.depository.group;
    group.submit(BatchOp::Audit(event(1))).await.unwrap();

    let locker = lock_the_audit_log(&fixture, &backend).await;
    let started = std::time::Instant::now();
    let locked_key = codes::new_storage_key();
    let (audit, reservation) = tokio::join!(
        group.submit(BatchOp::Audit(event(2))),
        group.submit(reserve(&locked_key)),
    );
    assert!(audit.is_err(), "{audit:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    release_the_audit_log(locker).await;

    group.submit(BatchOp::Audit(event(3))).await.unwrap();
    let key = codes::new_storage_key();
    group.submit(reserve(&key)).await.unwrap();
    app.create_student("afterlock").await;
    let subjects = audit_subjects(&app.state.depository.db).await;
    assert!(subjects.contains(&"event:3".to_owned()), "{subjects:?}");
    assert!(!subjects.contains(&"event:2".to_owned()), "{subjects:?}");
    let verify = fixture.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    // On PostgreSQL the row lock stops only audit appends; a reservation there may commit.
    if matches!(backend, Backend::Embedded) {
        assert!(reservation.is_err(), "{reservation:?}");
    }
    audit_after_leases(&app.state.depository).await;
}

/// Lookups share a batch with other writes: each gets its own submission (or none), and a
/// disclosure is recorded once per lookup of a downloadable submission, before the batch's
/// other events. The second batch holds an upload record, so SQLite takes its general path
/// too (PostgreSQL always does).
async fn lookups_in_a_batch_record_only_downloadable_submissions(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let depository = &app.state.depository;
    let ada = app.upload_code("ada").await;
    let replaced = app.upload_ok(&ada, bytes(100, 1)).await;
    let current = app.upload_ok(&ada, bytes(100, 2)).await;
    let bob = app.upload_code("bob").await;
    let bobs = app.upload_ok(&bob, bytes(100, 3)).await;
    let id_of = |code: String| {
        let db = &depository.db;
        async move {
            db.submission_by_verification_code(&code)
                .await
                .unwrap()
                .unwrap()
                .id
        }
    };
    let (current_id, replaced_id, bobs_id) = (
        id_of(current.clone()).await,
        id_of(replaced.clone()).await,
        id_of(bobs.clone()).await,
    );
    let (student, _) = depository
        .db
        .student_by_upload_code(&bob)
        .await
        .unwrap()
        .unwrap();
    let lost_upload = upload_record(
        &student,
        &codes::new_storage_key(),
        &codes::new_verification_code(),
    );
    let key = codes::new_storage_key();
    let batches = [
        vec![
            BatchOp::Audit(event(1)),
            disclose(&current),
            disclose(&replaced),
            disclose("zzzzzzzz9"),
            reserve(&key),
            disclose(&current),
            disclose(&bobs),
        ],
        vec![
            disclose(&bobs),
            BatchOp::Upload(Box::new(lost_upload)),
            disclose(&replaced),
            BatchOp::Audit(event(2)),
        ],
    ];
    for (batch, expected) in batches.iter().zip([
        vec![
            "submission:{current}",
            "submission:{current}",
            "submission:{bobs}",
            "event:1",
        ],
        vec!["submission:{bobs}", "event:2"],
    ]) {
        let (last_id, _) = depository.db.audit_head().await.unwrap();
        let results = depository.db.write_batch(batch).await;
        let found: Vec<Option<i64>> = batch
            .iter()
            .zip(&results)
            .filter(|(op, _)| matches!(op, BatchOp::Disclose { .. }))
            .map(|(_, result)| disclosed_id(result))
            .collect();
        let subjects: Vec<String> = depository
            .db
            .audit_events(last_id, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.subject)
            .collect();
        let expected: Vec<String> = expected
            .iter()
            .map(|s| {
                s.replace("{current}", &current_id.to_string())
                    .replace("{bobs}", &bobs_id.to_string())
            })
            .collect();
        assert_eq!(subjects, expected, "{results:?}");
        if batch.len() == 7 {
            assert_eq!(
                found,
                [
                    Some(current_id),
                    Some(replaced_id),
                    None,
                    Some(current_id),
                    Some(bobs_id)
                ]
            );
        } else {
            assert_eq!(found, [Some(bobs_id), Some(replaced_id)]);
            assert!(
                matches!(
                    results[1],
                    Ok(BatchOutcome::Upload(CommitOutcome::ReservationLost))
                ),
                "{results:?}"
            );
        }
    }
    let verify = fixture.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
    audit_after_leases(depository).await;
}

/// A lookup whose disclosure cannot be recorded hands out no link: it answers 503 within the
/// database timeout and leaves no event; once the lock is gone the same lookup works.
async fn a_lookup_locked_out_answers_503_and_records_nothing(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|c| c.db_timeout_seconds = 1).await;
    let code = app.upload_code("ada").await;
    let verification = app.upload_ok(&code, bytes(100, 1)).await;

    let locker = lock_the_audit_log(&fixture, &backend).await;
    let started = std::time::Instant::now();
    let refused = app.download_url(&verification).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    release_the_audit_log(locker).await;

    let status = app.get_json(&format!("/submissions/{code}")).await;
    assert_eq!(status["download_urls_issued_at"], serde_json::json!([]));
    assert_eq!(app.download_url(&verification).await.status(), 200);
    let status = app.get_json(&format!("/submissions/{code}")).await;
    assert_eq!(
        status["download_urls_issued_at"].as_array().unwrap().len(),
        1
    );
    let verify = fixture.cli(&["audit", "verify"]);
    assert!(verify.status.success(), "{verify:?}");
}
