//! One request's answer, decided in plain Rust: which page or file, in which encoding, whether
//! the client's copy is still current (304), and the headers every answer carries.
//!
//! | path | answer |
//! |---|---|
//! | [`PAGES`]: `/`, `/signin`, `/register`, `/jobs`, `/notifications`, `/settings` | `index.html` (the app routes in the browser) |
//! | `/` asking for JSON over HTML (`Accept`) | the service description |
//! | `/assets/<path>` | that file; 404 `not_found` for none |
//! | anything else | 404 `not_found` |
//!
//! GET and HEAD only (405 `method_not_allowed`, `Allow: GET, HEAD`); the query string plays no
//! part. Files go out with `Cache-Control: no-cache` and a strong ETag per encoding: a browser
//! revalidates each time (a 304 costs a round trip, not the file), so after an upgrade no page
//! runs stale scripts.

use mp3conv_kit::reply::Reply;

use crate::assets::{self, Asset};
use crate::negotiate;

/// The app's pages: every one is `index.html`.
pub const PAGES: [&str; 6] = [
    "/",
    "/signin",
    "/register",
    "/jobs",
    "/notifications",
    "/settings",
];

/// Where the files are.
pub const ASSETS_PREFIX: &str = "/assets/";

/// What every answer carries: the page may load only this origin's scripts, styles, images
/// and media (plus `data:`/`blob:` images and `blob:` media it makes itself), talk only to
/// this origin, and never be framed.
pub const SECURITY_HEADERS: [(&str, &str); 7] = [
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
         media-src 'self' blob:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
         worker-src 'none'; object-src 'none'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=()",
    ),
];

/// The answer to `method` on `path_with_query` with `headers` (names lower-case; a header sent
/// several times appears several times).
///
/// A HEAD is answered as its GET, body included: WASI HTTP holds a response body to its
/// `Content-Length`, so the component writes it and the HTTP server leaves it off the wire
/// (hyper, under `mp3conv up` and Spin alike, sends a HEAD's headers only).
pub fn respond(method: &str, path_with_query: &str, headers: &[(String, String)]) -> Reply {
    let reply = answer(method, path_with_query, headers);
    let mut reply = SECURITY_HEADERS.iter().fold(reply, |reply, (name, value)| {
        reply.with_header(name, *value)
    });
    if reply.status != 304 {
        let length = reply.body.len().to_string();
        reply = reply.with_header("content-length", length);
    }
    reply
}

fn answer(method: &str, path_with_query: &str, headers: &[(String, String)]) -> Reply {
    if !matches!(method, "GET" | "HEAD") {
        return Reply::error(405, "method_not_allowed", "use GET, HEAD")
            .with_header("allow", "GET, HEAD");
    }
    let header = |name: &str| joined(headers, name);
    let path = path_with_query
        .split_once('?')
        .map_or(path_with_query, |(path, _)| path);
    if path == "/" {
        // The same URL answers in two shapes: caches must keep them apart.
        let vary = "Accept, Accept-Encoding";
        if negotiate::prefers_json(header("accept").as_deref()) {
            return description()
                .with_header("cache-control", "no-cache")
                .with_header("vary", vary);
        }
        return file(assets::index(), vary, headers);
    }
    // `/jobs/` is `/jobs`, as the router sends both here.
    let page = path.strip_suffix('/').unwrap_or(path);
    if PAGES.contains(&page) {
        return file(assets::index(), "Accept-Encoding", headers);
    }
    match path.strip_prefix(ASSETS_PREFIX).and_then(assets::find) {
        Some(asset) => file(asset, "Accept-Encoding", headers),
        None if path.starts_with(ASSETS_PREFIX) => Reply::error(404, "not_found", "no such file"),
        None => Reply::error(404, "not_found", "no such page"),
    }
}

/// `asset` in the encoding the client takes best, or 304 when its copy of that encoding is
/// current.
fn file(asset: &Asset, vary: &str, headers: &[(String, String)]) -> Reply {
    let variant = negotiate::variant(asset, joined(headers, "accept-encoding").as_deref());
    let validators = |reply: Reply| {
        reply
            .with_header("etag", variant.etag)
            .with_header("cache-control", "no-cache")
            .with_header("vary", vary)
    };
    if mp3conv_contract::http::none_match(joined(headers, "if-none-match").as_deref(), variant.etag)
    {
        return validators(Reply::empty(304));
    }
    let reply = validators(Reply::bytes(200, asset.content_type, variant.bytes));
    match variant.encoding {
        Some(encoding) => reply.with_header("content-encoding", encoding),
        None => reply,
    }
}

/// `GET /` as JSON: what this service is and where its API is described.
fn description() -> Reply {
    Reply::json(
        200,
        &serde_json::json!({
            "service": "mp3conv",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Turns videos into MP3 files.",
            "api": "/openapi.yaml",
        }),
    )
}

/// Every value of the header `name`, joined by commas (as one list); `None` without one.
fn joined(headers: &[(String, String)], name: &str) -> Option<String> {
    let values: Vec<&str> = headers
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::Value;

    fn get(path: &str, headers: &[(&str, &str)]) -> Reply {
        request("GET", path, headers)
    }

    fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        respond(method, path, &headers)
    }

    fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
        let mut values = reply.headers.iter().filter(|(n, _)| n == name);
        let value = values.next().map(|(_, v)| v.as_str());
        assert!(values.next().is_none(), "{name} is sent once");
        value
    }

    fn json(reply: &Reply) -> Value {
        serde_json::from_slice(&reply.body).unwrap()
    }

    /// An embedded asset that has both compressed variants (the placeholder or real scripts
    /// are all large enough to compress).
    fn compressible() -> &'static Asset {
        assets::ASSETS
            .iter()
            .find(|asset| asset.brotli.is_some() && asset.gzip.is_some())
            .expect("an asset worth compressing")
    }

    #[test]
    fn every_page_is_the_index() {
        let index = assets::index();
        for path in PAGES
            .iter()
            .copied()
            .chain(["/jobs?x=1", "/settings/", "/?q=1"])
        {
            let reply = get(path, &[]);
            assert_eq!(reply.status, 200, "{path}");
            assert_eq!(reply.body, index.identity.bytes, "{path}");
            assert_eq!(
                header(&reply, "content-type"),
                Some("text/html; charset=utf-8")
            );
            assert_eq!(header(&reply, "etag"), Some(index.identity.etag));
        }
        assert_eq!(
            header(&get("/", &[]), "vary"),
            Some("Accept, Accept-Encoding")
        );
        assert_eq!(header(&get("/jobs", &[]), "vary"), Some("Accept-Encoding"));
    }

    #[test]
    fn assets_by_path_and_unknown_ones_404() {
        for asset in assets::ASSETS {
            let reply = get(&format!("/assets/{}?v=2", asset.path), &[]);
            assert_eq!(reply.status, 200, "{}", asset.path);
            assert_eq!(reply.body, asset.identity.bytes);
            assert_eq!(header(&reply, "content-type"), Some(asset.content_type));
            assert_eq!(header(&reply, "content-encoding"), None);
        }
        assert_eq!(
            header(&get("/assets/index.html", &[]), "content-type"),
            Some("text/html; charset=utf-8")
        );
        for path in [
            "/assets/nope",
            "/assets/",
            "/assets",
            "/assets/../Cargo.toml",
            "/assets//index.html",
            "/nope",
            "/jobs/1",
            "/signin.html",
        ] {
            let reply = get(path, &[]);
            assert_eq!(reply.status, 404, "{path}");
            assert_eq!(json(&reply)["error"]["code"], "not_found", "{path}");
            assert_eq!(header(&reply, "content-type"), Some("application/json"));
        }
    }

    #[test]
    fn root_answers_json_to_who_prefers_it() {
        let reply = get("/", &[("accept", "application/json")]);
        assert_eq!(reply.status, 200);
        assert_eq!(header(&reply, "content-type"), Some("application/json"));
        assert_eq!(
            json(&reply),
            serde_json::json!({
                "service": "mp3conv",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Turns videos into MP3 files.",
                "api": "/openapi.yaml",
            })
        );
        assert_eq!(header(&reply, "vary"), Some("Accept, Accept-Encoding"));
        for accept in ["*/*", "text/html,*/*;q=0.8", "application/json, text/html"] {
            let reply = get("/", &[("accept", accept)]);
            assert_eq!(
                header(&reply, "content-type"),
                Some("text/html; charset=utf-8"),
                "{accept}"
            );
        }
        let page = get("/jobs", &[("accept", "application/json")]);
        assert_eq!(
            header(&page, "content-type"),
            Some("text/html; charset=utf-8"),
            "only / has a JSON shape"
        );
    }

    #[test]
    fn compressed_variants_with_their_own_etags() {
        let asset = compressible();
        let path = format!("/assets/{}", asset.path);
        for (accept, variant) in [
            ("br, gzip", asset.brotli.as_ref().unwrap()),
            ("gzip", asset.gzip.as_ref().unwrap()),
            ("br;q=0, gzip;q=0", &asset.identity),
        ] {
            let reply = get(&path, &[("accept-encoding", accept)]);
            assert_eq!(reply.body, variant.bytes, "{accept}");
            assert_eq!(header(&reply, "content-encoding"), variant.encoding);
            assert_eq!(header(&reply, "etag"), Some(variant.etag));
            assert_eq!(header(&reply, "vary"), Some("Accept-Encoding"));
            assert_eq!(
                header(&reply, "content-length"),
                Some(variant.bytes.len().to_string().as_str())
            );
        }
        let etags = [
            asset.identity.etag,
            asset.gzip.as_ref().unwrap().etag,
            asset.brotli.as_ref().unwrap().etag,
        ];
        assert!(etags[0] != etags[1] && etags[1] != etags[2] && etags[0] != etags[2]);
        for etag in etags {
            assert!(
                etag.len() == 34 && etag.starts_with('"') && etag.ends_with('"'),
                "{etag}"
            );
        }
        let several_lines = get(
            &path,
            &[("accept-encoding", "deflate"), ("accept-encoding", "gzip")],
        );
        assert_eq!(header(&several_lines, "content-encoding"), Some("gzip"));
    }

    #[test]
    fn current_copies_get_304_per_variant() {
        let asset = compressible();
        let path = format!("/assets/{}", asset.path);
        let brotli = asset.brotli.as_ref().unwrap().etag;
        let not_modified = get(
            &path,
            &[
                ("accept-encoding", "br"),
                ("if-none-match", &format!("\"old\", W/{brotli}")),
            ],
        );
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.body.is_empty());
        assert_eq!(header(&not_modified, "etag"), Some(brotli));
        assert_eq!(header(&not_modified, "cache-control"), Some("no-cache"));
        assert_eq!(header(&not_modified, "vary"), Some("Accept-Encoding"));
        assert_eq!(header(&not_modified, "content-length"), None);
        assert_eq!(
            header(&not_modified, "x-content-type-options"),
            Some("nosniff")
        );
        // The brotli tag does not validate the gzip copy.
        let other_encoding = get(
            &path,
            &[("accept-encoding", "gzip"), ("if-none-match", brotli)],
        );
        assert_eq!(other_encoding.status, 200);
        let any = get(&path, &[("if-none-match", "*")]);
        assert_eq!(any.status, 304);
        let index = assets::index().identity.etag;
        assert_eq!(get("/settings", &[("if-none-match", index)]).status, 304);
    }

    #[test]
    fn head_is_get_and_other_methods_405() {
        for path in ["/", "/assets/index.html", "/assets/nope"] {
            let get = request("GET", path, &[("accept-encoding", "br")]);
            let head = request("HEAD", path, &[("accept-encoding", "br")]);
            assert_eq!(head, get, "{path}");
        }
        for method in ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "get"] {
            for path in ["/", "/assets/index.html", "/nope"] {
                let reply = request(method, path, &[]);
                assert_eq!(reply.status, 405, "{method} {path}");
                assert_eq!(json(&reply)["error"]["code"], "method_not_allowed");
                assert_eq!(header(&reply, "allow"), Some("GET, HEAD"));
            }
        }
    }

    #[test]
    fn every_answer_carries_the_security_headers_and_its_length() {
        let asset = compressible();
        let path = format!("/assets/{}", asset.path);
        for reply in [
            get("/", &[]),
            get("/", &[("accept", "application/json")]),
            get(&path, &[("accept-encoding", "br")]),
            get("/assets/nope", &[]),
            request("POST", "/", &[]),
            get(&path, &[("if-none-match", "*")]),
        ] {
            for (name, value) in SECURITY_HEADERS {
                assert_eq!(header(&reply, name), Some(value), "{name}: {reply:?}");
            }
            if reply.status != 304 {
                assert_eq!(
                    header(&reply, "content-length"),
                    Some(reply.body.len().to_string().as_str())
                );
            }
        }
        assert!(SECURITY_HEADERS[0].1.contains("frame-ancestors 'none'"));
        assert!(!SECURITY_HEADERS[0].1.contains("  "));
    }
}
