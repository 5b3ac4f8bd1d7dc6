//! The test harness: a real server on a random port against one backend, typed request
//! helpers, and an auditor of the SPEC's invariants.
//!
//! Backends: the embedded default (SQLite + local files) always; PostgreSQL + S3 when
//! `TEST_DATABASE_URL` and `TEST_S3_ENDPOINT` (with `TEST_S3_ACCESS_KEY_ID`,
//! `TEST_S3_SECRET_ACCESS_KEY`, optional `TEST_S3_REGION`) are set. With
//! `REQUIRE_ALL_BACKENDS=1` a missing backend fails instead of skipping.

use exam_depository::config::{Config, LogFormat, Secret};
use exam_depository::depository::Depository;
use exam_depository::http::AppState;
use exam_depository::server::Application;
use exam_depository::storage::BlobStore;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub const TOKEN: &str = "test-examiner-key";
pub const MIB: usize = 1024 * 1024;

/// Where the service keeps its data in a test.
#[derive(Debug, Clone)]
pub enum Backend {
    /// SQLite file + local directory.
    Embedded,
    /// A fresh PostgreSQL database and a fresh S3 bucket.
    Production(ProductionEnv),
}

/// How to reach the production services.
#[derive(Debug, Clone)]
pub struct ProductionEnv {
    pub admin_database_url: String,
    pub s3_endpoint: String,
    pub s3_region: String,
    pub s3_key_id: String,
    pub s3_secret: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Backend {
    /// The production backend, when configured. Panics when it is required but missing.
    pub fn production() -> Option<Self> {
        let found = (|| {
            Some(ProductionEnv {
                admin_database_url: env("TEST_DATABASE_URL")?,
                s3_endpoint: env("TEST_S3_ENDPOINT")?,
                s3_region: env("TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
                s3_key_id: env("TEST_S3_ACCESS_KEY_ID")?,
                s3_secret: env("TEST_S3_SECRET_ACCESS_KEY")?,
            })
        })();
        if found.is_none() && env("REQUIRE_ALL_BACKENDS").is_some_and(|v| v != "0") {
            panic!(
                "REQUIRE_ALL_BACKENDS is set but TEST_DATABASE_URL / TEST_S3_ENDPOINT / \
                 TEST_S3_ACCESS_KEY_ID / TEST_S3_SECRET_ACCESS_KEY are not"
            );
        }
        found.map(Self::Production)
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Self::Production(_))
    }
}

/// Runs a scenario once per backend: `backend_tests!(name, …)` makes `name::embedded` and
/// `name::production` tests.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                super::$name($crate::helpers::Backend::Embedded).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn production() {
                if let Some(backend) = $crate::helpers::Backend::production() {
                    super::$name(backend).await;
                }
            }
        }
    )*};
}

/// Resources a test owns; dropped (database and bucket removed) when the test ends.
pub struct Fixture {
    pub backend: Backend,
    pub data_dir: tempfile::TempDir,
    pub database_url: Option<String>,
    pub bucket: Option<String>,
}

impl Fixture {
    pub async fn new(backend: &Backend) -> Self {
        let data_dir = tempfile::tempdir().unwrap();
        let (database_url, bucket) = match backend {
            Backend::Embedded => (None, None),
            Backend::Production(p) => {
                let name = format!("exam_test_{}", hex::encode(rand::random::<[u8; 6]>()));
                admin_sql(&p.admin_database_url, &format!("CREATE DATABASE {name}")).await;
                let bucket = format!("exam-test-{}", hex::encode(rand::random::<[u8; 6]>()));
                s3_bucket_request(p, &bucket, reqwest::Method::PUT).await;
                (
                    Some(database_url_for(&p.admin_database_url, &name)),
                    Some(bucket),
                )
            }
        };
        Self {
            backend: backend.clone(),
            data_dir,
            database_url,
            bucket,
        }
    }

    /// The database URL the server uses: PostgreSQL's, or the SQLite file in the data dir.
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.path().join("exam-depository.db").display()
            )
        })
    }

    /// A configuration for this fixture, as a deployment would set it.
    pub fn config(&self) -> Config {
        let mut config = Config {
            host: "127.0.0.1".into(),
            port: 0,
            auth_token: Some(Secret::from_str_ok(TOKEN)),
            database_url: self.database_url.as_deref().map(Secret::from_str_ok),
            data_dir: self.data_dir.path().to_owned(),
            aws_s3_bucket_name: None,
            aws_s3_endpoint_url: None,
            aws_access_key_id: None,
            aws_secret_access_key: None,
            aws_region: None,
            demo_mode: false,
            max_submission_bytes: 3 * MIB as u64,
            submissions_per_student: 5,
            download_url_expires_seconds: 600,
            retention_seconds: 259_200,
            sweep_interval_seconds: 3600,
            public_url: None,
            download_signing_key: None,
            db_pool_size: 8,
            db_timeout_seconds: 5,
            storage_timeout_seconds: 10,
            shutdown_grace_seconds: 10,
            header_read_timeout_seconds: 10,
            request_deadline_seconds: 120,
            body_idle_timeout_seconds: 20,
            max_connections: 1024,
            max_uploads_in_flight: 64,
            miss_limit_per_minute: 30,
            global_miss_budget_per_hour: 1000,
            auth_failure_limit_per_minute: 10,
            trusted_proxy_header: None,
            cors_origins: None,
            submissions_open_at: None,
            submissions_close_at: None,
            receipt_signing_key: None,
            log_format: LogFormat::Text,
        };
        if let Backend::Production(p) = &self.backend {
            config.aws_s3_bucket_name = self.bucket.clone();
            config.aws_s3_endpoint_url = Some(p.s3_endpoint.clone());
            config.aws_region = Some(p.s3_region.clone());
            config.aws_access_key_id = Some(Secret::from_str_ok(&p.s3_key_id));
            config.aws_secret_access_key = Some(Secret::from_str_ok(&p.s3_secret));
        }
        config
    }

    /// The environment a deployment of this fixture would set: data directory, database
    /// and (for the production backend) the bucket and its credentials.
    pub fn service_env(&self) -> Vec<(&'static str, String)> {
        let config = self.config();
        let mut env = vec![("DATA_DIR", config.data_dir.display().to_string())];
        if let Some(url) = &self.database_url {
            env.push(("DATABASE_URL", url.clone()));
        }
        if let Some(bucket) = &config.aws_s3_bucket_name {
            env.extend([
                ("AWS_S3_BUCKET_NAME", bucket.clone()),
                (
                    "AWS_S3_ENDPOINT_URL",
                    config.aws_s3_endpoint_url.clone().unwrap(),
                ),
                ("AWS_REGION", config.aws_region.clone().unwrap()),
                (
                    "AWS_ACCESS_KEY_ID",
                    config
                        .aws_access_key_id
                        .as_ref()
                        .unwrap()
                        .expose()
                        .to_owned(),
                ),
                (
                    "AWS_SECRET_ACCESS_KEY",
                    config
                        .aws_secret_access_key
                        .as_ref()
                        .unwrap()
                        .expose()
                        .to_owned(),
                ),
            ]);
        }
        env
    }

    /// Runs the CLI with this fixture's environment (and nothing else).
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        crate::process::output_of(
            crate::process::binary()
                .args(args)
                .env_clear()
                .envs(self.service_env()),
        )
    }

    /// The core on this fixture's database and store, without a server (for audits after
    /// a server process is gone).
    pub async fn depository(&self) -> Depository {
        Application::build(self.config())
            .await
            .unwrap()
            .state()
            .depository
            .clone()
    }

    /// Starts a server with this fixture's configuration, adjusted by `tweak`.
    pub async fn spawn(&self, tweak: impl FnOnce(&mut Config)) -> TestApp {
        let mut config = self.config();
        tweak(&mut config);
        TestApp::spawn(config).await
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let Backend::Production(p) = self.backend.clone() else {
            return;
        };
        let (database_url, bucket) = (self.database_url.take(), self.bucket.take());
        // Drop runs outside async context: clean up on a runtime of our own.
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    if let Some(url) = database_url {
                        let name = url.rsplit('/').next().unwrap().to_owned();
                        admin_sql(
                            &p.admin_database_url,
                            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                        )
                        .await;
                    }
                    if let Some(bucket) = bucket {
                        empty_and_delete_bucket(&p, &bucket).await;
                    }
                });
        })
        .join()
        .ok();
    }
}

trait SecretExt {
    fn from_str_ok(s: &str) -> Self;
}
impl SecretExt for Secret {
    fn from_str_ok(s: &str) -> Self {
        s.parse().unwrap()
    }
}

fn database_url_for(admin_url: &str, name: &str) -> String {
    let mut url = url::Url::parse(admin_url).unwrap();
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn admin_sql(admin_url: &str, sql: &str) {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await.unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.ok();
}

fn s3_bucket(p: &ProductionEnv, name: &str) -> (rusty_s3::Bucket, rusty_s3::Credentials) {
    let bucket = rusty_s3::Bucket::new(
        p.s3_endpoint.parse().unwrap(),
        rusty_s3::UrlStyle::Path,
        name.to_owned(),
        p.s3_region.clone(),
    )
    .unwrap();
    (
        bucket,
        rusty_s3::Credentials::new(&p.s3_key_id, &p.s3_secret),
    )
}

/// Creates (PUT) or deletes (DELETE) a bucket.
pub async fn s3_bucket_request(p: &ProductionEnv, name: &str, method: reqwest::Method) {
    use rusty_s3::S3Action;
    let (bucket, credentials) = s3_bucket(p, name);
    let ttl = Duration::from_secs(60);
    let url = if method == reqwest::Method::PUT {
        bucket.create_bucket(&credentials).sign(ttl)
    } else {
        bucket.delete_bucket(&credentials).sign(ttl)
    };
    let response = reqwest::Client::new()
        .request(method, url)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "bucket request: {} {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
}

async fn empty_and_delete_bucket(p: &ProductionEnv, name: &str) {
    use rusty_s3::S3Action;
    let (bucket, credentials) = s3_bucket(p, name);
    let client = reqwest::Client::new();
    loop {
        let url = bucket
            .list_objects_v2(Some(&credentials))
            .sign(Duration::from_secs(60));
        let Ok(response) = client.get(url).send().await else {
            return;
        };
        let Ok(text) = response.text().await else {
            return;
        };
        let Ok(list) = rusty_s3::actions::ListObjectsV2::parse_response(&text) else {
            return;
        };
        if list.contents.is_empty() {
            break;
        }
        for object in list.contents {
            let url = bucket
                .delete_object(Some(&credentials), &object.key)
                .sign(Duration::from_secs(60));
            let _ = client.delete(url).send().await;
        }
    }
    let url = bucket
        .delete_bucket(&credentials)
        .sign(Duration::from_secs(60));
    let _ = client.delete(url).send().await;
}

/// A running server.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    pub async fn spawn(config: Config) -> Self {
        Self::spawn_with(config, |store| store).await
    }

    /// Starts a server whose store is wrapped (for fault injection).
    pub async fn spawn_with(
        config: Config,
        wrap: impl FnOnce(Arc<dyn BlobStore>) -> Arc<dyn BlobStore>,
    ) -> Self {
        let app = Application::build_with(config, wrap)
            .await
            .expect("server starts");
        let base = format!("http://127.0.0.1:{}", app.port());
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(app.run_until(async {
            let _ = stopped.await;
        }));
        Self {
            base,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// The JSON body of an unauthenticated GET.
    pub async fn get_json(&self, path: &str) -> Value {
        self.get(path).await.json().await.unwrap()
    }

    pub async fn get_as_examiner(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_student(&self, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/students"))
            .bearer_auth(TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers a student and returns the body (with `upload_code`).
    pub async fn create_student(&self, nickname: &str) -> Value {
        let response = self
            .post_student(&json!({
                "nickname": nickname,
                "first_name": "Ada",
                "last_name": "Lovelace",
                "email": format!("{nickname}@example.org"),
            }))
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// Imports `count` students named `s0`, `s1`, … as one CSV roster and returns their
    /// upload codes, in order.
    pub async fn import_students(&self, count: usize) -> Vec<String> {
        let mut csv = String::from("nickname,first_name,last_name,email\n");
        for i in 0..count {
            csv.push_str(&format!("s{i},First,Last,s{i}@example.org\n"));
        }
        let response = self
            .client
            .post(self.url("/students/import"))
            .bearer_auth(TOKEN)
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        let codes: Vec<String> = created["created"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["upload_code"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(codes.len(), count);
        codes
    }

    /// Registers a student and returns their upload code.
    pub async fn upload_code(&self, nickname: &str) -> String {
        self.create_student(nickname).await["upload_code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn upload(&self, code: &str, bytes: Vec<u8>) -> reqwest::Response {
        self.upload_named(code, bytes, "answer.pdf", "application/pdf")
            .await
    }

    pub async fn upload_named(
        &self,
        code: &str,
        bytes: Vec<u8>,
        name: &str,
        mime: &str,
    ) -> reqwest::Response {
        let part = Part::bytes(bytes)
            .file_name(name.to_owned())
            .mime_str(mime)
            .unwrap();
        self.client
            .post(self.url(&format!("/submissions/{code}")))
            .multipart(Form::new().part("file", part))
            .send()
            .await
            .unwrap()
    }

    /// Uploads and returns the verification code, asserting a 201.
    pub async fn upload_ok(&self, code: &str, bytes: Vec<u8>) -> String {
        let response = self.upload(code, bytes).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["last_submission"]["verification_code"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn download_url(&self, verification_code: &str) -> reqwest::Response {
        self.get(&format!("/verifications/{verification_code}/download_url"))
            .await
    }

    /// Fetches the file behind a verification code.
    pub async fn download(&self, verification_code: &str) -> reqwest::Response {
        let response = self.download_url(verification_code).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        let url = body["download_url"].as_str().unwrap();
        self.client.get(url).send().await.unwrap()
    }

    /// Checks SPEC section 3 at rest (see [`audit`]).
    pub async fn audit(&self) {
        audit(&self.state.depository, chrono::Utc::now()).await;
    }
}

/// Checks SPEC section 3 at rest, after one sweep as of `now`: every current submission's
/// object exists with its SHA-256, no other object exists, nothing waits for deletion, and
/// each student's counter equals their accepted uploads.
pub async fn audit(depository: &Depository, now: chrono::DateTime<chrono::Utc>) {
    use futures_util::StreamExt;
    depository.sweep_once_at(now).await.unwrap();
    let live = depository.db.live_storage_keys().await.unwrap();
    for (key, sha256) in &live {
        let mut stream = depository.store.get(key).await.unwrap();
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.next().await {
            hasher.update(chunk.unwrap());
        }
        assert_eq!(
            &hex::encode(hasher.finalize()),
            sha256,
            "object {key} intact"
        );
    }
    let stored: BTreeSet<String> = depository
        .store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .collect();
    let expected: BTreeSet<String> = live.into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        stored, expected,
        "stored objects are exactly the live submissions"
    );
    assert_eq!(
        depository.db.pending_deletions().await.unwrap(),
        0,
        "nothing left to delete"
    );
    let mismatched = depository.db.counter_mismatches().await.unwrap();
    assert_eq!(mismatched, 0, "uploads_used equals accepted submissions");
}

/// [`audit`] as of the moment every reservation and claim has lapsed, once the store's
/// keys have stopped changing: a PUT whose body S3 had fully received when the server was
/// killed (or the request cancelled) can still land a moment later, in real time, while
/// the sweep pretends the lease is long over.
pub async fn audit_after_leases(depository: &Depository) {
    let stored = || async {
        let keys = depository.store.list_keys().await.unwrap();
        keys.into_iter().collect::<BTreeSet<_>>()
    };
    let mut keys = stored().await;
    let (mut unchanged_since, give_up) = (Instant::now(), Instant::now() + SETTLE_AT_MOST);
    while unchanged_since.elapsed() < SETTLED_AFTER && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stored().await;
        if now != keys {
            (keys, unchanged_since) = (now, Instant::now());
        }
    }
    audit(depository, after_leases(depository)).await;
}

/// The store counts as settled when its keys stayed the same this long …
const SETTLED_AFTER: Duration = Duration::from_secs(2);
/// … waited for at most this long.
const SETTLE_AT_MOST: Duration = Duration::from_secs(20);

/// `now` plus the time after which every reservation and claim has lapsed.
fn after_leases(depository: &Depository) -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
        + chrono::Duration::from_std(depository.reservation_lease()).unwrap()
        + chrono::Duration::seconds(1)
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A multipart file part that sends `chunks` chunks of `chunk_len` bytes, `gap` apart.
pub fn slow_part(chunks: u8, chunk_len: usize, gap: Duration, name: &str) -> Part {
    let stream = futures_util::StreamExt::then(
        futures_util::stream::iter(
            (0..chunks).map(move |i| Ok::<_, std::io::Error>(bytes(chunk_len, i))),
        ),
        move |chunk| async move {
            tokio::time::sleep(gap).await;
            chunk
        },
    );
    Part::stream_with_length(
        reqwest::Body::wrap_stream(stream),
        u64::from(chunks) * chunk_len as u64,
    )
    .file_name(name.to_owned())
}

/// Deterministic test bytes of a given length.
pub fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
