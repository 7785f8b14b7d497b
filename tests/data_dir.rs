//! The data directory holds password hashes, webhook secrets, the signing key, jobs and users'
//! files: after a job in `mp3conv up`, nothing in it is open to the group or others.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::api::System;

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    found.push(dir.to_owned());
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if std::fs::symlink_metadata(&path).unwrap().is_dir() {
            walk(&path, found);
        } else {
            found.push(path);
        }
    }
}

#[tokio::test]
async fn the_data_directory_is_private_to_its_user() {
    let system = System::embedded(&[]);
    let token = system.user("private").await;
    let job = system.upload_clip(&token, None).await;
    let id = job["id"].as_str().unwrap();
    assert_eq!(system.settled(&token, id).await["status"], "done");

    let data = system.host.data_dir();
    let mut paths = Vec::new();
    walk(&data, &mut paths);
    let names: Vec<String> = paths
        .iter()
        .map(|p| p.strip_prefix(&data).unwrap().display().to_string())
        .collect();
    // What must be covered is there: the users database with its WAL, keys, jobs, blobs.
    for expected in [
        "sqlite_db.db",
        "sqlite_db.db-wal",
        "keys",
        "jobs.sqlite",
        "blobs",
    ] {
        assert!(
            names.iter().any(|name| name.starts_with(expected)),
            "{expected} missing from {names:?}"
        );
    }
    let open: Vec<String> = paths
        .iter()
        .filter_map(|path| {
            let mode = std::fs::symlink_metadata(path)
                .unwrap()
                .permissions()
                .mode();
            (mode & 0o077 != 0).then(|| format!("{} {:o}", path.display(), mode & 0o777))
        })
        .collect();
    assert!(open.is_empty(), "readable by others: {open:#?}");
}
