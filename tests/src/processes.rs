//! Processes a test starts for itself: a `dana-bff` with its own settings (a dead upstream, a
//! short timeout, a JWKS), or a second real PostgREST. Each is killed when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `dana-bff` binary `scripts/dev` built (the `dist` profile, the one the stack runs), or
/// the one named by `DANA_BFF_BIN`.
pub fn bff_binary() -> PathBuf {
    if let Ok(path) = std::env::var("DANA_BFF_BIN") {
        return path.into();
    }
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| crate::repo_path("target"));
    let built = target.join("dist/dana-bff");
    assert!(
        built.exists(),
        "{} is missing: run `scripts/dev up` (it builds the BFF)",
        built.display()
    );
    built
}

pub struct BffProcess {
    child: Child,
    pub url: String,
}

impl BffProcess {
    /// Starts a BFF with the stack's settings overridden by `overrides` (a value of `None` unsets
    /// the variable) on a free port, and waits until `/healthz` answers.
    pub fn start(overrides: &[(&str, Option<&str>)]) -> Self {
        Self::start_on(free_port(), overrides)
    }

    /// Like [`BffProcess::start`], on a port chosen beforehand (for settings that name the
    /// BFF's own address, such as `API_EXTERNAL_URL`).
    pub fn start_on(port: u16, overrides: &[(&str, Option<&str>)]) -> Self {
        let mut command = Command::new(bff_binary());
        // The stack's settings, whether they came from the environment or from `scripts/dev env`.
        command.envs(crate::stack_env());
        command
            .arg("serve")
            .env("BFF_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn");
        for (name, value) in overrides {
            match value {
                Some(v) => command.env(name, v),
                None => command.env_remove(name),
            };
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dana-bff starts");
        let process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_for_tcp(port, Duration::from_secs(10));
        process
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }

    /// Sends SIGTERM, the orchestrator's "please stop".
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit; `None` if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for BffProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A second instance of the stack's real PostgREST, on ports of its own.
pub struct PostgrestProcess {
    child: Child,
}

impl PostgrestProcess {
    pub fn start(port: u16, admin_port: u16) -> Self {
        let child = Command::new(crate::setting("POSTGREST_BIN"))
            .env("PGRST_DB_URI", crate::setting("POSTGREST_DB_URI"))
            .env("PGRST_DB_SCHEMAS", "public")
            .env("PGRST_DB_ANON_ROLE", "anon")
            .env("PGRST_JWT_SECRET", crate::setting("JWT_SECRET"))
            .env("PGRST_SERVER_HOST", "127.0.0.1")
            .env("PGRST_SERVER_PORT", port.to_string())
            .env("PGRST_ADMIN_SERVER_PORT", admin_port.to_string())
            .env("PGRST_LOG_LEVEL", "crit")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("PostgREST starts");
        Self { child }
    }
}

impl Drop for PostgrestProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_for_tcp(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nothing listens on port {port} after {within:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} not in /proc/{pid}/status"))
}
