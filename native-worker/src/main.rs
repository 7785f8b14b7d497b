//! `mp3conv-worker`: the native worker as its own process. Settings come from
//! `MP3CONV_WORKER__...` environment variables (see `native_worker::config`); logs are JSON when
//! `MP3CONV_LOG_FORMAT=json`, and `RUST_LOG` filters them.

use anyhow::Context;
use native_worker::{Config, Worker};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // What the worker writes (blobs, jobs.sqlite, conversion files) is this user's alone.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("MP3CONV_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().init();
    } else {
        builder.init();
    }

    let config = Config::from_env().context("loading the configuration")?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let address = listener.local_addr().context("reading the bound address")?;
    let worker = Worker::build(config).await.context("starting the worker")?;
    // Tests and supervisors read the bound address from this line.
    println!("mp3conv-worker listening on http://{address}");
    worker
        .run_until_stopped(listener, shutdown_signal())
        .await
        .context("running the worker")
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested");
}
