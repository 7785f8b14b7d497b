//! Links to video pages, resolved by the pinned yt-dlp behind the worker's guarded proxy
//! (issue #17), against a local site: no internet.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Backend, TestApp, media, probe_json, spawn_with};
use futures::StreamExt;
use serde_json::Value;
use tokio::net::TcpListener;

/// A site of video pages on 127.0.0.1 that counts the requests for each path, and the bytes
/// of `/long.mp4` it sent.
#[derive(Clone)]
struct Site {
    base: String,
    hits: Arc<Mutex<HashMap<String, usize>>>,
    long_bytes_sent: Arc<AtomicUsize>,
}

impl Site {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
}

/// `/long.mp4`'s length: far more than a reader of its head (yt-dlp looks at what a page's
/// `contentUrl` is) leaves in the sockets' buffers, so a download would show.
const LONG_BYTES: usize = 64 << 20;

/// A body of [`LONG_BYTES`] zeros, counting into `sent` each chunk taken from it.
fn counted_body(sent: Arc<AtomicUsize>) -> axum::body::Body {
    const CHUNK: usize = 64 << 10;
    let chunks = futures::stream::iter(0..LONG_BYTES / CHUNK).map(move |_| {
        sent.fetch_add(CHUNK, Ordering::SeqCst);
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(&[0; CHUNK]))
    });
    axum::body::Body::from_stream(chunks)
}

/// A server on another loopback address (127.0.0.2, which the tests' allow-list does not
/// admit) that counts the connections it accepts: the tests assert it sees none.
async fn private_server() -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.2:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&accepted);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (format!("http://{address}"), accepted)
}

fn html(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], text).into_response()
}

/// A JSON-LD video page, as sites write them for search engines.
fn video_object(base: &str, name: &str, author: &str, duration: &str, media: &str) -> Response {
    video_object_with(
        base,
        name,
        author,
        duration,
        media,
        &format!("{base}/thumbnail.jpg"),
    )
}

/// [`video_object`] with its image at `thumbnail`.
fn video_object_with(
    base: &str,
    name: &str,
    author: &str,
    duration: &str,
    media: &str,
    thumbnail: &str,
) -> Response {
    html(format!(
        r#"<!doctype html><html><head><title>{name} - Example Talks</title>
<script type="application/ld+json">{{"@context": "https://schema.org", "@type": "VideoObject",
"name": "{name}", "description": "A talk.", "uploadDate": "2026-01-01",
"duration": "{duration}", "contentUrl": "{base}{media}", "thumbnailUrl": "{thumbnail}",
"author": {{"@type": "Person", "name": "{author}"}}}}</script>
</head><body><p>{name}</p></body></html>"#
    ))
}

async fn page(
    State((site, private)): State<(Site, String)>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/{path}");
    *site.hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let base = &site.base;
    match path.as_str() {
        "/clip.mp4" => {
            ([(header::CONTENT_TYPE, "video/mp4")], media("mp4-faststart")).into_response()
        }
        "/thumbnail.jpg" => {
            ([(header::CONTENT_TYPE, "image/jpeg")], media("thumbnail.jpg")).into_response()
        }
        // An "image" that is a page: no cover from it, and no failure either.
        "/not-an-image.jpg" => html("<!doctype html><title>Image</title>".into()),
        "/long.mp4" => (
            [(header::CONTENT_TYPE, "video/mp4")],
            counted_body(Arc::clone(&site.long_bytes_sent)),
        )
            .into_response(),
        // A plain page with an HTML5 <video>: no uploader, no duration.
        "/talk.html" => html(
            r#"<!doctype html><html><head><title>Release v1.2 &amp; more</title></head>
<body><h1>Our talk</h1><video controls src="/clip.mp4"></video></body></html>"#
                .into(),
        ),
        "/keynote.html" => video_object(base, "Keynote: Audio à la Rust", "Ada Speaker", "PT3S", "/clip.mp4"),
        "/long.html" => video_object(base, "All day", "Someone", "PT10H", "/long.mp4"),
        "/text-thumbnail.html" => video_object_with(
            base,
            "Odd image",
            "Someone",
            "PT3S",
            "/clip.mp4",
            &format!("{base}/not-an-image.jpg"),
        ),
        // Its image on the private server: the cover comes from the video instead.
        "/private-thumbnail.html" => video_object_with(
            base,
            "Private image",
            "Someone",
            "PT3S",
            "/clip.mp4",
            &format!("{private}/thumbnail.jpg"),
        ),
        // Media only as a stream of segments: yt-dlp sees HLS, which the worker does not fetch.
        "/hls.html" => html(
            r#"<!doctype html><html><head><title>Live-ish</title></head>
<body><video src="/stream.m3u8"></video></body></html>"#
                .into(),
        ),
        "/stream.m3u8" => (
            [(header::CONTENT_TYPE, "application/vnd.apple.mpegurl")],
            "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\n/clip.mp4\n#EXT-X-ENDLIST\n",
        )
            .into_response(),
        // A short link to a denied site.
        "/to-blocked" => (
            StatusCode::FOUND,
            [(header::LOCATION, "http://www.blocked.test/watch?v=1")],
        )
            .into_response(),
        "/empty.html" => html("<!doctype html><html><head><title>Nothing</title></head><body>Text only.</body></html>".into()),
        "/two.html" => html(
            r#"<!doctype html><html><head><title>Two</title></head><body>
<video src="/clip.mp4"></video><video src="/long.mp4"></video></body></html>"#
                .into(),
        ),
        // yt-dlp follows a refresh to the private server: its proxy must refuse it.
        "/refresh.html" => html(format!(
            r#"<!doctype html><html><head><meta http-equiv="refresh" content="0; url={private}/inside.html">
<title>Moved</title></head><body></body></html>"#
        )),
        // A page whose media is on the private server: the worker's download must refuse it.
        "/private-media.html" => html(format!(
            r#"<!doctype html><html><head><title>Private</title></head>
<body><video src="{private}/clip.mp4"></video></body></html>"#
        )),
        // A page for the worker, a redirect to the private server for a browser's
        // User-Agent (yt-dlp's): cloaking, which only the proxy sees.
        "/cloaked.html" => {
            let agent = headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if agent.starts_with("mp3conv-worker") {
                html("<!doctype html><title>Harmless</title>".into())
            } else {
                (StatusCode::FOUND, [(header::LOCATION, format!("{private}/clip.mp4"))])
                    .into_response()
            }
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn site(private: &str) -> Site {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let site = Site {
        base: format!("http://{}", listener.local_addr().unwrap()),
        hits: Arc::default(),
        long_bytes_sent: Arc::default(),
    };
    let app = Router::new()
        .route("/{*path}", get(page))
        .with_state((site.clone(), private.to_owned()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    site
}

/// Submits `url` for `owner`; returns the settled job.
async fn convert(app: &TestApp, owner: &str, url: &str) -> Value {
    let response = app.link(owner, url).await;
    assert_eq!(response.status(), 202, "{url}");
    let job: Value = response.json().await.unwrap();
    app.settled(owner, job["id"].as_str().unwrap()).await
}

/// The size of the MP3's cover picture, if it has one.
fn cover_size(mp3: &[u8]) -> Option<(u64, u64)> {
    let info = probe_json(mp3);
    let streams = info["streams"].as_array().unwrap();
    let picture = streams.iter().find(|s| s["codec_type"] == "video")?;
    Some((
        picture["width"].as_u64().unwrap(),
        picture["height"].as_u64().unwrap(),
    ))
}

/// The count of `name` in the worker's metrics.
async fn counter(app: &TestApp, name: &str) -> u64 {
    let metrics = app.metrics().await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {metrics}"))
}

const RESOLUTIONS: &str = "mp3conv_worker_page_resolutions_total ";

/// A page link converts with the page's title (and uploader, where the page names one) in the
/// job and the MP3's tags; a direct link next to it runs no yt-dlp.
async fn a_page_converts_under_its_title(backend: Backend) {
    let (private, _) = private_server().await;
    let site = site(&private).await;
    let app = spawn_with(backend, |_| {}).await;

    let direct = convert(&app, "ann", &site.url("/clip.mp4")).await;
    assert_eq!(direct["status"], "done", "{direct}");
    assert!(direct["source"].get("page").is_none(), "{direct}");
    assert_eq!(
        counter(&app, RESOLUTIONS).await,
        0,
        "a direct link ran yt-dlp"
    );

    let talk = convert(&app, "ann", &site.url("/talk.html")).await;
    assert_eq!(talk["status"], "done", "{talk}");
    // The page's own title, without the embed's " (1)" numbering; the ".2" kept whole.
    assert_eq!(
        talk["source"]["page"]["title"], "Release v1.2 & more",
        "{talk}"
    );
    assert!(talk["source"]["page"].get("duration").is_none(), "{talk}");
    let mp3 = app.mp3("ann", talk["id"].as_str().unwrap()).await;
    let tags = &probe_json(&mp3)["format"]["tags"];
    assert_eq!(tags["title"], "Release v1.2 & more", "{tags}");
    let seconds: f64 = probe_json(&mp3)["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((seconds - talk["audio"]["duration"].as_f64().unwrap()).abs() < 0.1);

    let keynote = convert(&app, "ann", &site.url("/keynote.html")).await;
    assert_eq!(keynote["status"], "done", "{keynote}");
    let page = &keynote["source"]["page"];
    assert_eq!(page["title"], "Keynote: Audio à la Rust", "{keynote}");
    assert_eq!(page["uploader"], "Ada Speaker", "{keynote}");
    assert_eq!(page["duration"], 3.0, "{keynote}");
    let mp3 = app.mp3("ann", keynote["id"].as_str().unwrap()).await;
    let tags = &probe_json(&mp3)["format"]["tags"];
    assert_eq!(tags["title"], "Keynote: Audio à la Rust", "{tags}");
    assert_eq!(tags["artist"], "Ada Speaker", "{tags}");
    // The page's 1280x720 image is the cover, fitted in 600x600 (not a 160x120 frame).
    assert_eq!(page["thumbnail"], site.url("/thumbnail.jpg"), "{keynote}");
    assert_eq!(cover_size(&mp3), Some((600, 338)));

    // An image that is not one leaves the cover to the video, and the job done.
    let odd = convert(&app, "ann", &site.url("/text-thumbnail.html")).await;
    assert_eq!(odd["status"], "done", "{odd}");
    let mp3 = app.mp3("ann", odd["id"].as_str().unwrap()).await;
    assert_eq!(cover_size(&mp3), Some((160, 120)));

    assert_eq!(counter(&app, RESOLUTIONS).await, 3);
    app.stop().await;
}

/// Pages that are not one video, or too long, fail with their codes and in words, before any
/// media is downloaded.
async fn pages_that_are_not_one_video_fail_in_words(backend: Backend) {
    let (private, _) = private_server().await;
    let site = site(&private).await;
    let app = spawn_with(backend, |_| {}).await;
    let cases = [
        ("/empty.html", "link_not_media", "no video or audio"),
        ("/two.html", "link_playlist", "playlist of 2 videos"),
        (
            "/long.html",
            "link_too_long",
            "lasts 36000s, longer than the limit of 21600s",
        ),
        ("/gone.html", "link_not_found", "404"),
        ("/hls.html", "link_unsupported", "stream of segments"),
    ];
    for (path, code, words) in cases {
        let job = convert(&app, "bo", &site.url(path)).await;
        assert_eq!(job["status"], "failed", "{path}: {job}");
        assert_eq!(job["error"]["code"], code, "{path}: {job}");
        let message = job["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{path}: {message}");
        // A failure of the page, not of the network: tried once, not retried.
        assert_eq!(job["attempts"], 1, "{path}: {job}");
    }
    let sent = site.long_bytes_sent.load(Ordering::SeqCst);
    assert!(
        sent < LONG_BYTES / 4,
        "{sent} bytes of a media too long were sent"
    );
    assert_eq!(site.hits("/clip.mp4"), 0, "a playlist's media was fetched");
    app.stop().await;
}

/// Wherever a page leads (a refresh, a redirect only yt-dlp is shown, media on a private
/// address), no connection reaches an address the links' rules refuse.
async fn pages_cannot_lead_to_private_addresses(backend: Backend) {
    let (private, accepted) = private_server().await;
    let site = site(&private).await;
    let app = spawn_with(backend, |_| {}).await;
    for path in ["/refresh.html", "/cloaked.html", "/private-media.html"] {
        let job = convert(&app, "cy", &site.url(path)).await;
        assert_eq!(job["status"], "failed", "{path}: {job}");
        assert_eq!(job["error"]["code"], "link_forbidden", "{path}: {job}");
        let message = job["error"]["message"].as_str().unwrap();
        assert!(message.contains("127.0.0.2"), "{path}: {message}");
    }
    assert_eq!(
        site.hits("/cloaked.html"),
        2,
        "the worker and yt-dlp each read it once"
    );
    // An image on the private server is not fetched; the job converts with a frame as cover.
    let job = convert(&app, "cy", &site.url("/private-thumbnail.html")).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        0,
        "the private server was reached"
    );
    app.stop().await;
}

/// The operator's site lists refuse a link when it is submitted.
async fn the_operators_site_lists_refuse_at_once(backend: Backend) {
    let app = spawn_with(backend, |config| {
        config.fetch.pages.deny_sites = vec!["blocked.test".into()];
    })
    .await;
    for url in [
        "https://blocked.test/watch?v=1",
        "https://www.blocked.test/a.mp4",
    ] {
        let response = app.link("di", url).await;
        assert_eq!(response.status(), 400, "{url}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "link_site_not_allowed", "{error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("blocked.test"),
            "{error}"
        );
    }
    // A link that leads to a denied site gets nowhere near it.
    let (private, _) = private_server().await;
    let site = site(&private).await;
    let job = convert(&app, "eve", &site.url("/to-blocked")).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "link_forbidden", "{job}");
    let message = job["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("www.blocked.test are not accepted"),
        "{message}"
    );
    let list = app.jobs("di").await;
    assert_eq!(list["jobs"], serde_json::json!([]), "{list}");
    app.stop().await;
}

on_both_backends!(
    a_page_converts_under_its_title,
    pages_that_are_not_one_video_fail_in_words,
    pages_cannot_lead_to_private_addresses,
    the_operators_site_lists_refuse_at_once,
);
