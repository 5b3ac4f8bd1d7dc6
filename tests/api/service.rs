//! Service routes, authentication, documents, fallbacks.

use crate::backend_tests;
use crate::helpers::{Backend, Fixture, TOKEN};
use serde_json::Value;

backend_tests!(
    ping_health_and_docs,
    examiner_routes_need_a_valid_key,
    demo_token_only_in_demo_mode
);

async fn ping_health_and_docs(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;

    let response = app.get("/").await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "pong");

    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);

    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/students",
        "/students/{nickname}",
        "/submissions/{upload_code}",
        "/verifications/{verification_code}/download_url",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} documented");
    }
    let docs = app.get("/docs/").await;
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(
        html.contains("swagger"),
        "Swagger UI served from the binary"
    );
    assert!(!html.contains("https://"), "no CDN assets");

    let missing = app.get("/no/such/route").await;
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["detail"], "Not Found");
    let wrong_method = app.client.put(app.url("/students")).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await.unwrap();
    assert_eq!(body["detail"], "Method Not Allowed");
}

async fn examiner_routes_need_a_valid_key(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture
        .spawn(|c| c.auth_token = Some("first, second".parse().unwrap()))
        .await;
    let attempts: [Option<&str>; 5] = [
        None,
        Some("Bearer wrong"),
        Some("Bearer"),
        Some("Basic Zmlyc3Q6"),
        Some("first"),
    ];
    let mut bodies = Vec::new();
    for header in attempts {
        let mut request = app.client.get(app.url("/students"));
        if let Some(value) = header {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{header:?}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        bodies.push(response.text().await.unwrap());
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "no hint which part was wrong"
    );
    for key in ["first", "second"] {
        let response = app
            .client
            .get(app.url("/students"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "each configured key works");
    }
    let response = app
        .client
        .delete(app.url("/students/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = app.client.post(app.url("/students")).send().await.unwrap();
    assert_eq!(response.status(), 401);
}

async fn demo_token_only_in_demo_mode(backend: Backend) {
    let fixture = Fixture::new(&backend).await;
    let app = fixture.spawn(|_| {}).await;
    let response = app.get("/auth/token").await;
    assert_eq!(response.status(), 404);
    app.stop().await;

    let app = fixture.spawn(|c| c.demo_mode = true).await;
    let response = app.get("/auth/token").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token"], TOKEN);
    let students = app
        .client
        .get(app.url("/students"))
        .bearer_auth(body["token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(students.status(), 200);
}

#[tokio::test]
async fn generated_key_is_kept_in_the_data_dir_with_owner_only_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(|c| c.auth_token = None).await;
    let path = fixture.data_dir.path().join("auth-token");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    assert!(key.len() >= 43, "256-bit key");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let ok = app
        .client
        .get(app.url("/students"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await;
    let again = fixture.spawn(|c| c.auth_token = None).await;
    let still = again
        .client
        .get(again.url("/students"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "the key survives a restart");
}

#[tokio::test]
async fn unknown_database_scheme_is_refused_at_startup() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let mut config = fixture.config();
    config.database_url = Some("mysql://localhost/db".parse().unwrap());
    let error = exam_depository::server::Application::build(config)
        .await
        .err()
        .expect("refused");
    let message = format!("{error:#}");
    assert!(
        message.contains("unsupported DATABASE_URL scheme"),
        "{message}"
    );
}

/// The router and the OpenAPI document agree: every documented operation is routed, and
/// on documented paths every undocumented method answers 405.
#[tokio::test]
async fn routes_match_the_openapi_document() {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(|c| c.demo_mode = true).await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = doc["paths"].as_object().unwrap();
    let methods = ["get", "post", "put", "patch", "delete"];
    let mut documented = 0;
    for (path, operations) in paths {
        let concrete = path
            .replace("{upload_code}", "ABCDEFGH")
            .replace("{verification_code}", "abcdefghi")
            .replace("{nickname}", "nobody")
            .replace("{key}", "0123456789abcdef0123456789abcdef");
        for method in methods {
            let response = app
                .client
                .request(method.to_uppercase().parse().unwrap(), app.url(&concrete))
                .bearer_auth(TOKEN)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if operations.get(method).is_some() {
                documented += 1;
                assert_ne!(status, 405, "{method} {path} is documented but not routed");
                assert!(
                    !(status == 404 && body.contains("\"Not Found\"")),
                    "{method} {path} fell through to the fallback"
                );
            } else {
                assert_eq!(status, 405, "{method} {path} is routed but not documented");
            }
        }
    }
    assert!(documented >= 12, "{documented} operations");
}
