use clap::Parser;
use exam_depository::cli::Cli;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    // A `.env` file is optional; real environment variables win over it.
    let _ = dotenvy::dotenv();
    Cli::parse().run().await
}
