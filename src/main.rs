//! `mp3conv`: runs the system (`mp3conv up`) or just the function host (`mp3conv serve`), and
//! is the client (`mp3conv login`, `mp3conv convert`, ...).

mod cli;
mod client;
mod eventing;
mod keys;
mod migrate;
mod users;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Before any TLS client exists: the host's outbound https, reqwest in the client and the
    // eventing bridge all take the process's crypto provider.
    mp3conv_host::tls::install_crypto_provider();
    let cli = cli::Cli::parse();
    mp3conv_host::telemetry::init(cli.log_format.into());
    cli::run(cli).await
}
