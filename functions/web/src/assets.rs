//! The app's files, embedded at build time by `build.rs` from `functions/web/assets/`: each
//! with its content type, its bytes, and the gzip and brotli variants that were worth keeping,
//! every variant with its own strong ETag.

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Its path below `/assets/` (`app.js`, `icons/x.svg`).
    pub path: &'static str,
    /// `Content-Type`, with `charset=utf-8` for text.
    pub content_type: &'static str,
    /// The file as it is.
    pub identity: Variant,
    /// Gzip (best compression), when below 90% of the file.
    pub gzip: Option<Variant>,
    /// Brotli (quality 11), when below 90% of the file.
    pub brotli: Option<Variant>,
}

/// One encoding of an asset.
#[derive(Debug)]
pub struct Variant {
    /// Its `Content-Encoding` (`gzip`, `br`); `None` for the file as it is.
    pub encoding: Option<&'static str>,
    pub bytes: &'static [u8],
    /// A strong ETag: the first 16 bytes of these bytes' SHA-256, hex, quoted.
    pub etag: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// The asset at `path` (below `/assets/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS
        .binary_search_by(|asset| asset.path.cmp(path))
        .ok()
        .map(|index| &ASSETS[index])
}

/// The page every route of the app answers with: the app routes in the browser.
pub fn index() -> &'static Asset {
    find("index.html").expect("build.rs requires index.html")
}
