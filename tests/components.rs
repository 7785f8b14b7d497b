//! The components the tests run are never older than their sources: `common::component` has
//! cargo build them (or find them fresh) once per test process, so `cargo test` after editing a
//! function tests the edited function. Here a gateway source file is made newer than the built
//! gateway, as an edit would, and the next build must produce a new gateway. Freshness is read
//! from what cargo itself recorded: the dep-info file beside each `.wasm` lists every file the
//! component was built from, path dependencies and embedded files (the web app's assets)
//! included.

mod common;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use common::{COMPONENTS, build_components, component};

/// The repository root (the root package's directory).
fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The files cargo built `wasm` from, from the dep-info file beside it (`<name>.d`, a make
/// rule `<artifact>: <source> <source> ...` with spaces in paths escaped as `\ `).
fn sources_of(wasm: &Path) -> Vec<PathBuf> {
    let dep_info = wasm.with_extension("d");
    let text = std::fs::read_to_string(&dep_info)
        .unwrap_or_else(|err| panic!("reading {}: {err}", dep_info.display()));
    let rule = text
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{}:", wasm.display())))
        .unwrap_or_else(|| panic!("{} has no rule for {}", dep_info.display(), wasm.display()));
    let mut sources = Vec::new();
    let mut current = String::new();
    let mut chars = rule.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => current.extend(chars.next()),
            ' ' => {
                if !current.is_empty() {
                    sources.push(PathBuf::from(std::mem::take(&mut current)));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        sources.push(PathBuf::from(current));
    }
    sources
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|metadata| metadata.modified())
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

/// The repository's files `wasm` was built from that changed after it was built.
fn newer_sources(wasm: &Path) -> Vec<PathBuf> {
    let built = modified(wasm);
    sources_of(wasm)
        .into_iter()
        // Registry sources never change in place; the repository's are what people edit.
        .filter(|source| source.starts_with(repository()))
        .filter(|source| modified(source) > built)
        .collect()
}

/// Sets a file's modification time to now, as saving it would, and puts the old one back when
/// dropped, unless the file was written meanwhile (an older time would hide that edit from
/// cargo). The content is never touched.
struct Touched {
    path: PathBuf,
    before: SystemTime,
    now: SystemTime,
}

impl Touched {
    fn now(path: &Path) -> Touched {
        let before = modified(path);
        let now = SystemTime::now();
        set_modified(path, now);
        Touched {
            path: path.to_owned(),
            before,
            now,
        }
    }
}

impl Drop for Touched {
    fn drop(&mut self) {
        if modified(&self.path) == self.now {
            set_modified(&self.path, self.before);
        }
    }
}

fn set_modified(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .append(true)
        .open(path)
        .and_then(|file| file.set_modified(time))
        .unwrap_or_else(|err| panic!("setting the time of {}: {err}", path.display()));
}

/// The tests here change and read the same files' times: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn each_component_is_newer_than_every_file_cargo_built_it_from() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for name in COMPONENTS {
        let wasm = component(name);
        let sources = sources_of(&wasm);
        assert!(
            sources
                .iter()
                .any(|source| source.starts_with(repository())),
            "{name}: the dep-info names none of the repository's files: {sources:?}"
        );
        let newer = newer_sources(&wasm);
        assert!(
            newer.is_empty(),
            "{name}.wasm is older than {newer:?} after the build"
        );
    }
    // A function's path dependencies are tracked like its own files.
    let gateway = sources_of(&component("gateway"));
    let contract = repository().join("contract/src/lib.rs");
    assert!(gateway.contains(&contract), "{gateway:?}");
    // So are the files a component embeds: the web app's assets.
    let web = sources_of(&component("web"));
    let page = repository().join("functions/web/assets/index.html");
    assert!(web.contains(&page), "{web:?}");
}

#[test]
fn a_function_source_changed_after_the_build_is_rebuilt_before_it_is_tested() {
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let wasm = component("gateway");
    let built = modified(&wasm);
    let source = repository().join("functions/gateway/src/lib.rs");
    assert!(sources_of(&wasm).contains(&source));

    let touched = Touched::now(&source);
    assert!(
        newer_sources(&wasm).contains(&source),
        "the edit makes the built gateway stale"
    );
    // What the next test process does first.
    let report = build_components().unwrap_or_else(|failure| panic!("{failure}"));
    assert!(
        modified(&wasm) > built,
        "gateway.wasm was not rebuilt: {report}"
    );
    assert!(
        newer_sources(&wasm).is_empty(),
        "{:?}",
        newer_sources(&wasm)
    );
    drop(touched);
}
