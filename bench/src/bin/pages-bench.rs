//! Video-page links (issue #17): what resolving a page with yt-dlp adds to a link.
//!
//! A local site serves a 30-second clip and an HTML5 page showing it. Interleaved, the same
//! worker converts the direct link to the clip and the page's link (submitted -> done), and
//! yt-dlp reads the page on its own (`yt-dlp -J`, the floor of any resolution): medians of
//! [`RUNS`] each, the page's overhead over the direct link, and how much of it is yt-dlp's.
//!
//! Usage: `pages-bench <mp3conv-worker binary>`, with `MP3CONV_TEST_YTDLP` naming yt-dlp
//! (`eval "$(scripts/services.sh env)"`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mp3conv_bench::median;
use mp3conv_bench::worker::{Worker, cache_dir, generate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const RUNS: usize = 7;

const PAGE: &str = "<!doctype html><html><head><title>A benchmark talk</title></head>\
<body><h1>A benchmark talk</h1><video controls src=\"/clip.mp4\"></video></body></html>";

/// Serves `/clip.mp4` (the clip) and `/talk.html` (the page) on 127.0.0.1: its base URL.
async fn site(clip: Vec<u8>) -> anyhow::Result<String> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let clip = Arc::new(clip);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let clip = Arc::clone(&clip);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buffer = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buffer[..n]),
                    }
                }
                let line = String::from_utf8_lossy(&head);
                let path = line.split_whitespace().nth(1).unwrap_or("/");
                let (kind, body): (&str, &[u8]) = match path {
                    "/clip.mp4" => ("video/mp4", &clip),
                    "/talk.html" => ("text/html; charset=utf-8", PAGE.as_bytes()),
                    _ => ("text/plain", b"not here"),
                };
                let status = if kind == "text/plain" {
                    "404 Not Found"
                } else {
                    "200 OK"
                };
                let answer = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
                if !line.starts_with("HEAD ") {
                    let _ = stream.write_all(body).await;
                }
            });
        }
    });
    Ok(base)
}

/// Submitted -> done for the link `url`.
async fn convert(worker: &Worker, url: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let id = worker.link(url).await?;
    worker.wait_done(&id).await?;
    Ok(started.elapsed())
}

/// yt-dlp reading the page by itself, as the worker asks it to (minus the proxy).
fn bare_ytdlp(ytdlp: &Path, page: &str) -> anyhow::Result<Duration> {
    let home = tempfile::tempdir()?;
    let started = Instant::now();
    let output = Command::new(ytdlp)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", home.path())
        .current_dir(home.path())
        .args(["--ignore-config", "--no-plugin-dirs", "--no-cache-dir"])
        .args([
            "--no-playlist",
            "--flat-playlist",
            "--dump-single-json",
            "--",
        ])
        .arg(page)
        .output()?;
    anyhow::ensure!(output.status.success(), "yt-dlp failed on the page");
    Ok(started.elapsed())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let binary = PathBuf::from(
        std::env::args()
            .nth(1)
            .context("usage: pages-bench <mp3conv-worker>")?,
    );
    let ytdlp = PathBuf::from(
        std::env::var_os("MP3CONV_TEST_YTDLP")
            .context("MP3CONV_TEST_YTDLP names yt-dlp: eval \"$(scripts/services.sh env)\"")?,
    );
    let clip = generate(&cache_dir()?, "thirty-seconds.mp4", 30, "640x360", "1000k")?;
    let base = site(std::fs::read(&clip)?).await?;
    let (direct, page) = (format!("{base}/clip.mp4"), format!("{base}/talk.html"));

    let work = tempfile::tempdir()?;
    let worker = Worker::start_with(
        &binary,
        work.path(),
        1,
        &[
            ("FETCH__ALLOW", "[127.0.0.1/32]".into()),
            ("FETCH__PAGES__YTDLP", ytdlp.display().to_string()),
        ],
    )?;
    // One of each first, unmeasured: files cached, yt-dlp's modules read once.
    convert(&worker, &direct).await?;
    convert(&worker, &page).await?;
    let (mut directs, mut pages, mut bares) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        directs.push(convert(&worker, &direct).await?);
        pages.push(convert(&worker, &page).await?);
        bares.push(bare_ytdlp(&ytdlp, &page)?);
    }
    worker.stop();
    let (direct, page, bare) = (median(&mut directs), median(&mut pages), median(&mut bares));
    let overhead = page.saturating_sub(direct);
    println!(
        "30-second 360p clip on a local site, 1 conversion slot, medians of {RUNS} interleaved runs."
    );
    println!();
    println!("| figure | value | baseline (same run) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| page link: submitted -> MP3 ready | {:.2} s | {:.2} s (direct link to the same clip) | {:.2} |",
        page.as_secs_f64(),
        direct.as_secs_f64(),
        page.as_secs_f64() / direct.as_secs_f64()
    );
    println!(
        "| resolution overhead (page - direct) | {:.2} s | {:.2} s (bare `yt-dlp -J` of the page) | {:.2} |",
        overhead.as_secs_f64(),
        bare.as_secs_f64(),
        overhead.as_secs_f64() / bare.as_secs_f64()
    );
    Ok(())
}
