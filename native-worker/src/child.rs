//! Child processes (ffmpeg, ffprobe, yt-dlp) that die with the worker, within resource limits.
//!
//! A worker killed with SIGKILL runs no cleanup: without help its ffmpeg would convert on, and
//! keep its temporary directory, after nobody wants the result. So every child asks the kernel
//! to SIGKILL it when its parent goes (`PR_SET_PDEATHSIG`), then checks that the parent did not
//! go before it asked.
//!
//! The kernel sends that signal when the *thread* that forked the child exits, not the
//! process. A child forked from a tokio thread that later exits (blocking-pool threads do after
//! an idle spell, and so does a runtime shut down by a test) would be killed in the middle of a
//! healthy conversion. So every child is forked from one dedicated thread that lives as long as
//! the process and does nothing else.

use std::io;
use std::sync::OnceLock;
use std::sync::mpsc;

use tokio::process::{Child, Command};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A child to start, the runtime that will drive it and where to send it.
struct Request {
    command: Command,
    runtime: Handle,
    reply: oneshot::Sender<io::Result<Child>>,
}

/// The spawner thread's inbox, started on first use.
fn spawner() -> io::Result<&'static mpsc::Sender<Request>> {
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    if let Some(sender) = SPAWNER.get() {
        return Ok(sender);
    }
    let (sender, inbox) = mpsc::channel::<Request>();
    std::thread::Builder::new()
        .name("mp3conv-spawner".into())
        .spawn(move || {
            for mut request in inbox {
                // The child's pipes and exit are driven by the runtime of the caller.
                let _entered = request.runtime.enter();
                let _ = request.reply.send(request.command.spawn());
            }
        })?;
    // Two first callers at once: one thread's sender wins, the other thread ends with its inbox.
    Ok(SPAWNER.get_or_init(|| sender))
}

/// Starts `command` as a child that the kernel kills when this process dies.
pub async fn spawn(mut command: Command) -> io::Result<Child> {
    die_with_parent(&mut command);
    let (reply, answer) = oneshot::channel();
    spawner()?
        .send(Request {
            command,
            runtime: Handle::current(),
            reply,
        })
        .map_err(|_| io::Error::other("the process spawner thread is gone"))?;
    answer
        .await
        .map_err(|_| io::Error::other("the process spawner thread is gone"))?
}

/// Arms `PR_SET_PDEATHSIG` (SIGKILL) in the child between fork and exec.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs in the forked child before exec. It only calls `prctl` and
    // `getppid`, which are async-signal-safe, and builds its errors without allocating.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            // Reparented already: the worker died before the signal was armed.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// Resource limits a child runs under, soft and hard alike (it cannot raise them). A child
/// never dumps core: a crash on hostile input would otherwise write up to its address space
/// to disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// CPU seconds (`RLIMIT_CPU`).
    pub cpu_seconds: Option<u64>,
    /// Bytes of address space (`RLIMIT_AS`): allocations past it fail.
    pub address_space: Option<u64>,
    /// Bytes of the largest file it may write (`RLIMIT_FSIZE`).
    pub file_bytes: Option<u64>,
}

/// Sets `limits` in the child between fork and exec.
#[allow(unsafe_code)]
pub fn limit(command: &mut Command, limits: Limits) {
    let wanted = [
        (libc::RLIMIT_CPU, limits.cpu_seconds),
        (libc::RLIMIT_AS, limits.address_space),
        (libc::RLIMIT_FSIZE, limits.file_bytes),
        (libc::RLIMIT_CORE, Some(0)),
    ];
    // SAFETY: the closure runs in the forked child before exec and only calls `setrlimit`,
    // which is async-signal-safe; it allocates nothing (the array is moved in, by value).
    unsafe {
        command.pre_exec(move || {
            for (resource, value) in wanted {
                let Some(value) = value else { continue };
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn children_run_and_report_their_exit() {
        let mut command = Command::new("sh");
        command.args(["-c", "exit 3"]);
        let status = spawn(command).await.unwrap().wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
    }

    #[tokio::test]
    async fn children_run_within_their_limits() {
        let mut command = Command::new("sh");
        command
            .args(["-c", "ulimit -v; ulimit -f; ulimit -c; ulimit -t"])
            .stdout(std::process::Stdio::piped());
        limit(
            &mut command,
            Limits {
                cpu_seconds: Some(7),
                address_space: Some(300 * 1024 * 1024),
                file_bytes: None,
            },
        );
        let output = spawn(command)
            .await
            .unwrap()
            .wait_with_output()
            .await
            .unwrap();
        // `ulimit` counts KiB for -v, 512-byte blocks for -f and -c.
        let shown = String::from_utf8(output.stdout).unwrap();
        assert_eq!(
            shown.lines().collect::<Vec<_>>(),
            ["307200", "unlimited", "0", "7"]
        );
    }

    #[test]
    fn a_child_outlives_the_thread_that_asked_for_it() {
        // A thread with its own runtime starts a child and ends at once, as an idle
        // blocking-pool thread does: the child must run on to its natural end.
        let child = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let child = runtime.block_on(async {
                let mut sleeper = Command::new("sleep");
                sleeper.arg("0.5");
                spawn(sleeper).await.unwrap()
            });
            child.id().unwrap()
        })
        .join()
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|close| stat[close + 1..].split_whitespace().next());
        assert!(
            matches!(state, Some("S" | "R" | "D")),
            "the child died with the thread that asked for it: {stat:?}"
        );
    }
}
