//! Embeds every file under `assets/` into the component: writes `$OUT_DIR/assets.rs`, a static
//! table of each file's path, content type, bytes (`include_bytes!`), its gzip and brotli
//! variants (only where one is below 90% of the original) and a strong ETag per variant.
//! Compression happens here, once per build, never per request.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// A variant is kept only when it is smaller than this share of the original (in percent).
const KEEP_BELOW_PERCENT: usize = 90;

fn main() {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"));
    let assets = manifest_dir.join("assets");
    // A directory here makes cargo look at everything under it (new files included).
    println!("cargo:rerun-if-changed={}", assets.display());

    let mut files = Vec::new();
    walk(&assets, &mut files);
    // Sorted by URL path, as `assets::find` searches them.
    let mut files: Vec<(String, PathBuf)> = files
        .into_iter()
        .map(|file| (relative_path(&assets, &file), file))
        .collect();
    files.sort();
    let mut table = String::from(
        "/// Every embedded asset, sorted by path (written by `build.rs`).\n\
         pub static ASSETS: &[Asset] = &[\n",
    );
    let mut paths = Vec::new();
    for (index, (path, file)) in files.into_iter().enumerate() {
        println!("cargo:rerun-if-changed={}", file.display());
        let bytes =
            std::fs::read(&file).unwrap_or_else(|err| panic!("reading {}: {err}", file.display()));
        let content_type = content_type(&path).unwrap_or_else(|| {
            panic!(
                "functions/web/assets/{path}: no content type for its extension; add it to \
                 `content_type` in functions/web/build.rs"
            )
        });
        let gzip = keep_if_smaller(&bytes, gzip(&bytes));
        let brotli = keep_if_smaller(&bytes, brotli(&bytes));
        writeln!(table, "    Asset {{").unwrap();
        writeln!(table, "        path: {path:?},").unwrap();
        writeln!(table, "        content_type: {content_type:?},").unwrap();
        writeln!(table, "        identity: {},", variant(None, &file, &bytes)).unwrap();
        for (encoding, field, extension, compressed) in
            [("gzip", "gzip", "gz", gzip), ("br", "brotli", "br", brotli)]
        {
            match compressed {
                Some(compressed) => {
                    let stored = out_dir.join(format!("asset-{index}.{extension}"));
                    std::fs::write(&stored, &compressed)
                        .unwrap_or_else(|err| panic!("writing {}: {err}", stored.display()));
                    let variant = variant(Some(encoding), &stored, &compressed);
                    writeln!(table, "        {field}: Some({variant}),").unwrap();
                }
                None => writeln!(table, "        {field}: None,").unwrap(),
            }
        }
        writeln!(table, "    }},").unwrap();
        paths.push(path);
    }
    table.push_str("];\n");
    assert!(
        paths.iter().any(|path| path == "index.html"),
        "functions/web/assets/index.html is missing: every page of the app is that file"
    );
    let generated = out_dir.join("assets.rs");
    std::fs::write(&generated, table)
        .unwrap_or_else(|err| panic!("writing {}: {err}", generated.display()));
}

/// Every file under `dir`, recursively; names starting with `.` are left out.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|err| panic!("reading {}: {err}", dir.display()));
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// `file`'s path below `assets`, `/`-separated: what follows `/assets/` in its URL. Only
/// characters a URL carries as they are, so a request path names a file without decoding.
fn relative_path(assets: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(assets).expect("walked from assets");
    let parts: Vec<String> = relative
        .components()
        .map(|part| part.as_os_str().to_string_lossy().into_owned())
        .collect();
    let path = parts.join("/");
    assert!(
        path.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'-' | b'_')),
        "functions/web/assets/{path}: asset names use only letters, digits, `.`, `-` and `_`"
    );
    path
}

/// The `Content-Type` of a file by its extension; `None` for one not listed.
fn content_type(path: &str) -> Option<&'static str> {
    let extension = path.rsplit_once('.')?.1.to_ascii_lowercase();
    Some(match extension.as_str() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml; charset=utf-8",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json; charset=utf-8",
        "webmanifest" => "application/manifest+json; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        _ => return None,
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).expect("writing to memory");
    encoder.finish().expect("writing to memory")
}

fn brotli(bytes: &[u8]) -> Vec<u8> {
    let mut compressed = Vec::new();
    {
        // Quality 11 (the best), window 22 (brotli's default).
        let mut writer = brotli::CompressorWriter::new(&mut compressed, 4096, 11, 22);
        writer.write_all(bytes).expect("writing to memory");
    }
    compressed
}

fn keep_if_smaller(original: &[u8], compressed: Vec<u8>) -> Option<Vec<u8>> {
    (compressed.len() * 100 < original.len() * KEEP_BELOW_PERCENT).then_some(compressed)
}

/// A `Variant { .. }` expression: the bytes included from `file`, with their ETag.
fn variant(encoding: Option<&str>, file: &Path, bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let etag: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    let file = file
        .to_str()
        .unwrap_or_else(|| panic!("{} is not UTF-8", file.display()));
    format!(
        "Variant {{ encoding: {encoding:?}, bytes: include_bytes!({file:?}), etag: \"\\\"{etag}\\\"\" }}"
    )
}
