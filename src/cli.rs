//! The command line: `serve`, `migrate`, `errors`, `sweep`.

use crate::config::Config;
use crate::domain::audit::AuditEntry;
use crate::server::{self, Application};
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Collects students' exam answer files and serves them to examiners.
#[derive(Debug, Parser)]
#[command(name = "exam-depository", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve,
    /// Create or update the database schema, then exit.
    Migrate,
    /// Print the most recent server-side errors (the `errors` table), newest first.
    Errors {
        /// How many rows to show.
        #[arg(long, default_value_t = 10)]
        last: i64,
    },
    /// Run one retention and cleanup pass now, then exit.
    Sweep,
    /// Exit 0 when the local server answers `/healthz` (for container health checks).
    Healthcheck,
    /// Register every student of a CSV roster (header nickname,first_name,last_name,email),
    /// all or none; prints each student's upload code.
    Import {
        /// The CSV file (`-` for standard input).
        file: std::path::PathBuf,
    },
    /// Work with the roster.
    #[command(subcommand)]
    Students(StudentsCommand),
    /// Check the audit log's hash chain; exit 1 at the first broken link.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Check a signed receipt (JSON from GET /receipts/{code}) offline; exit 1 and name the
    /// changed field when it does not verify.
    VerifyReceipt {
        /// The receipt file.
        file: std::path::PathBuf,
        /// The service's public key (base64, from GET /receipts/public-key); default: this
        /// installation's key (RECEIPT_SIGNING_KEY or DATA_DIR).
        #[arg(long)]
        public_key: Option<String>,
    },
    /// Manage named examiner API keys kept (hashed) in the database.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Debug, Subcommand)]
enum StudentsCommand {
    /// Print the roster as CSV: nickname, names, email, upload code, uploads used, latest
    /// verification code.
    List,
    /// Give a student extra time after SUBMISSIONS_CLOSE_AT.
    Extend {
        /// The student's nickname.
        nickname: String,
        /// Extra seconds (0 removes the extension).
        seconds: i64,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chain from the first event to the head.
    Verify,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it once.
    Create {
        /// A name to recognise it by (for example the examiner's).
        name: String,
    },
    /// List keys: names and times, never the keys.
    List,
    /// Revoke a key by name; it stops working at once.
    Revoke {
        /// The key's name.
        name: String,
    },
}

impl Cli {
    /// Runs the chosen command. Exit code 0 on success, 1 on failure.
    pub async fn run(self) -> ExitCode {
        crate::telemetry::init(self.config.log_format);
        match self.dispatch().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {error:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn dispatch(self) -> anyhow::Result<()> {
        let config = self.config;
        match self.command.unwrap_or(Command::Serve) {
            Command::Serve => {
                Application::build(config)
                    .await?
                    .run_until(server::shutdown_signal())
                    .await
            }
            Command::Migrate => {
                server::open_database(&config).await?;
                println!("database is up to date");
                Ok(())
            }
            Command::Errors { last } => {
                let db = server::open_database(&config).await?;
                for row in db.recent_errors(last.clamp(1, 10_000)).await? {
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}",
                        row.id,
                        row.created_at,
                        row.route.unwrap_or_default(),
                        row.request_id.unwrap_or_default(),
                        row.detail,
                        row.cause.unwrap_or_default()
                    );
                }
                Ok(())
            }
            Command::Import { file } => import(&config, &file).await,
            Command::Students(StudentsCommand::List) => {
                let db = server::open_database(&config).await?;
                println!(
                    "nickname,first_name,last_name,email,upload_code,uploads_used,verification_code"
                );
                let mut offset = 0;
                loop {
                    let page = db.list_students(1000, offset).await?;
                    for s in &page {
                        println!(
                            "{},{},{},{},{},{},{}",
                            s.nickname,
                            csv_field(&s.first_name),
                            csv_field(&s.last_name),
                            s.email,
                            s.upload_code,
                            s.uploads_used,
                            s.latest
                                .as_ref()
                                .map_or("", |l| l.verification_code.as_str())
                        );
                    }
                    if page.len() < 1000 {
                        return Ok(());
                    }
                    offset += 1000;
                }
            }
            Command::Students(StudentsCommand::Extend { nickname, seconds }) => {
                let depository = open_depository(&config).await?;
                let (student, _) = depository.set_extra_time(&nickname, seconds, "cli").await?;
                println!(
                    "{} has {} extra seconds",
                    student.nickname, student.extra_seconds
                );
                Ok(())
            }
            Command::Audit(AuditCommand::Verify) => {
                let db = server::open_database(&config).await?;
                audit_verify(&db).await
            }
            Command::VerifyReceipt { file, public_key } => {
                let text = std::fs::read_to_string(&file)?;
                let receipt: crate::receipts::Receipt = serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("not a receipt: {e}"))?;
                let key = match public_key {
                    Some(key) => key,
                    None => server::receipt_signer(&config)?.public_key_base64(),
                };
                crate::receipts::verify(&receipt, &key)
                    .map_err(|e| anyhow::anyhow!("receipt INVALID: {e}"))?;
                println!(
                    "receipt valid: {} submitted {} ({} bytes, sha256 {}) at {}",
                    receipt.nickname,
                    receipt.original_filename,
                    receipt.size_bytes,
                    receipt.sha256,
                    receipt.accepted_at
                );
                Ok(())
            }
            Command::Keys(command) => {
                let db = server::open_database(&config).await?;
                keys(&db, command).await
            }
            Command::Healthcheck => {
                let url = format!("http://127.0.0.1:{}/healthz", config.port);
                let response = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(3))
                    .build()?
                    .get(&url)
                    .send()
                    .await?;
                anyhow::ensure!(
                    response.status().is_success(),
                    "{url} answered {}",
                    response.status()
                );
                Ok(())
            }
            Command::Sweep => {
                let depository = open_depository(&config).await?;
                let report = depository.sweep_once().await?;
                println!(
                    "expired {} submissions, deleted {} objects, {} deletions to retry",
                    report.expired, report.deleted, report.failed
                );
                Ok(())
            }
        }
    }
}

/// The core as the server builds it, for commands that act like it.
async fn open_depository(config: &Config) -> anyhow::Result<crate::depository::Depository> {
    let db = server::open_database(config).await?;
    let (store, _) = server::open_store(config, &config.public_url(config.port)).await?;
    Ok(crate::depository::Depository::new(
        db,
        store,
        server::rules(config, config.port)?,
    ))
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_owned()
    }
}

async fn import(config: &Config, file: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let bytes = if file.as_os_str() == "-" {
        let mut buffer = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buffer)?;
        buffer
    } else {
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?
    };
    let depository = open_depository(config).await?;
    match depository.import_roster(&bytes, "cli").await {
        Ok(created) => {
            println!("nickname,upload_code");
            for (student, _) in &created {
                println!("{},{}", student.nickname, student.upload_code);
            }
            eprintln!("imported {} students", created.len());
            Ok(())
        }
        Err(crate::depository::DepositoryError::Roster(lines)) => {
            for line in &lines {
                eprintln!("line {}: {}", line.line, line.message);
            }
            anyhow::bail!("nothing imported: {} bad lines", lines.len())
        }
        Err(other) => Err(other.into()),
    }
}

async fn audit_verify(db: &crate::db::Db) -> anyhow::Result<()> {
    use crate::domain::audit::{GENESIS, verify_chain};
    let (head_id, head_hash) = db.audit_head().await?;
    let mut prev_hash = GENESIS.to_owned();
    let mut after = 0;
    loop {
        let events = db.audit_events(after, 1000).await?;
        if events.is_empty() {
            break;
        }
        prev_hash = verify_chain(&events, after + 1, prev_hash).map_err(|broken| {
            anyhow::anyhow!("audit log broken at event {}: {}", broken.id, broken.reason)
        })?;
        after = events.last().map_or(after, |e| e.id);
    }
    anyhow::ensure!(
        after == head_id && prev_hash == head_hash,
        "audit log broken after event {after}: the head says {head_id} events ending in {head_hash}"
    );
    println!("audit log intact: {head_id} events, head {head_hash}");
    Ok(())
}

async fn keys(db: &crate::db::Db, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { name } => {
            anyhow::ensure!(
                !name.trim().is_empty() && name.len() <= 100,
                "a key name is 1 to 100 characters"
            );
            let key = crate::domain::codes::new_secret();
            let hash = hex::encode(crate::http::auth::digest(&key));
            match db.create_api_key(name.trim(), &hash).await {
                Err(crate::db::DbError::Conflict) => {
                    anyhow::bail!("a live key named {name:?} exists; revoke it first")
                }
                other => other?,
            }
            db.append_audit(&AuditEntry::new(
                "cli",
                "key.created",
                format!("key:{}", name.trim()),
                serde_json::json!({}),
            ))
            .await?;
            println!("{key}");
            eprintln!("Key {name:?} created. It is shown only now: store it safely.");
        }
        KeysCommand::List => {
            println!("name\tcreated_at\tlast_used_at\trevoked_at");
            for key in db.list_api_keys().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    key.name,
                    key.created_at,
                    key.last_used_at.unwrap_or_else(|| "-".into()),
                    key.revoked_at.unwrap_or_else(|| "-".into())
                );
            }
        }
        KeysCommand::Revoke { name } => {
            anyhow::ensure!(
                db.revoke_api_key(&name).await?,
                "no live key named {name:?}"
            );
            println!("revoked {name:?}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_default_parses() {
        let cli = Cli::try_parse_from(["exam-depository", "serve"]).unwrap();
        assert_eq!(cli.config.max_submission_bytes, 3 * 1024 * 1024);
        assert_eq!(cli.config.max_connections, 1024);
        assert_eq!(cli.config.max_uploads_in_flight, 64);
    }
}
