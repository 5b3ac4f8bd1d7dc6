//! The real binary as a child process, for tests that kill or signal it.

use crate::helpers::{Fixture, TOKEN};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

pub struct ServerProcess {
    child: Child,
    pub base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    /// Starts `exam-depository serve` on the fixture's backend and waits until it answers.
    pub async fn start(fixture: &Fixture) -> Self {
        Self::start_with(fixture, &[], None).await
    }

    /// Like [`ServerProcess::start`] with extra environment and stderr sent to a file.
    pub async fn start_with(
        fixture: &Fixture,
        extra_env: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) -> Self {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_exam-depository"));
        command
            .arg("serve")
            .env_clear()
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("AUTH_TOKEN", TOKEN)
            .env("SWEEP_INTERVAL_SECONDS", "3600")
            .env("SHUTDOWN_GRACE_SECONDS", "20")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(match log {
                Some(path) => Stdio::from(std::fs::File::create(path).unwrap()),
                None => Stdio::inherit(),
            })
            .kill_on_drop(true);
        command.envs(fixture.service_env());
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let child = command.spawn().unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(format!("{base}/healthz")).send().await
                && r.status() == 200
            {
                return Self { child, base };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server process did not start");
    }

    pub fn address(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    /// Registers a student through the API and returns the upload code.
    pub async fn register(&self, nickname: &str) -> String {
        let body: serde_json::Value = reqwest::Client::new()
            .post(format!("{}/students", self.base))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({
                "nickname": nickname, "first_name": "A", "last_name": "B",
                "email": format!("{nickname}@example.org"),
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["upload_code"].as_str().unwrap().to_owned()
    }

    /// SIGKILL, and wait for the process to be gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }

    /// SIGTERM.
    pub fn terminate(&self) {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub async fn wait(mut self) -> Option<i32> {
        tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("process exits")
            .unwrap()
            .code()
    }
}

/// How long a CLI command may take in a test before it counts as hung.
const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// A command for the real binary.
pub fn binary() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_exam-depository"))
}

/// Runs `command` with no input and returns what it printed once it exits.
///
/// Its output goes to files, so only the process itself is waited for (`Command::output`
/// also waits for end of file on its pipes). A command still running after a minute is
/// killed and fails the test, with where its threads were blocked and what it printed.
pub fn output_of(command: &mut std::process::Command) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + CLI_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let threads = blocked_threads(child.id());
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command:?} still ran after {CLI_DEADLINE:?}\nthreads: {threads}\nstderr: {}",
                String::from_utf8_lossy(&std::fs::read(&stderr).unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    std::process::Output {
        status,
        stdout: std::fs::read(&stdout).unwrap(),
        stderr: std::fs::read(&stderr).unwrap(),
    }
}

/// `name: kernel wait channel` for each thread of a process (Linux).
fn blocked_threads(pid: u32) -> String {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return "unknown".into();
    };
    tasks
        .flatten()
        .map(|task| {
            let read =
                |file: &str| std::fs::read_to_string(task.path().join(file)).unwrap_or_default();
            format!("{}: {}", read("comm").trim(), read("wchan").trim())
        })
        .collect::<Vec<_>>()
        .join(", ")
}
