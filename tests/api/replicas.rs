//! Scale-out: several replicas against one PostgreSQL database and one bucket.

use crate::helpers::{Backend, Fixture, bytes};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_starting_together_migrate_once() {
    let Some(backend) = Backend::production() else {
        return;
    };
    let fixture = Fixture::new(&backend).await;
    let starts = (0..3).map(|_| fixture.spawn(|_| {}));
    let apps = futures_util::future::join_all(starts).await;
    for app in &apps {
        assert_eq!(app.get("/readyz").await.status(), 200);
    }
    apps[0].create_student("one").await;
    let seen: Value = apps[2]
        .get_as_examiner("/students/one")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(seen["nickname"], "one", "replicas share one database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_accept_more_than_the_limit_between_them() {
    let Some(backend) = Backend::production() else {
        return;
    };
    let fixture = Fixture::new(&backend).await;
    let first = fixture.spawn(|_| {}).await;
    let second = fixture.spawn(|_| {}).await;
    for (round, used_before) in [(0, 0u8), (1, 4), (2, 0)] {
        let nickname = format!("split{round}");
        let code = first.upload_code(&nickname).await;
        for i in 0..used_before {
            first.upload_ok(&code, bytes(100, i)).await;
        }
        let uploads = (0..20).map(|i| {
            let app = if i % 2 == 0 { &first } else { &second };
            app.upload(&code, bytes(40_000, i as u8))
        });
        let statuses: Vec<u16> = futures_util::future::join_all(uploads)
            .await
            .iter()
            .map(|r| r.status().as_u16())
            .collect();
        let accepted = statuses.iter().filter(|s| **s == 201).count();
        assert_eq!(
            accepted,
            5 - usize::from(used_before),
            "round {round}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| matches!(s, 201 | 422)),
            "{statuses:?}"
        );
    }
    first.audit().await;
    second.audit().await;
}
