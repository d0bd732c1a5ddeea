//! A private `redis-server` for the demo and the tests.
//!
//! [`LocalRedis::start`] runs `redis-server` (found on `PATH`) on a free loopback port,
//! in its own temporary directory, without persistence (`--save "" --appendonly no`),
//! logging to a file there; it returns once the server answers (`INFO server`, checked
//! to come from our process). The server is
//! killed when the value is dropped. Modeled on redis-rs's `redis-test` server helper.
//!
//! Everything here is synchronous and quick (tens of milliseconds), so it can be used
//! from `#[tokio::test]` functions directly.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A result whose error says what could not be done to start a server.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a private `redis-server` could not be started: what was being done, and the
/// operating system's error.
#[derive(Debug)]
pub struct Error {
    context: String,
    source: std::io::Error,
}

impl Error {
    fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        Error {
            context: context.to_string(),
            source,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// How long a fresh server may take to answer `PING`.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts at finding a port nobody else grabs between our probe and the server's bind.
const PORT_ATTEMPTS: usize = 5;
/// How to get the server on Debian/Ubuntu, for error messages.
pub const INSTALL_HINT: &str = "install it with `sudo apt-get install redis-server` (as root: `apt-get install -y redis-server`)";

/// A `redis-server` process of our own, on `127.0.0.1`, stopped on drop.
pub struct LocalRedis {
    exe: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

impl fmt::Debug for LocalRedis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalRedis")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .field("running", &self.child.is_some())
            .finish()
    }
}

/// Finds `redis-server`: `$STREAMFOLD_REDIS_SERVER` if set, else the first on `PATH`.
pub fn find_redis_server() -> Result<PathBuf> {
    if let Some(exe) = std::env::var_os("STREAMFOLD_REDIS_SERVER") {
        return Ok(PathBuf::from(exe));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::io(
                format!(
                    "redis-server is not on PATH: {INSTALL_HINT}, or set STREAMFOLD_REDIS_SERVER to its path"
                ),
                std::io::Error::new(std::io::ErrorKind::NotFound, "redis-server not found"),
            )
        })
}

/// A port that was free a moment ago (the OS picks it; we release it for the server).
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("finding a free loopback port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| Error::io("finding a free loopback port", e))?
        .port();
    Ok(port)
}

impl LocalRedis {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Result<Self> {
        Self::start_with(find_redis_server()?)
    }

    /// Starts the given `redis-server` executable on a free port.
    pub fn start_with(exe: impl Into<PathBuf>) -> Result<Self> {
        let exe = exe.into();
        let dir = tempfile::Builder::new()
            .prefix("streamfold-redis-")
            .tempdir()
            .map_err(|e| Error::io("creating a directory for redis-server", e))?;
        let mut server = LocalRedis {
            exe,
            dir,
            port: free_port()?,
            child: None,
        };
        let mut attempt = 1;
        loop {
            match server.launch() {
                Ok(()) => return Ok(server),
                // Another process may have taken the port between our probe and the
                // server's bind: try another port. Other failures a new port won't fix.
                Err(_)
                    if attempt < PORT_ATTEMPTS
                        && server.log_tail().contains("Address already in use") =>
                {
                    attempt += 1;
                    let _ = std::fs::remove_file(server.log_path());
                    server.port = free_port()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's URL, `redis://127.0.0.1:<port>/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory the server runs in (its log is `redis.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is (still) running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last lines of the server's log (empty if there is none yet).
    pub fn log_tail(&self) -> String {
        const LINES: usize = 40;
        let log = std::fs::read(self.log_path()).unwrap_or_default();
        let text = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LINES)..].join("\n")
    }

    /// Stops the server (killing it: nothing is persisted anyway). Data is lost.
    pub fn stop(&mut self) {
        self.kill();
    }

    /// Starts the server again on the same port and in the same directory, e.g. to
    /// test that clients recover after a restart. The data is gone (no persistence)
    /// unless a `SAVE` wrote `dump.rdb` just before: the server loads it from its
    /// directory, as a persistent Redis would.
    pub fn start_again(&mut self) -> Result<()> {
        self.kill();
        self.launch()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self) -> Result<()> {
        let port = self.port.to_string();
        let child = Command::new(&self.exe)
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--daemonize", "no", "--logfile", "redis.log"])
            .arg("--dir")
            .arg(self.dir.path())
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                let context = if e.kind() == std::io::ErrorKind::NotFound {
                    format!("cannot run {} ({INSTALL_HINT})", self.exe.display())
                } else {
                    format!("cannot run {}", self.exe.display())
                };
                Error::io(context, e)
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    /// Polls until the server answers, it exits, or time is up.
    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(self.failure(format!("redis-server exited at start ({status})")));
            }
            let pid = self.child.as_ref().map(Child::id).unwrap_or_default();
            if answers(addr, pid) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                self.kill();
                return Err(self.failure(format!(
                    "redis-server did not answer PING on port {} within {READY_TIMEOUT:?}",
                    self.port
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn failure(&self, what: String) -> Error {
        let tail = self.log_tail();
        Error::io(
            format!("{what}; log {}:\n{tail}", self.log_path().display()),
            std::io::Error::other("redis-server is not ready"),
        )
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Is *our* server (process `pid`) answering on `addr`? Asks `INFO server` over a plain
/// socket and looks for its `process_id`, so that a server someone else started on the
/// same port in the meantime is not mistaken for ours.
fn answers(addr: SocketAddr, pid: u32) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"INFO server\r\n").is_err() {
        return false;
    }
    let needle = format!("\r\nprocess_id:{pid}\r\n");
    let mut reply = Vec::new();
    let mut chunk = [0u8; 4096];
    while reply.len() < 64 * 1024 {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&reply);
        if text.contains(&needle) {
            return true;
        }
        // An error (`-LOADING`), or another server's process_id line.
        if text.starts_with('-') || text.contains("\r\nrun_id:") {
            return false;
        }
    }
    false
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_server_says_how_to_install_it() {
        let err = LocalRedis::start_with("/nonexistent/redis-server").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("apt-get install"), "{text}");
    }

    #[test]
    fn starts_stops_and_starts_again_on_the_same_port() {
        let Ok(exe) = find_redis_server() else {
            eprintln!("redis-server not installed; skipped");
            return;
        };
        let mut server = LocalRedis::start_with(exe).unwrap();
        let port = server.port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        assert!(server.is_running());
        assert!(server.url().ends_with(&format!(":{port}/")));
        server.stop();
        assert!(!server.is_running());
        assert!(TcpStream::connect(addr).is_err(), "stopped");
        server.start_again().unwrap();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert!(
            server.log_tail().contains("Ready to accept connections"),
            "{}",
            server.log_tail()
        );
        let pid = server.child.as_ref().unwrap().id();
        drop(server);
        assert!(!answers(addr, pid), "killed on drop");
    }
}
