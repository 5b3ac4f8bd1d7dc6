//! The benchmark: starts the release server against SQLite + disk or PostgreSQL + S3, loads
//! it, and measures the same work straight against the store and the database in the same
//! run, so ratios hold on a shared, noisy machine. Prints a table and one JSON line.
//!
//! `cargo run --release --bin bench -- --backend embedded` (or `production`, after
//! `eval "$(scripts/dev-services)"`).

use clap::Parser;
use exam_depository::db::{BatchOp, Db, DbOptions, GroupCommit};
use exam_depository::depository::Spool;
use exam_depository::domain::audit::AuditEntry;
use exam_depository::storage::{
    BlobStore, LocalStore, ObjectHeaders, S3Settings, S3Store, UrlSigner,
};
use futures_util::{StreamExt, TryStreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug, Clone)]
struct Args {
    /// `embedded` (SQLite + disk) or `production` (PostgreSQL + S3 from TEST_* variables).
    #[arg(long, default_value = "embedded")]
    backend: String,
    /// Uploads in the main phase; by default as many as fit in `--seconds`.
    #[arg(long)]
    uploads: Option<usize>,
    /// Length of the upload phase when `--uploads` is not given.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// `download_url` lookups; by default as many as fit in `--lookup-seconds`.
    #[arg(long)]
    lookups: Option<usize>,
    /// Length of the lookup phase when `--lookups` is not given (each raw baseline runs for
    /// half as long, before and after it).
    #[arg(long, default_value_t = 4.0)]
    lookup_seconds: f64,
    /// Bytes per upload.
    #[arg(long, default_value_t = 1024 * 1024)]
    size: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Concurrent clients in the overload phase.
    #[arg(long, default_value_t = 128)]
    overload: usize,
    /// Students on the roster for the `GET /students` phase.
    #[arg(long, default_value_t = 10_000)]
    roster: usize,
    /// Database connections, of the server and of the raw lookup baseline alike.
    #[arg(long, default_value_t = 16)]
    pool_size: u32,
    /// Where to write the JSON line too.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

const KEY: &str = "bench-examiner-key";

struct Server {
    child: std::process::Child,
    base: String,
    cold_start: Duration,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Samples the server's RSS every 20 ms; `take()` returns the peak since the last take.
struct RssSampler {
    peak: Arc<AtomicU64>,
}

impl RssSampler {
    fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(0));
        let shared = peak.clone();
        tokio::spawn(async move {
            loop {
                shared.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Self { peak }
    }
    fn take(&self) -> f64 {
        self.peak.swap(0, Ordering::Relaxed) as f64 / 1024.0
    }
}

/// CPU time used so far, in clock ticks: the whole machine (busy and total, all cores),
/// the server process and this process. The difference of two readings over a phase tells
/// how busy the machine was and what each operation cost the server.
#[derive(Debug, Clone, Copy, Default)]
struct CpuReading {
    machine_busy: u64,
    machine_total: u64,
    server: u64,
    bench: u64,
}

/// The server's pid, once started (for CPU readings).
static SERVER_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// utime + stime of a process, from `/proc/<pid>/stat`.
fn process_ticks(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name may hold spaces; the fields after it are plain numbers.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0)
}

impl CpuReading {
    fn now() -> Self {
        let (mut busy, mut total) = (0, 0);
        if let Ok(stat) = std::fs::read_to_string("/proc/stat")
            && let Some(line) = stat.lines().next()
        {
            // cpu user nice system idle iowait irq softirq steal
            let ticks: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|t| t.parse().ok())
                .collect();
            total = ticks.iter().sum();
            busy = total - ticks.get(3).copied().unwrap_or(0) - ticks.get(4).copied().unwrap_or(0);
        }
        Self {
            machine_busy: busy,
            machine_total: total,
            server: SERVER_PID
                .get()
                .map_or(0, |pid| process_ticks(&pid.to_string())),
            bench: process_ticks("self"),
        }
    }

    fn since(self, start: Self) -> Self {
        Self {
            machine_busy: self.machine_busy - start.machine_busy,
            machine_total: self.machine_total - start.machine_total,
            server: self.server - start.server,
            bench: self.bench - start.bench,
        }
    }

    fn add(self, other: Self) -> Self {
        Self {
            machine_busy: self.machine_busy + other.machine_busy,
            machine_total: self.machine_total + other.machine_total,
            server: self.server + other.server,
            bench: self.bench + other.bench,
        }
    }
}

/// Clock ticks per second of the `/proc` CPU counters (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

struct Phase {
    name: &'static str,
    count: usize,
    seconds: f64,
    latencies: Vec<f64>,
    errors: usize,
    bytes: u64,
    cpu: CpuReading,
}

impl Phase {
    /// Two runs of the same phase as one: their counts and times added.
    fn mean(name: &'static str, a: &Phase, b: &Phase) -> Phase {
        Phase {
            name,
            count: a.count + b.count,
            seconds: a.seconds + b.seconds,
            latencies: [a.latencies.as_slice(), b.latencies.as_slice()].concat(),
            errors: a.errors + b.errors,
            bytes: a.bytes + b.bytes,
            cpu: a.cpu.add(b.cpu),
        }
    }
    /// Share of the machine's cores in use during the phase (2.0 = both cores busy).
    fn busy_cores(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
        if self.cpu.machine_total == 0 {
            return 0.0;
        }
        cores * self.cpu.machine_busy as f64 / self.cpu.machine_total as f64
    }
    /// CPU milliseconds per operation, all processes of the machine together.
    fn machine_ms_per_op(&self) -> f64 {
        self.busy_cores() * self.seconds * 1000.0 / self.count.max(1) as f64
    }
    /// CPU milliseconds per operation, of the server and of the load generator / baseline.
    fn cpu_ms_per_op(&self) -> (f64, f64) {
        let per_op =
            |ticks: u64| ticks as f64 / TICKS_PER_SECOND * 1000.0 / self.count.max(1) as f64;
        (per_op(self.cpu.server), per_op(self.cpu.bench))
    }
    fn json(&self) -> Value {
        let (server_ms, bench_ms) = self.cpu_ms_per_op();
        json!({"per_s": self.rate(), "mib_per_s": self.mib_per_s(), "p50_ms": self.percentile(0.5),
               "p99_ms": self.percentile(0.99), "errors": self.errors, "busy_cores": self.busy_cores(),
               "server_cpu_ms_per_op": server_ms, "bench_cpu_ms_per_op": bench_ms,
               "machine_cpu_ms_per_op": self.machine_ms_per_op()})
    }
    fn rate(&self) -> f64 {
        self.count as f64 / self.seconds
    }
    fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / 1_048_576.0 / self.seconds
    }
    fn percentile(&self, p: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return 0.0;
        }
        sorted[((sorted.len() - 1) as f64 * p).round() as usize] * 1000.0
    }
}

/// Prints the phase starting, with the time since the benchmark started (for profilers).
fn progress(what: &str) {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    eprintln!("bench: {:7.2} s {what}", start.elapsed().as_secs_f64());
}

/// Runs `count` jobs at `concurrency`; each returns (ok, bytes).
async fn run<F, Fut>(name: &'static str, count: usize, concurrency: usize, job: F) -> Phase
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (bool, u64)>,
{
    run_until(name, count, None, concurrency, job).await
}

/// Like `run`, but starts no new job once `deadline` has passed.
async fn run_until<F, Fut>(
    name: &'static str,
    count: usize,
    deadline: Option<Duration>,
    concurrency: usize,
    job: F,
) -> Phase
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = (bool, u64)>,
{
    progress(name);
    let cpu_before = CpuReading::now();
    let started = Instant::now();
    let results: Vec<(bool, u64, f64)> = futures_util::stream::iter(0..count)
        .take_while(|_| std::future::ready(deadline.is_none_or(|d| started.elapsed() < d)))
        .map(|i| {
            let call = job(i);
            async move {
                let t = Instant::now();
                let (ok, bytes) = call.await;
                (ok, bytes, t.elapsed().as_secs_f64())
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    Phase {
        name,
        count: results.len(),
        seconds: started.elapsed().as_secs_f64(),
        latencies: results.iter().map(|r| r.2).collect(),
        errors: results.iter().filter(|r| !r.0).count(),
        bytes: results.iter().filter(|r| r.0).map(|r| r.1).sum(),
        cpu: CpuReading::now().since(cpu_before),
    }
}

/// CPU milliseconds that MD5 and SHA-256 of `data` take on one core (SPEC: both are part of
/// every submission), the floor of what any upload of these bytes costs the server.
fn digest_cost_ms(data: &[u8]) -> f64 {
    use md5::Digest as _;
    let rounds = (256 * 1024 * 1024 / data.len().max(1)).clamp(1, 1000);
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(md5::Md5::digest(std::hint::black_box(data)));
        std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(data)));
    }
    started.elapsed().as_secs_f64() * 1000.0 / rounds as f64
}

/// Serves `handler` over HTTP/1.1 on a loopback port of this process, for the floors: the
/// base URL, and the task to abort afterwards.
async fn serve_in_process<F, Fut>(
    handler: F,
) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)>
where
    F: Fn(hyper::Request<hyper::body::Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<axum::body::Body>, hyper::http::Error>>
        + Send
        + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let service = hyper::service::service_fn(handler.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((base, server))
}

/// Moving the same bytes over HTTP and nothing else: the load generator's multipart POSTs to
/// a server in this process that reads each body and throws it away. Together with the
/// digests and the store's own work, this is what any upload must cost the machine.
async fn http_transfer_phase(data: &bytes::Bytes, args: &Args) -> anyhow::Result<Phase> {
    let (base, sink) = serve_in_process(|request| async move {
        let mut body = axum::body::Body::new(request.into_body()).into_data_stream();
        let mut complete = true;
        while let Some(chunk) = body.next().await {
            complete &= chunk.is_ok();
        }
        hyper::Response::builder()
            .status(if complete { 201 } else { 400 })
            .body(axum::body::Body::from("{}"))
    })
    .await?;
    let load = LoadClient::new(&base)?;
    let (count, deadline) = raw_phase_length(args);
    let phase = run_until(
        "HTTP transfer floor",
        count,
        deadline,
        args.concurrency,
        |_| {
            let (load, data) = (&load, data.clone());
            async move {
                let ok = matches!(load.upload("AAAAAAAA", &data).await, Some((201, _)));
                (ok, data.len() as u64)
            }
        },
    )
    .await;
    sink.abort();
    Ok(phase)
}

/// Streaming `total` bytes over HTTP and nothing else: a server in this process answers one
/// GET with chunks from memory, read by the same client as the export. With the raw store
/// read, this bounds what any export of these bytes can reach. MiB/s.
async fn http_stream_floor(client: &reqwest::Client, total: u64) -> anyhow::Result<f64> {
    const CHUNK: usize = 256 * 1024;
    let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
    let (base, server) = serve_in_process(move |_| {
        let chunks = std::iter::repeat_n(chunk.clone(), (total as usize).div_ceil(CHUNK));
        let body = futures_util::stream::iter(chunks.map(Ok::<_, std::io::Error>));
        async move { hyper::Response::builder().body(axum::body::Body::from_stream(body)) }
    })
    .await?;
    let url = format!("{base}/");
    progress("HTTP stream floor");
    let started = Instant::now();
    let mut received = 0u64;
    let mut stream = client.get(url).send().await?.bytes_stream();
    while let Some(chunk) = stream.try_next().await? {
        received += chunk.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    server.abort();
    Ok(received as f64 / 1_048_576.0 / seconds)
}

/// The most operations per second the machine could do if each needed `costs_ms` of CPU
/// (machine-wide) and nothing else.
fn ceiling(costs_ms: &[f64]) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    cores * 1000.0 / costs_ms.iter().sum::<f64>()
}

/// `a` with the fields of `b` added.
fn merge(mut a: Value, b: Value) -> Value {
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .map_err(|_| anyhow::anyhow!("{name} is not set: eval \"$(scripts/dev-services)\" first"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let work = tempfile::tempdir()?;
    let production = args.backend == "production";
    let mut server_env: Vec<(&str, String)> = vec![];
    let mut database_url = format!(
        "sqlite://{}",
        work.path().join("data/exam-depository.db").display()
    );
    let mut s3 = None;
    let mut drop_database = None;
    if production {
        use sqlx::Connection;
        let admin = env("TEST_DATABASE_URL")?;
        let name = format!("exam_bench_{}", hex::encode(rand::random::<[u8; 4]>()));
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
        let mut url = url::Url::parse(&admin)?;
        url.set_path(&format!("/{name}"));
        database_url = url.to_string();
        drop_database = Some((admin, name));
        let settings = S3Settings {
            bucket: env("BENCH_S3_BUCKET")?,
            endpoint: Some(env("TEST_S3_ENDPOINT")?),
            region: Some(std::env::var("TEST_S3_REGION").unwrap_or_else(|_| "garage".into())),
            access_key_id: Some(env("TEST_S3_ACCESS_KEY_ID")?),
            secret_access_key: Some(env("TEST_S3_SECRET_ACCESS_KEY")?),
            timeout: Duration::from_secs(20),
        };
        server_env.extend([
            ("AWS_S3_BUCKET_NAME", settings.bucket.clone()),
            ("AWS_S3_ENDPOINT_URL", settings.endpoint.clone().unwrap()),
            ("AWS_REGION", settings.region.clone().unwrap()),
            ("AWS_ACCESS_KEY_ID", settings.access_key_id.clone().unwrap()),
            (
                "AWS_SECRET_ACCESS_KEY",
                settings.secret_access_key.clone().unwrap(),
            ),
        ]);
        s3 = Some(settings);
    }
    server_env.push(("DATABASE_URL", database_url.clone()));
    server_env.push(("DB_POOL_SIZE", args.pool_size.to_string()));
    let result = bench(&args, work.path(), &server_env, &database_url, s3.as_ref()).await;
    if let Some((admin, name)) = drop_database {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&admin).await?;
        sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn)
            .await?;
    }
    result
}

fn start_server(work: &Path, extra: &[(&str, String)]) -> anyhow::Result<(Server, u32)> {
    let binary = std::env::current_exe()?.with_file_name("exam-depository");
    anyhow::ensure!(
        binary.exists(),
        "build the server first: cargo build --release"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let started = Instant::now();
    let child = std::process::Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("PORT", port.to_string())
        .env("DATA_DIR", work.join("data"))
        .env("AUTH_TOKEN", KEY)
        .env("RUST_LOG", "warn")
        .env("MISS_LIMIT_PER_MINUTE", "1000000")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id();
    let base = format!("http://127.0.0.1:{port}");
    loop {
        if reqwest::blocking_get_ready(&format!("{base}/readyz")).unwrap_or(false) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let cold_start = started.elapsed();
    Ok((
        Server {
            child,
            base,
            cold_start,
        },
        pid,
    ))
}

mod reqwest {
    pub use ::reqwest::*;
    /// One readiness probe over a plain TCP socket (no runtime needed).
    pub fn blocking_get_ready(url: &str) -> std::io::Result<bool> {
        use std::io::{Read, Write};
        let rest = url.trim_start_matches("http://");
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let mut stream = std::net::TcpStream::connect(host)?;
        write!(
            stream,
            "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.starts_with("HTTP/1.1 200"))
    }
}

/// The store without the service: bytes from memory straight into a file (write, fsync,
/// rename, fsync the directory) or into the bucket (one PUT). No spooling, no digests.
enum RawStore {
    Disk(PathBuf),
    Bucket(Arc<object_store::aws::AmazonS3>),
}

impl RawStore {
    async fn open(work: &Path, s3: Option<&S3Settings>) -> anyhow::Result<Self> {
        Ok(match s3 {
            Some(settings) => {
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(&settings.bucket)
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
                    .with_virtual_hosted_style_request(false);
                if let Some(endpoint) = &settings.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(region) = &settings.region {
                    builder = builder.with_region(region);
                }
                if let (Some(id), Some(secret)) =
                    (&settings.access_key_id, &settings.secret_access_key)
                {
                    builder = builder
                        .with_access_key_id(id)
                        .with_secret_access_key(secret);
                }
                Self::Bucket(Arc::new(builder.build()?))
            }
            None => {
                let dir = work.join("raw");
                std::fs::create_dir_all(&dir)?;
                Self::Disk(dir)
            }
        })
    }

    /// Writes `data` under a new key; the key once stored.
    async fn put(&self, data: bytes::Bytes) -> Option<String> {
        use object_store::ObjectStore;
        let key = exam_depository::domain::codes::new_storage_key();
        let stored = match self {
            Self::Disk(dir) => {
                let (dir, key) = (dir.clone(), key.clone());
                tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    use std::io::Write;
                    let partial = dir.join(format!("{key}.part"));
                    let mut file = std::fs::File::create(&partial)?;
                    file.write_all(&data)?;
                    file.sync_all()?;
                    std::fs::rename(&partial, dir.join(&key))?;
                    std::fs::File::open(&dir)?.sync_all()
                })
                .await
                .is_ok_and(|r| r.is_ok())
            }
            Self::Bucket(bucket) => {
                let path = object_store::path::Path::from(key.as_str());
                bucket.put(&path, data.into()).await.is_ok()
            }
        };
        stored.then_some(key)
    }

    /// Reads a whole object, one call (a file read, or a GET and its body); its length.
    async fn read(&self, key: &str) -> anyhow::Result<u64> {
        use object_store::ObjectStore;
        Ok(match self {
            Self::Disk(dir) => {
                let path = dir.join(key);
                tokio::task::spawn_blocking(move || std::fs::read(path))
                    .await??
                    .len() as u64
            }
            Self::Bucket(bucket) => {
                let path = object_store::path::Path::from(key);
                bucket.get(&path).await?.bytes().await?.len() as u64
            }
        })
    }

    /// Removes what a phase stored (after it, so that deleting is not part of the timing).
    async fn remove(&self, keys: Vec<String>) {
        use object_store::ObjectStore;
        futures_util::stream::iter(keys)
            .for_each_concurrent(32, |key| async move {
                match self {
                    Self::Disk(dir) => {
                        let _ = tokio::fs::remove_file(dir.join(&key)).await;
                    }
                    Self::Bucket(bucket) => {
                        let _ = bucket.delete(&object_store::path::Path::from(key)).await;
                    }
                }
            })
            .await;
    }

    async fn put_phase(&self, data: &bytes::Bytes, args: &Args) -> Phase {
        let (count, deadline) = raw_phase_length(args);
        let stored = std::sync::Mutex::new(Vec::new());
        let phase = run_until("raw storage put", count, deadline, args.concurrency, |_| {
            let (data, stored) = (data.clone(), &stored);
            async move {
                let len = data.len() as u64;
                match self.put(data).await {
                    Some(key) => {
                        stored.lock().unwrap().push(key);
                        (true, len)
                    }
                    None => (false, len),
                }
            }
        })
        .await;
        self.remove(stored.into_inner().unwrap()).await;
        settle().await;
        phase
    }
}

/// Lets the machine settle after a phase that wrote or deleted many files: flushes dirty
/// data and waits a few seconds. Without it a phase pays for the one before: ext4 without
/// a journal (as here) skips inodes freed in the last 5 s when it allocates new ones (300 s
/// while their inode-table block is still dirty), and Garage collects deleted blocks in the
/// background.
async fn settle() {
    progress("settling (sync, 6 s)");
    let _ = tokio::process::Command::new("sync").status().await;
    tokio::time::sleep(Duration::from_secs(6)).await;
}

/// How many operations a baseline phase runs: as many as the service phase, or for a
/// third of its time (it runs twice).
fn raw_phase_length(args: &Args) -> (usize, Option<Duration>) {
    match args.uploads {
        Some(count) => (count, None),
        None => (10_000, Some(Duration::from_secs(args.seconds).div_f64(3.0))),
    }
}

/// The storage work the service does for each upload, without HTTP and the database: the
/// bytes spooled with their MD5 and SHA-256, then put into the store by the service's own
/// store code.
async fn storage_work_phase(store: &Arc<dyn BlobStore>, data: &bytes::Bytes, args: &Args) -> Phase {
    let headers = ObjectHeaders {
        content_type: "application/pdf".into(),
        content_disposition: "attachment; filename=\"answer.pdf\"".into(),
    };
    let (count, deadline) = raw_phase_length(args);
    let stored = std::sync::Mutex::new(Vec::new());
    let phase = run_until(
        "spool + digests + put",
        count,
        deadline,
        args.concurrency,
        |_| {
            let (store, data, headers, stored) =
                (store.clone(), data.clone(), headers.clone(), &stored);
            async move {
                let key = exam_depository::domain::codes::new_storage_key();
                let Ok(mut spool) = Spool::create(store.spool_dir(), u64::MAX).await else {
                    return (false, 0);
                };
                for start in (0..data.len()).step_by(64 * 1024) {
                    let chunk = data.slice(start..(start + 64 * 1024).min(data.len()));
                    if spool.write(chunk).await.is_err() {
                        return (false, 0);
                    }
                }
                let Ok(file) = spool.finish().await else {
                    return (false, 0);
                };
                let ok = store
                    .put_file(&key, file.path(), file.size, &headers)
                    .await
                    .is_ok();
                stored.lock().unwrap().push(key);
                (ok, data.len() as u64)
            }
        },
    )
    .await;
    futures_util::stream::iter(stored.into_inner().unwrap())
        .for_each_concurrent(32, |key| {
            let store = store.clone();
            async move {
                let _ = store.delete(&key).await;
            }
        })
        .await;
    settle().await;
    phase
}

async fn import(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    progress(&format!("importing {count} students"));
    let mut codes = Vec::with_capacity(count);
    for chunk_start in (0..count).step_by(5000) {
        let mut csv = String::from("nickname,first_name,last_name,email\n");
        for i in chunk_start..(chunk_start + 5000).min(count) {
            csv.push_str(&format!(
                "{prefix}{i},Bench,Student,{prefix}{i}@example.org\n"
            ));
        }
        let body: Value = client
            .post(format!("{base}/students/import"))
            .bearer_auth(KEY)
            .body(csv)
            .send()
            .await?
            .json()
            .await?;
        let created = body["created"]
            .as_array()
            .ok_or_else(|| anyhow::anyhow!("import failed: {body}"))?;
        codes.extend(
            created
                .iter()
                .map(|s| s["upload_code"].as_str().unwrap_or_default().to_owned()),
        );
    }
    Ok(codes)
}

/// The load generator's HTTP client: HTTP/1.1 keep-alive connections from a pool, over
/// hyper directly. It shares the two cores with the server, so it should cost as little as
/// possible (reqwest took about a sixth of the machine during the lookup phase).
struct LoadClient {
    addr: std::net::SocketAddr,
    idle: std::sync::Mutex<Vec<hyper::client::conn::http1::SendRequest<axum::body::Body>>>,
}

const BOUNDARY: &str = "bench-boundary-7d1f3a";

impl LoadClient {
    fn new(base: &str) -> anyhow::Result<Self> {
        let addr = base.trim_start_matches("http://").parse()?;
        Ok(Self {
            addr,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// Sends a request on an idle connection (or a new one); `None` on a transport error.
    async fn send(
        &self,
        request: axum::http::Request<axum::body::Body>,
    ) -> Option<(u16, bytes::Bytes)> {
        // An idle connection the server has closed meanwhile is dropped, not counted.
        let mut sender = loop {
            let idle = self.idle.lock().unwrap().pop();
            match idle {
                Some(mut sender) => {
                    if sender.ready().await.is_ok() {
                        break sender;
                    }
                }
                None => {
                    let stream = tokio::net::TcpStream::connect(self.addr).await.ok()?;
                    stream.set_nodelay(true).ok()?;
                    let (mut sender, connection) =
                        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                            .await
                            .ok()?;
                    tokio::spawn(connection);
                    sender.ready().await.ok()?;
                    break sender;
                }
            }
        };
        let response = sender.send_request(request).await.ok()?;
        let status = response.status().as_u16();
        let keep = response
            .headers()
            .get(axum::http::header::CONNECTION)
            .is_none_or(|v| v != "close");
        let body = axum::body::to_bytes(axum::body::Body::new(response.into_body()), usize::MAX)
            .await
            .ok()?;
        if keep {
            self.idle.lock().unwrap().push(sender);
        }
        Some((status, body))
    }

    async fn get(&self, path: &str) -> Option<(u16, bytes::Bytes)> {
        let request = axum::http::Request::get(path)
            .header(axum::http::header::HOST, self.addr.to_string())
            .body(axum::body::Body::empty())
            .ok()?;
        self.send(request).await
    }

    /// A multipart upload of `data` as `answer.pdf`, with an exact Content-Length.
    async fn upload(&self, code: &str, data: &bytes::Bytes) -> Option<(u16, bytes::Bytes)> {
        let head = bytes::Bytes::from(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; \
             filename=\"answer.pdf\"\r\nContent-Type: application/pdf\r\n\r\n"
        ));
        let tail = bytes::Bytes::from(format!("\r\n--{BOUNDARY}--\r\n"));
        let length = head.len() + data.len() + tail.len();
        let parts = [head, data.clone(), tail].map(Ok::<_, std::io::Error>);
        let request = axum::http::Request::post(format!("/submissions/{code}"))
            .header(axum::http::header::HOST, self.addr.to_string())
            .header(
                axum::http::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={BOUNDARY}"),
            )
            .header(axum::http::header::CONTENT_LENGTH, length)
            .body(axum::body::Body::from_stream(futures_util::stream::iter(
                parts,
            )))
            .ok()?;
        self.send(request).await
    }
}

async fn bench(
    args: &Args,
    work: &Path,
    server_env: &[(&str, String)],
    database_url: &str,
    s3: Option<&S3Settings>,
) -> anyhow::Result<()> {
    let (server, pid) = start_server(work, server_env)?;
    let _ = SERVER_PID.set(pid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = rss_kib(pid) as f64 / 1024.0;
    let rss = RssSampler::start(pid);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(120))
        .build()?;
    let base = server.base.clone();
    let data = bytes::Bytes::from(
        (0..args.size)
            .map(|i| (i * 31 % 251) as u8)
            .collect::<Vec<u8>>(),
    );

    // Raw PUTs of the same bytes straight into the same kind of store, before and after the
    // service's uploads (the mean is the baseline, so drift during the run cancels out).
    let raw_store = RawStore::open(work, s3).await?;
    let raw_dir = work.join("raw");
    let service_store: Arc<dyn BlobStore> = match s3 {
        Some(settings) => Arc::new(S3Store::open(settings, &raw_dir).await?),
        None => Arc::new(LocalStore::open(&raw_dir, UrlSigner::new("bench"), "http://x").await?),
    };
    let digest_ms = digest_cost_ms(&data);
    let http_transfer = http_transfer_phase(&data, args).await?;
    let raw_put_before = raw_store.put_phase(&data, args).await;
    let storage_work_before = storage_work_phase(&service_store, &data, args).await;

    // Uploads through the service.
    let max_uploads = args.uploads.unwrap_or(10_000);
    let deadline = args
        .uploads
        .is_none()
        .then(|| Duration::from_secs(args.seconds));
    let import_started = Instant::now();
    let codes = import(&client, &base, "u", max_uploads).await?;
    let import_seconds = import_started.elapsed().as_secs_f64();
    rss.take();
    let verification = Arc::new(std::sync::Mutex::new(Vec::new()));
    let load = Arc::new(LoadClient::new(&base)?);
    let uploads = run_until("upload", max_uploads, deadline, args.concurrency, |i| {
        let (load, code, data, verification) = (
            load.clone(),
            codes[i].clone(),
            data.clone(),
            verification.clone(),
        );
        async move {
            let Some((201, body)) = load.upload(&code, &data).await else {
                return (false, 0);
            };
            let body: Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(v) = body["last_submission"]["verification_code"].as_str() {
                verification.lock().unwrap().push(v.to_owned());
            }
            (true, data.len() as u64)
        }
    })
    .await;
    let upload_rss = rss.take();
    settle().await;
    let storage_work_after = storage_work_phase(&service_store, &data, args).await;
    let raw_put_after = raw_store.put_phase(&data, args).await;
    let raw_put = Phase::mean("raw storage put", &raw_put_before, &raw_put_after);
    let storage_work = Phase::mean(
        "spool + digests + put",
        &storage_work_before,
        &storage_work_after,
    );

    // Lookups through the service, and the same query straight on the database.
    let verification = Arc::new(verification.lock().unwrap().clone());
    anyhow::ensure!(!verification.is_empty(), "no upload succeeded");
    // A phase's length: `--lookups`, or `--lookup-seconds` times `share`.
    let lookup_length = |share: f64| match args.lookups {
        Some(count) => (count, None),
        None => (
            1_000_000,
            Some(Duration::from_secs_f64(args.lookup_seconds * share)),
        ),
    };
    let db = Db::connect(
        database_url,
        &DbOptions {
            pool_size: args.pool_size,
            timeout: Duration::from_secs(5),
        },
    )
    .await?;
    let raw_lookups = || {
        let (count, deadline) = lookup_length(0.5);
        run_until(
            "raw database lookup",
            count,
            deadline,
            args.concurrency,
            |i| {
                let (db, code) = (db.clone(), verification[i % verification.len()].clone());
                async move {
                    (
                        db.submission_by_verification_code(&code)
                            .await
                            .is_ok_and(|s| s.is_some()),
                        0,
                    )
                }
            },
        )
    };
    // The baseline before and after the service's lookups, averaged (as for the store).
    let raw_lookup_before = raw_lookups().await;
    let (count, deadline) = lookup_length(1.0);
    let lookups = run_until("download_url", count, deadline, args.concurrency, |i| {
        let (load, code) = (load.clone(), verification[i % verification.len()].clone());
        async move {
            let path = format!("/verifications/{code}/download_url");
            (matches!(load.get(&path).await, Some((200, _))), 0)
        }
    })
    .await;
    let raw_lookup_after = raw_lookups().await;
    let raw_lookup = Phase::mean("raw database lookup", &raw_lookup_before, &raw_lookup_after);
    // The write half of a lookup alone: the durable audit append of a disclosure, through
    // the service's own group commit, in process (it appends to the service's chain).
    let group = GroupCommit::start(db.clone());
    let (count, deadline) = lookup_length(0.5);
    let audit_append = run_until(
        "audit append (group commit)",
        count,
        deadline,
        args.concurrency,
        |i| {
            let group = group.clone();
            async move {
                let entry = AuditEntry::new(
                    "bench",
                    "download_url.issued",
                    format!("submission:{i}"),
                    json!({"expires_seconds": 600}),
                );
                (group.submit(BatchOp::Audit(entry)).await.is_ok(), 0)
            }
        },
    )
    .await;
    drop(group);
    // The HTTP floor of a lookup: the service's cheapest route (`GET /`, plain `pong`).
    let (count, deadline) = lookup_length(0.5);
    let pong = run_until(
        "GET / (HTTP floor)",
        count,
        deadline,
        args.concurrency,
        |_| {
            let load = load.clone();
            async move { (matches!(load.get("/").await, Some((200, _))), 0) }
        },
    )
    .await;

    // Overload: many more clients than upload slots; 503 with Retry-After is fine, 500 is not.
    let overload_codes = import(&client, &base, "o", args.overload * 2).await?;
    let statuses = Arc::new(std::sync::Mutex::new(Vec::new()));
    let overload = run("overload upload", args.overload * 2, args.overload, |i| {
        let (load, code, data, statuses) = (
            load.clone(),
            overload_codes[i].clone(),
            data.clone(),
            statuses.clone(),
        );
        async move {
            let status = load
                .upload(&code, &data)
                .await
                .map_or(0, |(status, _)| status);
            statuses.lock().unwrap().push(status);
            (
                matches!(status, 201 | 503),
                if status == 201 { data.len() as u64 } else { 0 },
            )
        }
    })
    .await;
    let statuses = statuses.lock().unwrap().clone();
    let overload_503 = statuses.iter().filter(|s| **s == 503).count();

    // Memory: 64 concurrent uploads of 3 MiB.
    let big = bytes::Bytes::from(vec![7u8; 3 * 1024 * 1024]);
    let big_codes = import(&client, &base, "m", 64).await?;
    rss.take();
    let big_phase = run("64 x 3 MiB upload", 64, 64, |i| {
        let (load, code, big) = (load.clone(), big_codes[i].clone(), big.clone());
        async move {
            (
                matches!(load.upload(&code, &big).await, Some((201, _))),
                big.len() as u64,
            )
        }
    })
    .await;
    let big_rss = rss.take();

    // Export: the ZIP through the service against reading the same objects from the store.
    rss.take();
    progress("export");
    let started = Instant::now();
    let mut zip_bytes = 0u64;
    let mut stream = client
        .get(format!("{base}/exports/submissions.zip"))
        .bearer_auth(KEY)
        .send()
        .await?
        .bytes_stream();
    while let Some(chunk) = stream.try_next().await? {
        zip_bytes += chunk.len() as u64;
    }
    let zip_seconds = started.elapsed().as_secs_f64();
    let export_rss = rss.take();
    let live = db.live_storage_keys().await?;
    let server_store: Arc<dyn BlobStore> = match s3 {
        Some(settings) => Arc::new(S3Store::open(settings, &raw_dir).await?),
        None => Arc::new(
            LocalStore::open(&work.join("data"), UrlSigner::new("bench"), "http://x").await?,
        ),
    };
    progress("raw store read");
    let server_objects = match &raw_store {
        RawStore::Disk(_) => RawStore::Disk(work.join("data/files")),
        RawStore::Bucket(bucket) => RawStore::Bucket(bucket.clone()),
    };
    let started = Instant::now();
    let mut raw_read = 0u64;
    for (key, _) in &live {
        raw_read += server_objects.read(key).await?;
    }
    let raw_read_seconds = started.elapsed().as_secs_f64();
    let raw_read_mib_s = raw_read as f64 / 1_048_576.0 / raw_read_seconds;
    let stream_floor_mib_s = http_stream_floor(&client, zip_bytes).await?;
    // Reading then sending each byte, one after the other: the export's ceiling.
    let export_ceiling_mib_s = 1.0 / (1.0 / raw_read_mib_s + 1.0 / stream_floor_mib_s);

    // The roster: GET /students with `roster` students.
    let have = max_uploads + args.overload * 2 + 64;
    if args.roster > have {
        import(&client, &base, "r", args.roster - have).await?;
    }
    let mut roster_ms = Vec::new();
    for _ in 0..5 {
        // Timed until the last byte arrives; the client's own JSON parsing is not the service's.
        let t = Instant::now();
        let raw = client
            .get(format!("{base}/students"))
            .bearer_auth(KEY)
            .send()
            .await?
            .bytes()
            .await?;
        roster_ms.push(t.elapsed().as_secs_f64() * 1000.0);
        let body: Value = serde_json::from_slice(&raw)?;
        anyhow::ensure!(body["students"].as_array().map_or(0, Vec::len) >= args.roster.min(10_000));
    }
    roster_ms.sort_by(f64::total_cmp);

    // Clean the standing bucket for the next run.
    if s3.is_some() {
        for key in server_store.list_keys().await? {
            let _ = server_store.delete(&key).await;
        }
    }

    // What the machine could do at best: each upload needs at least the store's own work,
    // the two digests and the HTTP transfer. For lookups, what a service that ran the query
    // per lookup and then appended its disclosure could do; the service reads a whole
    // batch's submissions in one query inside the append's transaction, so it may pass it.
    let upload_ceiling = ceiling(&[
        raw_put.machine_ms_per_op(),
        digest_ms,
        http_transfer.machine_ms_per_op(),
    ]);
    let lookup_bound = ceiling(&[
        raw_lookup.machine_ms_per_op(),
        audit_append.machine_ms_per_op(),
        pong.machine_ms_per_op(),
    ]);
    let report = json!({
        "backend": args.backend,
        "size_bytes": args.size,
        "uploads": uploads.count,
        "concurrency": args.concurrency,
        "cold_start_ms": server.cold_start.as_secs_f64() * 1000.0,
        "idle_rss_mib": idle_rss,
        "upload": merge(uploads.json(), json!({"peak_rss_mib": upload_rss})),
        "raw_storage_put": merge(raw_put.json(), json!({"before_per_s": raw_put_before.rate(), "after_per_s": raw_put_after.rate()})),
        "upload_vs_raw_put": uploads.rate() / raw_put.rate(),
        "digests_cpu_ms_per_upload": digest_ms,
        "storage_work": merge(storage_work.json(), json!({"before_per_s": storage_work_before.rate(), "after_per_s": storage_work_after.rate()})),
        "upload_vs_storage_work": uploads.rate() / storage_work.rate(),
        "download_url": lookups.json(),
        "raw_db_lookup": merge(raw_lookup.json(), json!({"before_per_s": raw_lookup_before.rate(), "after_per_s": raw_lookup_after.rate()})),
        "lookup_vs_raw_db": lookups.rate() / raw_lookup.rate(),
        "audit_append": audit_append.json(),
        "lookup_vs_audit_append": lookups.rate() / audit_append.rate(),
        "http_transfer_floor": http_transfer.json(),
        "http_floor_get": pong.json(),
        "upload_ceiling": {"per_s": upload_ceiling, "vs_raw_put": upload_ceiling / raw_put.rate()},
        "lookup_bound_separate_read": {"per_s": lookup_bound, "vs_raw_db": lookup_bound / raw_lookup.rate()},
        "overload": {"concurrency": args.overload, "requests": statuses.len(), "accepted": statuses.iter().filter(|s| **s == 201).count(), "503": overload_503, "other_errors": overload.errors, "other_statuses": statuses.iter().filter(|s| !matches!(s, 201 | 503)).collect::<Vec<_>>(), "p99_ms": overload.percentile(0.99)},
        "big_uploads_64x3mib": {"errors": big_phase.errors, "peak_rss_mib": big_rss, "seconds": big_phase.seconds},
        "export": {"mib_per_s": zip_bytes as f64 / 1_048_576.0 / zip_seconds, "raw_read_mib_per_s": raw_read_mib_s, "http_stream_floor_mib_per_s": stream_floor_mib_s, "ceiling_mib_per_s": export_ceiling_mib_s, "vs_raw_read": zip_bytes as f64 / 1_048_576.0 / zip_seconds / raw_read_mib_s, "peak_rss_mib": export_rss},
        "students_list_10k_ms": {"median": roster_ms[2], "max": roster_ms[4]},
        "import": {"students": max_uploads, "seconds": import_seconds},
    });
    println!(
        "\nexam-depository benchmark ({}; {} uploads of {} bytes at C={})",
        args.backend, uploads.count, args.size, args.concurrency
    );
    println!(
        "{:<28} {:>10} {:>10} {:>10} {:>8} {:>7} {:>13} {:>12}",
        "phase", "per s", "MiB/s", "p99 ms", "errors", "cores", "server ms/op", "bench ms/op"
    );
    for phase in [
        &uploads,
        &raw_put,
        &storage_work,
        &http_transfer,
        &lookups,
        &raw_lookup,
        &audit_append,
        &pong,
        &overload,
        &big_phase,
    ] {
        let (server_ms, bench_ms) = phase.cpu_ms_per_op();
        println!(
            "{:<28} {:>10.1} {:>10.1} {:>10.1} {:>8} {:>7.2} {:>13.3} {:>12.3}",
            phase.name,
            phase.rate(),
            phase.mib_per_s(),
            phase.percentile(0.99),
            phase.errors,
            phase.busy_cores(),
            server_ms,
            bench_ms
        );
    }
    println!(
        "upload/raw put {:.2}   upload/storage work {:.2}   lookup/raw db {:.2}   lookup/audit append {:.2}   overload: {} x 503, {} other errors",
        uploads.rate() / raw_put.rate(),
        uploads.rate() / storage_work.rate(),
        lookups.rate() / raw_lookup.rate(),
        lookups.rate() / audit_append.rate(),
        overload_503,
        overload.errors
    );
    println!(
        "MD5 + SHA-256 of one upload: {digest_ms:.2} ms of one core (the server's floor per upload)"
    );
    println!(
        "ceilings on this machine: uploads {:.0}/s = {:.2} x raw put (store {:.2} + digests {:.2} + HTTP {:.2} ms of CPU each); lookups with a query each {:.0}/s = {:.2} x raw db (query {:.3} + audit append {:.3} + HTTP {:.3} ms)",
        upload_ceiling,
        upload_ceiling / raw_put.rate(),
        raw_put.machine_ms_per_op(),
        digest_ms,
        http_transfer.machine_ms_per_op(),
        lookup_bound,
        lookup_bound / raw_lookup.rate(),
        raw_lookup.machine_ms_per_op(),
        audit_append.machine_ms_per_op(),
        pong.machine_ms_per_op()
    );
    println!(
        "RSS idle {:.1} MiB, uploading {:.1} MiB, 64x3MiB {:.1} MiB, export {:.1} MiB   cold start {:.0} ms",
        idle_rss,
        upload_rss,
        big_rss,
        export_rss,
        server.cold_start.as_secs_f64() * 1000.0
    );
    println!(
        "export {:.1} MiB/s vs raw read {:.1} MiB/s = {:.2} (HTTP stream floor {:.0} MiB/s; ceiling {:.0} MiB/s = {:.2} x raw read)   GET /students ({} students) median {:.1} ms   import of {} students {:.1} s",
        zip_bytes as f64 / 1_048_576.0 / zip_seconds,
        raw_read_mib_s,
        zip_bytes as f64 / 1_048_576.0 / zip_seconds / raw_read_mib_s,
        stream_floor_mib_s,
        export_ceiling_mib_s,
        export_ceiling_mib_s / raw_read_mib_s,
        args.roster,
        roster_ms[2],
        max_uploads,
        import_seconds
    );
    println!("{report}");
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{report}\n"))?;
    }
    Ok(())
}
