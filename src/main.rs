//! `mp3conv`: runs the system (`mp3conv up`) or just the function host (`mp3conv serve`).

mod cli;
mod eventing;
mod keys;
mod migrate;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    mp3conv_host::telemetry::init(cli.log_format.into());
    match cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("mp3conv: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
