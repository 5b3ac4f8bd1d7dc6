//! The command line: `serve`, `migrate`, `errors`, `sweep`.

use crate::config::Config;
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
            Command::Sweep => {
                let db = server::open_database(&config).await?;
                let (store, _) =
                    server::open_store(&config, &config.public_url(config.port)).await?;
                let depository =
                    crate::depository::Depository::new(db, store, server::rules(&config));
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }
}
