//! A private `redis-server` for the demo and the tests.
//!
//! [`LocalRedis::start`] runs `redis-server` (found on `PATH`) on a free loopback port,
//! in its own temporary directory, without persistence (`--save "" --appendonly no`),
//! logging to a file there; it returns once the server answers (`INFO server`, checked
//! to come from our process). The server is
//! killed when the value is dropped. Modeled on redis-rs's `redis-test` server helper.
//!
//! [`LocalRedis::start_tls`] runs one that speaks only TLS on its port, with a CA and
//! certificates made for it by `openssl` in its directory ([`TlsFiles`]); its plain
//! side is a Unix socket there, for the readiness check and [`LocalRedis::add_user`].
//!
//! Everything here is synchronous and quick (tens of milliseconds), so it can be used
//! from `#[tokio::test]` functions directly.

use std::fmt;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
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
    pub(crate) fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
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

/// How long a fresh server may take to answer `PING` (generous: CI machines are slow
/// and busy).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a restart waits for its port (or cluster bus port) to be free again. While
/// a server is down, anything else on the machine may take its port: another test's
/// server, or the local end of an outgoing connection, which the kernel picks from the
/// same range. Those go away; a restart waits for them rather than failing.
const PORT_REGAIN_TIMEOUT: Duration = Duration::from_secs(60);
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
    tls: Option<(TlsFiles, ClientCerts)>,
    /// More `redis-server` arguments, given after ours (so they win).
    extra_args: Vec<String>,
}

/// Whether a TLS server asks clients for a certificate (`--tls-auth-clients`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    /// Clients may present one (checked if they do): `optional`.
    Optional,
    /// Mutual TLS: clients must present one signed by the CA: `yes`.
    Required,
}

/// The PEM files of a TLS server, in its directory: a CA, the server's certificate
/// (for `127.0.0.1` and `localhost`) and a client certificate signed by it, and a
/// second CA that signed none of them (to test a wrong CA).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// The server's certificate.
    pub server_cert: PathBuf,
    /// The server's key.
    pub server_key: PathBuf,
    /// A client certificate signed by [`ca`](Self::ca), for mutual TLS.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
    /// A CA that signed nothing here.
    pub other_ca: PathBuf,
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

/// How far above its port a cluster node listens for its cluster bus.
const CLUSTER_BUS_OFFSET: u16 = 10000;

/// A free port whose cluster bus port (port + 10000) exists and was free too.
fn free_cluster_port() -> Result<u16> {
    for _ in 0..100 {
        let port = free_port()?;
        let Some(bus) = port.checked_add(CLUSTER_BUS_OFFSET) else {
            continue;
        };
        if TcpListener::bind((Ipv4Addr::LOCALHOST, bus)).is_ok() {
            return Ok(port);
        }
    }
    Err(Error::io(
        "finding a free loopback port with a free cluster bus port (port + 10000)",
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "no such port found"),
    ))
}

impl LocalRedis {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> Result<Self> {
        Self::start_with(find_redis_server()?)
    }

    /// Starts the given `redis-server` executable on a free port.
    pub fn start_with(exe: impl Into<PathBuf>) -> Result<Self> {
        Self::start_plain(exe.into(), Vec::new())
    }

    /// Starts a server on a free port with more `redis-server` arguments after ours
    /// (`--port`, `--bind 127.0.0.1`, `--save ""`, `--appendonly no`, `--dir`, the
    /// log file), e.g. `["--cluster-enabled", "yes"]`. Relative paths in them are
    /// relative to the server's [`dir`](Self::dir). If they contain
    /// `--cluster-enabled yes`, the port is one whose cluster bus port (port + 10000)
    /// is free too. [`start_again`](Self::start_again) uses the same arguments.
    pub fn start_with_args(args: &[&str]) -> Result<Self> {
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        Self::start_plain(find_redis_server()?, args)
    }

    fn start_plain(exe: PathBuf, extra_args: Vec<String>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamfold-redis-")
            .tempdir()
            .map_err(|e| Error::io("creating a directory for redis-server", e))?;
        let mut server = LocalRedis {
            exe,
            dir,
            port: 0,
            child: None,
            tls: None,
            extra_args,
        };
        server.port = server.pick_port()?;
        server.start_on_a_free_port()?;
        Ok(server)
    }

    /// A free port, with a free cluster bus port if the server is a cluster node.
    fn pick_port(&self) -> Result<u16> {
        let cluster = self
            .extra_args
            .windows(2)
            .any(|w| w[0] == "--cluster-enabled" && w[1] == "yes");
        if cluster {
            free_cluster_port()
        } else {
            free_port()
        }
    }

    /// Starts a server that speaks only TLS on its port (no plain TCP port), with a CA
    /// and certificates made by `openssl` in its directory (see [`tls_files`](Self::tls_files)).
    pub fn start_tls(clients: ClientCerts) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("streamfold-redis-tls-")
            .tempdir()
            .map_err(|e| Error::io("creating a directory for redis-server", e))?;
        let files = make_certificates(dir.path())?;
        let mut server = LocalRedis {
            exe: find_redis_server()?,
            dir,
            port: free_port()?,
            child: None,
            tls: Some((files, clients)),
            extra_args: Vec::new(),
        };
        server.start_on_a_free_port()?;
        Ok(server)
    }

    fn start_on_a_free_port(&mut self) -> Result<()> {
        let server = self;
        let mut attempt = 1;
        loop {
            match server.launch() {
                Ok(()) => return Ok(()),
                // Another process may have taken the port between our probe and the
                // server's bind: try another port. Other failures a new port won't fix.
                Err(_) if attempt < PORT_ATTEMPTS && server.port_was_taken() => {
                    attempt += 1;
                    let _ = std::fs::remove_file(server.log_path());
                    server.port = server.pick_port()?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The server's URL, `redis://127.0.0.1:<port>/` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}/", self.port)
    }

    /// The certificates of a server started with [`start_tls`](Self::start_tls).
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref().map(|(files, _)| files)
    }

    /// Adds (or resets) an ACL user with `password` and every permission
    /// (`ACL SETUSER name on >password ~* &* +@all`).
    pub fn add_user(&self, name: &str, password: &str) -> Result<()> {
        let password = format!(">{password}");
        let reply = self.admin(&[
            "ACL", "SETUSER", name, "reset", "on", &password, "~*", "&*", "+@all",
        ])?;
        if reply.starts_with("+OK") {
            Ok(())
        } else {
            Err(Error::io(
                format!("ACL SETUSER {name}"),
                std::io::Error::other(reply),
            ))
        }
    }

    /// Sends one command on a plain connection (the Unix socket of a TLS server) and
    /// returns the first line of the reply.
    fn admin(&self, args: &[&str]) -> Result<String> {
        let mut command = format!("*{}\r\n", args.len());
        for a in args {
            command.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        let context = || format!("sending {} to redis-server", args[0]);
        let mut stream = self.admin_stream().map_err(|e| Error::io(context(), e))?;
        stream
            .write_all(command.as_bytes())
            .map_err(|e| Error::io(context(), e))?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while !reply.ends_with(b"\r\n") {
            match stream.read(&mut byte) {
                Ok(0) => break,
                Ok(_) => reply.push(byte[0]),
                Err(e) => return Err(Error::io(context(), e)),
            }
        }
        Ok(String::from_utf8_lossy(&reply).trim_end().to_owned())
    }

    fn admin_stream(&self) -> std::io::Result<Box<dyn ReadWrite>> {
        let timeout = Some(Duration::from_millis(500));
        if self.tls.is_some() {
            let s = UnixStream::connect(self.socket_path())?;
            s.set_read_timeout(timeout)?;
            Ok(Box::new(s))
        } else {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            let s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
            s.set_read_timeout(timeout)?;
            Ok(Box::new(s))
        }
    }

    fn socket_path(&self) -> PathBuf {
        self.dir.path().join("redis.sock")
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

    /// Freezes the server (SIGSTOP): it keeps its connections but answers nothing,
    /// like a Redis stuck or unreachable behind a silent network, until [`resume`].
    ///
    /// [`resume`]: LocalRedis::resume
    pub fn pause(&mut self) {
        self.signal("-STOP");
    }

    /// Lets a [`paused`](LocalRedis::pause) server run again (SIGCONT).
    pub fn resume(&mut self) {
        self.signal("-CONT");
    }

    fn signal(&mut self, which: &str) {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = std::process::Command::new("kill")
            .args([which, &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {which} {pid}");
    }

    /// Starts the server again on the same port and in the same directory, e.g. to
    /// test that clients recover after a restart. The data is gone (no persistence)
    /// unless a `SAVE` wrote `dump.rdb` just before: the server loads it from its
    /// directory, as a persistent Redis would.
    ///
    /// If something else took the port (or the cluster bus port) while the server was
    /// down, it waits for the port to be free again, up to a minute.
    pub fn start_again(&mut self) -> Result<()> {
        self.kill();
        let deadline = Instant::now() + PORT_REGAIN_TIMEOUT;
        loop {
            match self.launch() {
                Err(_) if self.port_was_taken() && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                done => return done,
            }
        }
    }

    /// Did the last start fail because a port it listens on was in use?
    fn port_was_taken(&self) -> bool {
        self.child.is_none()
            && self
                .log_tail()
                .lines()
                .last()
                .is_some_and(|line| line.contains("Failed listening on port"))
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn launch(&mut self) -> Result<()> {
        let port = self.port.to_string();
        let mut command = Command::new(&self.exe);
        match &self.tls {
            None => {
                command.args(["--port", &port]);
            }
            Some((files, clients)) => {
                command
                    .args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(&files.server_cert)
                    .arg("--tls-key-file")
                    .arg(&files.server_key)
                    .arg("--tls-ca-cert-file")
                    .arg(&files.ca)
                    .args([
                        "--tls-auth-clients",
                        match clients {
                            ClientCerts::Optional => "optional",
                            ClientCerts::Required => "yes",
                        },
                    ])
                    .arg("--unixsocket")
                    .arg(self.socket_path())
                    .args(["--unixsocketperm", "700"]);
            }
        }
        let child = command
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--logfile", "redis.log"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra_args)
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
            let ready = if self.tls.is_some() {
                UnixStream::connect(self.socket_path()).is_ok_and(|s| answers_on(s, pid))
            } else {
                answers(addr, pid)
            };
            if ready {
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
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    answers_on(stream, pid)
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn answers_on(mut stream: impl Read + Write, pid: u32) -> bool {
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

/// A CA, a server certificate for `127.0.0.1`/`localhost` and a client certificate
/// signed by it, and another CA, made with `openssl` in `dir` (P-256 keys, 2 days).
fn make_certificates(dir: &Path) -> Result<TlsFiles> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| Error::io(format!("writing {name} for openssl"), e))
    };
    let ca_config = |cn: &str| {
        format!(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n"
        )
    };
    write("ca.cnf", &ca_config("Streamfold test CA"))?;
    write("other-ca.cnf", &ca_config("Streamfold other CA"))?;
    write(
        "server.ext",
        "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n",
    )?;
    write(
        "client.ext",
        "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n\
         extendedKeyUsage = clientAuth\n",
    )?;
    let openssl = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                Error::io(
                    "cannot run openssl (install it with `sudo apt-get install openssl`)",
                    e,
                )
            })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(Error::io(
                format!("openssl {}", args.join(" ")),
                std::io::Error::other(String::from_utf8_lossy(&out.stderr).into_owned()),
            ))
        }
    };
    const KEY: [&str; 4] = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    for ca in ["ca", "other-ca"] {
        let (cnf, key, crt) = (
            format!("{ca}.cnf"),
            format!("{ca}.key"),
            format!("{ca}.crt"),
        );
        let mut args = vec!["req", "-x509", "-config", &cnf, "-extensions", "v3_ca"];
        args.extend(KEY);
        args.extend(["-nodes", "-keyout", &key, "-out", &crt, "-days", "2"]);
        openssl(&args)?;
    }
    for (leaf, cn) in [
        ("server", "localhost"),
        ("client", "streamfold-test-client"),
    ] {
        let (key, csr, crt, ext) = (
            format!("{leaf}.key"),
            format!("{leaf}.csr"),
            format!("{leaf}.crt"),
            format!("{leaf}.ext"),
        );
        let subject = format!("/CN={cn}");
        let mut args = vec!["req", "-new"];
        args.extend(KEY);
        args.extend(["-nodes", "-keyout", &key, "-out", &csr, "-subj", &subject]);
        openssl(&args)?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ])?;
    }
    Ok(TlsFiles {
        ca: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        other_ca: dir.join("other-ca.crt"),
    })
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

    #[test]
    fn a_restart_waits_for_its_port_when_something_else_holds_it() {
        let Ok(exe) = find_redis_server() else {
            eprintln!("redis-server not installed; skipped");
            return;
        };
        let mut server = LocalRedis::start_with(exe).unwrap();
        let port = server.port();
        server.stop();
        // Something else takes the port while the server is down, and lets it go later.
        let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
        let (taken, released) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            taken.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            drop(squatter);
        });
        released.recv().unwrap();
        server.start_again().unwrap();
        holder.join().unwrap();
        assert_eq!(server.port(), port);
        assert!(server.is_running());
        assert!(
            server.log_tail().contains("Address already in use"),
            "the first attempt found the port taken: {}",
            server.log_tail()
        );
    }
}
