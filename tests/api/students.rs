//! Examiner roster routes.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, TOKEN, bytes};
use serde_json::{Value, json};

backend_tests!(
    register_and_fetch_a_student,
    invalid_students_are_refused_with_every_bad_field,
    duplicates_are_refused,
    malformed_bodies_are_refused,
    roster_lists_in_registration_order_with_totals_and_paging,
    deleting_a_student_deletes_their_files,
);

fn student(nickname: &str, email: &str) -> Value {
    json!({"nickname": nickname, "first_name": "Grace", "last_name": "Hopper", "email": email})
}

async fn register_and_fetch_a_student(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let response = app
        .post_student(&student("grace", "grace@example.org"))
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["nickname"], "grace");
    assert_eq!(created["first_name"], "Grace");
    assert_eq!(created["last_name"], "Hopper");
    assert_eq!(created["email"], "grace@example.org");
    assert_eq!(created["has_submission"], false);
    assert_eq!(created["last_submission"], Value::Null);
    assert!(created["id"].is_i64());
    let code = created["upload_code"].as_str().unwrap();
    assert!(
        exam_depository::domain::codes::looks_like_upload_code(code),
        "{code}"
    );
    let created_at = created["created_at"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(created_at).is_ok());
    assert!(created_at.ends_with('Z'));

    let fetched: Value = app
        .get_as_examiner("/students/grace")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);

    let missing = app.get_as_examiner("/students/nobody").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["detail"], "Student not found");
}

async fn invalid_students_are_refused_with_every_bad_field(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let response = app
        .post_student(&json!({
            "nickname": "much-too-long-nick",
            "first_name": "",
            "last_name": "Robert'); DROP TABLE student;--",
            "email": "not-an-email",
        }))
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    let fields: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["loc"][1].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["nickname", "first_name", "last_name", "email"]);
    assert!(body["detail"][0]["msg"].is_string());

    for (nickname, first, email) in [
        ("abcdefghijklm", "A", "a@example.org"),
        ("a b", "A", "a@example.org"),
        ("ok", &"x".repeat(255) as &str, "a@example.org"),
        ("ok", "A", "a@b"),
    ] {
        let response = app
            .post_student(&json!({"nickname": nickname, "first_name": first, "last_name": "B", "email": email}))
            .await;
        assert_eq!(response.status(), 422, "{nickname} {email}");
    }
    let edge = app
        .post_student(&json!({"nickname": "abcdefghijk1", "first_name": "x".repeat(254), "last_name": "O'Neil-Smith Jr.", "email": "e@example.org"}))
        .await;
    assert_eq!(edge.status(), 201, "limits are inclusive");
    let totals: Value = app.get_as_examiner("/students").await.json().await.unwrap();
    assert_eq!(
        totals["totals"]["total_students"], 1,
        "refusals changed nothing"
    );
}

async fn duplicates_are_refused(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    assert_eq!(
        app.post_student(&student("alan", "alan@example.org"))
            .await
            .status(),
        201
    );
    for (body, expected) in [
        (student("alan", "other@example.org"), "nickname"),
        (student("ALAN", "other@example.org"), "nickname"),
        (student("turing", "Alan@Example.org"), "email"),
    ] {
        let response = app.post_student(&body).await;
        assert_eq!(response.status(), 422);
        let detail: Value = response.json().await.unwrap();
        assert!(
            detail["detail"].as_str().unwrap().contains(expected),
            "{detail}"
        );
    }
    let list: Value = app.get_as_examiner("/students").await.json().await.unwrap();
    assert_eq!(list["totals"]["total_students"], 1);
}

async fn malformed_bodies_are_refused(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let send = |body: String, content_type: &'static str| {
        app.client
            .post(app.url("/students"))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let response = send("{not json".into(), "application/json").await.unwrap();
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    assert!(body["detail"].is_array());
    let response = send(r#"{"nickname": "x"}"#.into(), "application/json")
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "missing fields");
    let response = send(r#"{"nickname": "x"}"#.into(), "text/plain")
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "wrong content type");
    let huge = format!(r#"{{"nickname": "{}"}}"#, "x".repeat(1024 * 1024));
    let response = send(huge, "application/json").await.unwrap();
    assert_eq!(response.status(), 413, "JSON bodies are capped");
    // Regression: the unread body made the next request on a reused connection fail.
    assert_eq!(response.headers()["connection"], "close");
    let response = app.get_as_examiner("/students?limit=abc").await;
    assert_eq!(response.status(), 422);
}

async fn roster_lists_in_registration_order_with_totals_and_paging(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let mut codes = Vec::new();
    for name in ["zed", "amy", "kim", "bob"] {
        codes.push(app.upload_code(name).await);
    }
    let verification = app.upload_ok(&codes[1], bytes(10, 1)).await;
    app.upload_ok(&codes[1], bytes(11, 2)).await;
    let latest = app.upload_ok(&codes[1], bytes(12, 3)).await;
    app.upload_ok(&codes[3], bytes(10, 4)).await;
    assert_ne!(verification, latest);

    let list: Value = app.get_as_examiner("/students").await.json().await.unwrap();
    assert_eq!(
        list["totals"],
        json!({"total_students": 4, "total_submissions": 2})
    );
    let names: Vec<&str> = list["students"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["nickname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["zed", "amy", "kim", "bob"]);
    let amy = &list["students"][1];
    assert_eq!(amy["has_submission"], true);
    assert_eq!(amy["last_submission"]["verification_code"], latest.as_str());
    assert!(amy["last_submission"]["created_at"].is_string());
    assert!(
        amy.get("upload_code").is_none(),
        "summaries do not leak codes"
    );
    assert_eq!(list["students"][0]["last_submission"], Value::Null);

    let page: Value = app
        .get_as_examiner("/students?limit=2&offset=1")
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = page["students"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["nickname"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["amy", "kim"]);
    assert_eq!(
        page["totals"]["total_students"], 4,
        "totals cover the whole roster"
    );

    let amy: Value = app
        .get_as_examiner("/students/amy")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(amy["has_submission"], true);
    assert_eq!(amy["uploads_used"], 3);
    let submission = &amy["last_submission"];
    assert_eq!(submission["verification_code"], latest.as_str());
    assert_eq!(submission["size_bytes"], 12);
    for field in [
        "file_name",
        "md5",
        "sha256",
        "created_at",
        "original_filename",
        "content_type",
        "expires_at",
    ] {
        assert!(submission[field].is_string(), "{field}");
    }
    app.audit().await;
}

async fn deleting_a_student_deletes_their_files(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let code = app.upload_code("gone").await;
    let keep = app.upload_code("kept").await;
    let verification = app.upload_ok(&code, bytes(100, 7)).await;
    app.upload_ok(&keep, bytes(100, 8)).await;
    assert_eq!(
        app.state.depository.store.list_keys().await.unwrap().len(),
        2
    );

    let response = app
        .client
        .delete(app.url("/students/gone"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        app.state.depository.store.list_keys().await.unwrap().len(),
        1
    );
    assert_eq!(app.get_as_examiner("/students/gone").await.status(), 404);
    assert_eq!(app.get(&format!("/submissions/{code}")).await.status(), 404);
    assert_eq!(app.download_url(&verification).await.status(), 404);
    let again = app
        .client
        .delete(app.url("/students/gone"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    app.audit().await;
}
