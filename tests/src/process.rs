//! Runs tally's real binaries (`tally-relay`, `tally-updater`, `tally-api`) as child
//! processes, so fault tests can SIGKILL or SIGTERM them and start them again, as an
//! orchestrator would. Binaries are looked up next to the test executable's `deps` folder
//! (the same target dir and profile), or in `$CARGO_TARGET_DIR/debug`; build them first with
//! `cargo build --workspace --bins` (`./dev test` does). `TALLY_TEST_BIN_DIR` overrides the
//! directory, e.g. `target/release` for measurements.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

/// A running service binary with its log captured in a file.
#[derive(Debug)]
pub struct ServiceProcess {
    binary: String,
    child: tokio::process::Child,
    log: PathBuf,
}

/// Where the workspace's binaries are: the directory holding the test executable's `deps`.
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TALLY_TEST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let dir = exe.parent()?;
        let dir = if dir.file_name().is_some_and(|n| n == "deps") {
            dir.parent()?
        } else {
            dir
        };
        Some(dir.to_path_buf())
    });
    if let Some(dir) = from_exe.filter(|d| d.join("tally-relay").exists()) {
        return dir;
    }
    if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
        return Path::new(&target).join("debug");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug")
}

/// The path of the workspace binary `name` (e.g. `tally-relay`); panics with the fix when
/// it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} does not exist: run `cargo build --workspace --bins` before these tests",
        path.display()
    );
    path
}

impl ServiceProcess {
    /// Starts binary `name` with `env` added to this process' environment and `RUST_LOG`
    /// at info unless `env` sets it. Output goes to a log file (see [`ServiceProcess::log`]).
    pub fn spawn(name: &str, env: &[(&str, String)]) -> ServiceProcess {
        let path = binary(name);
        let log = std::env::temp_dir().join(format!(
            "tally-test-{name}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let out = std::fs::File::create(&log).expect("creating the service's log file");
        let err = out.try_clone().expect("cloning the log file handle");
        let mut command = tokio::process::Command::new(&path);
        command
            .env("RUST_LOG", "info,pgwire_replication=off")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true);
        for (key, value) in env {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", path.display()));
        ServiceProcess {
            binary: name.to_owned(),
            child,
            log,
        }
    }

    /// The operating system's id for the process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// SIGKILL (kill -9): no shutdown code runs. Waits until the process is gone.
    pub async fn kill(&mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits up to `timeout` for the process to exit by itself; kills it after
    /// that. Returns its exit status, or None when it had to be killed.
    pub async fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if let Some(pid) = self.child.id() {
            let sent = tokio::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .await;
            assert!(
                sent.is_ok_and(|s| s.success()),
                "sending SIGTERM to {}",
                self.binary
            );
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => status.ok(),
            Err(_) => {
                self.kill().await;
                None
            }
        }
    }

    /// Whether the process has exited (reaping it if so).
    pub fn has_exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// The path of the captured stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `timeout` for a log line containing `needle`, returning it.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> Option<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Some(line.to_owned());
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        // Logs of a passing run are not kept; a failing test's panic message names them.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
