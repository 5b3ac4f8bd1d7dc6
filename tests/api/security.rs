//! Abuse protection and hardening (RELIABILITY groups A, B, C, G).

use crate::helpers::{Backend, Fixture, TOKEN, TestApp, bytes, slow_part};
use serde_json::Value;
use std::net::IpAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn embedded(tweak: impl FnOnce(&mut exam_depository::config::Config)) -> (Fixture, TestApp) {
    let fixture = Fixture::new(&Backend::Embedded).await;
    let app = fixture.spawn(tweak).await;
    (fixture, app)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_codes_is_throttled_per_client() {
    let (_fixture, app) = embedded(|_| {}).await;
    let valid = app.upload_code("real").await;
    let guesser = client_from("127.0.0.2");
    for i in 0..31 {
        let status = guesser
            .get(app.url(&format!("/submissions/ZZZZZZ{i:02}")))
            // A client cannot dodge the limiter with its own X-Forwarded-For.
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "miss {i}");
    }
    for path in [
        "/submissions/ZZZZZZZZ".to_owned(),
        format!("/submissions/{valid}"),
        "/verifications/zzzzzzzzz/download_url".to_owned(),
    ] {
        let response = guesser.get(app.url(&path)).send().await.unwrap();
        assert_eq!(response.status(), 429, "{path}");
        let wait: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&wait));
        let body: Value = response.json().await.unwrap();
        assert!(body["detail"].is_string());
    }
    let upload = guesser
        .post(app.url(&format!("/submissions/{valid}")))
        .multipart(
            reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(vec![1])),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 429);
    // Other clients and examiner routes are not affected.
    let neighbour = client_from("127.0.0.3");
    let ok = neighbour
        .get(app.url(&format!("/submissions/{valid}")))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let examiner = guesser
        .get(app.url("/students"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(examiner.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_header_names_the_client_and_others_are_ignored() {
    let (_fixture, app) = embedded(|c| c.trusted_proxy_header = Some("Fly-Client-IP".into())).await;
    for i in 0..31 {
        let status = app
            .client
            .get(app.url("/submissions/ZZZZZZZZ"))
            .header("fly-client-ip", "198.51.100.7")
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 404, "{i}");
    }
    let blocked = app
        .client
        .get(app.url("/submissions/ZZZZZZZZ"))
        .header("fly-client-ip", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(blocked.status(), 429);
    let other = app
        .client
        .get(app.url("/submissions/ZZZZZZZZ"))
        .header("fly-client-ip", "198.51.100.8")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 404, "another client behind the same proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exam_hall_behind_one_address_is_never_throttled() {
    let (_fixture, app) = embedded(|_| {}).await;
    let mut codes = Vec::new();
    for i in 0..300 {
        codes.push(app.upload_code(&format!("hall{i}")).await);
    }
    let hall = client_from("127.0.0.9");
    let started = Instant::now();
    let uploads = codes.iter().enumerate().map(|(i, code)| {
        let hall = hall.clone();
        let url = app.url(&format!("/submissions/{code}"));
        let typo = app.url("/submissions/TYPO0000");
        async move {
            // 2% mistype their code once first.
            if i % 50 == 0 {
                assert_eq!(hall.get(&typo).send().await.unwrap().status(), 404);
            }
            let part = reqwest::multipart::Part::bytes(bytes(2000, i as u8)).file_name("a.pdf");
            hall.post(&url)
                .multipart(reqwest::multipart::Form::new().part("file", part))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // Up to 32 at the same instant (the upload cap is 64); 300 within the minute.
    let statuses: Vec<_> = futures_util::StreamExt::collect(
        futures_util::StreamExt::buffer_unordered(futures_util::stream::iter(uploads), 32),
    )
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "all in the same minute"
    );
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
    app.audit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_examiner_keys_are_throttled_but_valid_keys_pass() {
    let (_fixture, app) = embedded(|_| {}).await;
    let attacker = client_from("127.0.0.4");
    for i in 0..11 {
        let status = attacker
            .get(app.url("/students"))
            .bearer_auth(format!("guess{i}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 401, "{i}");
    }
    let throttled = attacker
        .get(app.url("/students"))
        .bearer_auth("guess")
        .send()
        .await
        .unwrap();
    assert_eq!(throttled.status(), 429);
    assert!(throttled.headers().contains_key("retry-after"));
    let valid = attacker
        .get(app.url("/students"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(valid.status(), 200, "the right key still works");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_beyond_the_cap_get_503_with_retry_after() {
    let (_fixture, app) = embedded(|c| c.max_uploads_in_flight = 1).await;
    let first = app.upload_code("first").await;
    let second = app.upload_code("second").await;
    let part = slow_part(5, 10_000, Duration::from_millis(200), "slow.bin");
    let slow_upload = app
        .client
        .post(app.url(&format!("/submissions/{first}")))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send();
    let second_upload = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.upload(&second, bytes(100, 1)).await
    };
    let (slow_done, refused) = tokio::join!(slow_upload, second_upload);
    assert_eq!(slow_done.unwrap().status(), 201);
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "5");
    app.upload_ok(&second, bytes(100, 2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_does_not_delay_normal_requests() {
    let (_fixture, app) = embedded(|c| c.header_read_timeout_seconds = 2).await;
    let address = app.base.trim_start_matches("http://").to_owned();
    let mut attackers = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        attackers.push(stream);
    }
    let trickle = async {
        for round in 0..6 {
            for stream in &mut attackers {
                let _ = stream
                    .write_all(format!("X-{round}: y\r\n").as_bytes())
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };
    let probe = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let started = Instant::now();
        let response = app.get("/").await;
        (response.status(), started.elapsed())
    };
    let ((), (status, elapsed)) = tokio::join!(trickle, probe);
    assert_eq!(status, 200);
    assert!(
        elapsed < Duration::from_secs(1),
        "normal request took {elapsed:?}"
    );
    // The trickling connections were cut off by the header-read timeout.
    let mut closed = 0;
    for stream in &mut attackers {
        let mut buffer = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) if String::from_utf8_lossy(&buffer[..n]).contains("408") => closed += 1,
            _ => {}
        }
    }
    assert_eq!(
        closed,
        attackers.len(),
        "header-read timeout closes slow clients"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_or_endless_headers_are_refused() {
    let (_fixture, app) = embedded(|_| {}).await;
    let huge = app
        .client
        .get(app.url("/"))
        .header("x-big", "a".repeat(64 * 1024))
        .send()
        .await;
    assert!(huge.is_err() || huge.unwrap().status().is_client_error());
    let mut request = app.client.get(app.url("/"));
    for i in 0..100 {
        request = request.header(format!("x-h{i}"), "v");
    }
    let many = request.send().await;
    assert!(many.is_err() || many.unwrap().status().is_client_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_hit_the_idle_timeout_and_the_deadline() {
    let (_fixture, app) = embedded(|c| {
        c.body_idle_timeout_seconds = 1;
        c.request_deadline_seconds = 2;
    })
    .await;
    let code = app.upload_code("slow").await;
    let send = |gap_ms: u64, chunks: u8| {
        let part = slow_part(chunks, 100, Duration::from_millis(gap_ms), "a.bin");
        app.client
            .post(app.url(&format!("/submissions/{code}")))
            .multipart(reqwest::multipart::Form::new().part("file", part))
            .send()
    };
    // Silent for 1.5 s: over the idle timeout.
    let idle = send(1500, 2).await;
    assert!(idle.is_err() || idle.unwrap().status().is_client_error());
    // A byte every 0.5 s for 4 s: never idle, but over the deadline.
    let dripping = send(500, 8).await;
    if let Ok(response) = dripping {
        assert_eq!(response.status(), 408);
    }
    let status = app.get_json(&format!("/submissions/{code}")).await;
    assert_eq!(status["uploads_available"], 5, "no attempt used");
    app.audit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn html_gets_a_strict_policy_and_cors_is_off_by_default() {
    let (_fixture, app) = embedded(|_| {}).await;
    let docs = app.get("/docs/").await;
    let headers = docs.headers();
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("script-src 'self' 'unsafe-inline'")
    );
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    for path in ["/", "/students", "/nowhere", "/openapi.json"] {
        assert_eq!(
            app.get(path).await.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/students"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(
        !preflight
            .headers()
            .contains_key("access-control-allow-origin")
    );
    app.stop().await;

    let (_fixture, app) = embedded(|c| c.cors_origins = Some("https://exam.example".into())).await;
    let allowed = app
        .client
        .get(app.url("/"))
        .header("origin", "https://exam.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://exam.example"
    );
    let other = app
        .client
        .get(app.url("/"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(!other.headers().contains_key("access-control-allow-origin"));
}

async fn secrets_never_reach_the_logs(backend: Backend) {
    use crate::process::ServerProcess;
    let fixture = Fixture::new(&backend).await;
    let log_path = fixture.data_dir.path().join("trace.log");
    let mut env = vec![("RUST_LOG", "trace".to_owned())];
    let mut database_password = None;
    if let Some(url) = &fixture.database_url {
        // Trust authentication ignores the password, so a made-up one can be checked for.
        let mut with_password = url::Url::parse(url).unwrap();
        with_password
            .set_password(Some("Sup3rSecretDbPassw0rd"))
            .unwrap();
        env.push(("DATABASE_URL", with_password.to_string()));
        database_password = Some("Sup3rSecretDbPassw0rd".to_owned());
    }
    let server = ServerProcess::start_with(&fixture, &env, Some(&log_path)).await;
    let client = reqwest::Client::new();
    let upload_code = server.register("leak").await;
    let part = reqwest::multipart::Part::bytes(bytes(5000, 1)).file_name("secret-plan.pdf");
    let upload: Value = client
        .post(format!("{}/submissions/{upload_code}", server.base))
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let verification = upload["last_submission"]["verification_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let link: Value = client
        .get(format!(
            "{}/verifications/{verification}/download_url",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = link["download_url"].as_str().unwrap().to_owned();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    let wrong = client
        .get(format!("{}/students", server.base))
        .bearer_auth("WrongKeyValue123")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    server.terminate();
    assert_eq!(server.wait().await, Some(0));

    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("/submissions/{upload_code}"),
        "routes are logged by template"
    );
    assert!(log.lines().count() > 20, "trace logging was on");
    let signature = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k.eq_ignore_ascii_case("signature") || k == "X-Amz-Signature")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let mut secrets = vec![
        ("api key", TOKEN.to_owned()),
        ("wrong api key", "WrongKeyValue123".to_owned()),
        ("upload code", upload_code),
        ("verification code", verification),
        ("download signature", signature),
    ];
    if let Backend::Production(p) = &backend {
        secrets.push(("S3 secret", p.s3_secret.clone()));
    }
    if let Some(password) = database_password {
        secrets.push(("database password", password));
    }
    for (what, secret) in secrets {
        assert!(
            !log.contains(&secret),
            "the {what} appears in the trace log"
        );
    }
}

crate::backend_tests!(secrets_never_reach_the_logs);

/// Regression: a refusal sent before the body was read used to close the connection with
/// the body unread, and the kernel's reset could swallow the 503 (the client saw a broken
/// connection). Now the body is read and discarded and the answer arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_refusals_of_large_bodies_arrive_as_answers() {
    let (_fixture, app) = embedded(|c| c.max_uploads_in_flight = 1).await;
    let busy = app.upload_code("busy").await;
    let waiting = app.upload_code("waiting").await;
    let holder = app
        .client
        .post(app.url(&format!("/submissions/{busy}")))
        .multipart(reqwest::multipart::Form::new().part(
            "file",
            slow_part(10, 1000, Duration::from_millis(200), "slow.bin"),
        ))
        .send();
    let refusals = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut answers = Vec::new();
        for i in 0..5 {
            let response = app.upload(&waiting, bytes(1024 * 1024, i)).await;
            answers.push((
                response.status().as_u16(),
                response.headers().get("connection").cloned(),
            ));
        }
        answers
    };
    let (held, answers) = tokio::join!(holder, refusals);
    assert_eq!(held.unwrap().status(), 201);
    for (status, connection) in &answers[..5] {
        assert_eq!(*status, 503);
        assert!(
            connection.is_none(),
            "the body was drained, the connection stays usable"
        );
    }
    // Unknown codes are refused before the body too, and answered the same way.
    for code in ["ZZZZZZZZ", "YYYYYYYY"] {
        let response = app.upload(code, bytes(1024 * 1024, 9)).await;
        assert_eq!(response.status(), 404);
        assert!(response.headers().get("connection").is_none());
    }
}
