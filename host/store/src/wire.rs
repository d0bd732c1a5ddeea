//! A lean RESP2 connection for the store's stream reads.
//!
//! `XRANGE` replies are most of what the store reads: a page of 1,000 events is some
//! 16,000 bulk strings. The `redis` crate parses every reply into a tree of
//! `redis::Value`s (an allocation per string and per array) before anyone looks at it;
//! on a 100,000-event history that parsing and its allocations were about three
//! quarters of the fetch time (BENCHMARKS.md). This connection reads a reply into one
//! buffer, checks that it is complete, and lets the caller walk it as slices of that
//! buffer ([`Frame`]): the only copies are the ones the caller keeps.
//!
//! It speaks RESP2 (a server's default; no `HELLO`), sends `AUTH` (with the ACL user
//! if the URL names one) and `SELECT` as the URL says, over TLS for `rediss://` (rustls,
//! the same CA, client certificate and `insecure` as the `redis` crate's connections), and keeps a few idle connections for the next request. Every request is
//! bounded by the store's response timeout. A request that finds a reused connection
//! dead (Redis restarted) is retried once on a new one: the store only sends reads
//! here, so repeating one is harmless. A connection whose request failed, timed out or
//! was cancelled half-way is dropped, never reused. Writes and everything else stay on
//! the `redis` crate's connection manager.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{ConnectionAddr, ConnectionInfo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::{ClientConfig, pki_types::ServerName};

use crate::error::{Error, Result};

/// Idle connections kept for reuse; more concurrent readers open (and then close)
/// their own.
const MAX_IDLE: usize = 16;
/// A connection's buffer grows to its largest reply; above this it is shrunk before
/// the connection is kept, so one huge page does not pin memory in the pool.
const KEEP_BUFFER: usize = 4 << 20;
/// Read at least this much spare room into the buffer per `read` call.
const READ_CHUNK: usize = 64 << 10;

/// Opens, reuses and retires lean connections to one Redis.
pub(crate) struct Reader {
    addr: Addr,
    /// `AUTH` and `SELECT` as one packed write, sent on every new connection.
    setup: Vec<u8>,
    setup_replies: usize,
    url: String,
    connect_timeout: Duration,
    response_timeout: Duration,
    reconnect_retries: usize,
    idle: Mutex<Vec<Conn>>,
}

enum Addr {
    Tcp(String, u16),
    Tls(String, u16, TlsConnector, ServerName<'static>),
    Unix(PathBuf),
}

impl Reader {
    /// For the server `info` names; `url` is the redacted URL, for error messages;
    /// `tls` for a `rediss://` URL.
    pub(crate) fn new(
        info: &ConnectionInfo,
        url: &str,
        tls: Option<Arc<ClientConfig>>,
        connect_timeout: Duration,
        response_timeout: Duration,
        reconnect_retries: usize,
    ) -> Result<Reader> {
        let addr = match (info.addr(), tls) {
            (ConnectionAddr::Tcp(host, port), _) => Addr::Tcp(host.clone(), *port),
            (ConnectionAddr::TcpTls { host, port, .. }, Some(config)) => Addr::Tls(
                host.clone(),
                *port,
                TlsConnector::from(config),
                crate::tls::server_name(host, url)?,
            ),
            (ConnectionAddr::Unix(path), _) => Addr::Unix(path.clone()),
            _ => {
                return Err(Error::invalid(format!(
                    "{url}: only redis://, rediss:// and unix:// addresses are supported"
                )));
            }
        };
        let settings = info.redis_settings();
        let mut setup = Vec::new();
        let mut setup_replies = 0;
        if let Some(password) = settings.password() {
            match settings.username() {
                Some(user) => pack(&mut setup, &[b"AUTH", user.as_bytes(), password.as_bytes()]),
                None => pack(&mut setup, &[b"AUTH", password.as_bytes()]),
            }
            setup_replies += 1;
        }
        if settings.db() != 0 {
            pack(
                &mut setup,
                &[b"SELECT", settings.db().to_string().as_bytes()],
            );
            setup_replies += 1;
        }
        Ok(Reader {
            addr,
            setup,
            setup_replies,
            url: url.to_owned(),
            connect_timeout,
            response_timeout,
            reconnect_retries,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends one command and hands its complete reply to `walk`.
    ///
    /// Errors: [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) when no connection can be made or it breaks,
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable) when the reply takes longer than the response timeout,
    /// [`ErrorKind::Redis`](crate::ErrorKind::Redis) for an error reply (`WRONGTYPE` and friends), and whatever
    /// `walk` returns. A cluster redirect (this node does not serve the key's slot) is
    /// [`ErrorKind::Unavailable`](crate::ErrorKind::Unavailable): a router follows it with [`send`](Self::send).
    pub(crate) async fn request<T, W>(&self, args: &[&[u8]], walk: W) -> Result<T>
    where
        W: FnOnce(Frame<'_>) -> Result<T>,
    {
        match self.send(args, false, walk).await {
            Routed::Done(out) => out,
            Routed::Failed(e, _) => Err(e),
            Routed::Redirect(to, _) => Err(to.error(&self.url)),
        }
    }

    /// [`request`](Self::request), but a `MOVED` or `ASK` reply comes back as
    /// [`Routed::Redirect`] with `walk` unused, for the cluster router to follow.
    /// `asking` sends `ASKING` first (after an `ASK` redirect).
    pub(crate) async fn send<T, W>(&self, args: &[&[u8]], asking: bool, walk: W) -> Routed<T, W>
    where
        W: FnOnce(Frame<'_>) -> Result<T>,
    {
        let mut command = Vec::with_capacity(64);
        if asking {
            pack(&mut command, &[b"ASKING"]);
        }
        pack(&mut command, args);
        let mut retried = false;
        loop {
            let pooled = self.idle.lock().expect("reader pool poisoned").pop();
            let reused = pooled.is_some();
            let mut conn = match pooled {
                Some(c) => c,
                None => match self.connect().await {
                    Ok(c) => c,
                    Err(e) => return Routed::Failed(e, walk),
                },
            };
            let sent = tokio::time::timeout(
                self.response_timeout,
                conn.roundtrip(&command, usize::from(asking)),
            );
            let len = match sent.await {
                Err(_) => return Routed::Failed(Error::timeout(self.response_timeout), walk),
                Ok(Ok(len)) => len,
                Ok(Err(Failure::Reply(e))) => {
                    self.keep(conn);
                    return Routed::Failed(Error::from(e), walk);
                }
                Ok(Err(Failure::Redirect(to))) => {
                    self.keep(conn);
                    return Routed::Redirect(to, walk);
                }
                Ok(Err(Failure::Io(_))) if reused && !retried => {
                    // Idle connections die together (a restart): drop them all, and
                    // try once more on a new one.
                    self.idle.lock().expect("reader pool poisoned").clear();
                    retried = true;
                    continue;
                }
                Ok(Err(Failure::Io(e))) => return Routed::Failed(self.unreachable(e), walk),
            };
            let out = walk(Frame::new(&conn.buf[..len]));
            if conn.buf.len() == len {
                self.keep(conn);
            } // else: bytes nobody asked for; the connection is not trusted again
            return Routed::Done(out);
        }
    }

    /// Drops the idle connections (their node went away or changed role).
    pub(crate) fn forget_idle(&self) {
        self.idle.lock().expect("reader pool poisoned").clear();
    }

    /// A new connection, authenticated and on the right database. Refused or failed
    /// attempts are retried `reconnect_retries` times, 100 ms apart and doubling up to
    /// 1 s, like the connection manager's reconnects.
    async fn connect(&self) -> Result<Conn> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let last = attempt >= self.reconnect_retries;
            match tokio::time::timeout(self.connect_timeout, self.open()).await {
                Ok(Ok(conn)) => return Ok(conn),
                Ok(Err(Failure::Reply(e))) => return Err(Error::from(e)), // AUTH refused
                Ok(Err(Failure::Redirect(to))) => return Err(to.error(&self.url)),
                // A handshake refused is refused again: no retries.
                Ok(Err(Failure::Io(e))) if last || crate::tls::failure_reason(&e).is_some() => {
                    return Err(self.unreachable(e));
                }
                Err(_) if last => {
                    return Err(Error::unreachable(
                        self.url.clone(),
                        format!("no connection within {:?}", self.connect_timeout),
                    ));
                }
                Ok(Err(Failure::Io(_))) | Err(_) => {}
            }
            attempt += 1;
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    async fn open(&self) -> std::result::Result<Conn, Failure> {
        let io = match &self.addr {
            Addr::Tcp(host, port) => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Io::Tcp(s)
            }
            Addr::Tls(host, port, connector, name) => {
                let s = TcpStream::connect((host.as_str(), *port)).await?;
                s.set_nodelay(true)?;
                Io::Tls(Box::new(connector.connect(name.clone(), s).await?))
            }
            Addr::Unix(path) => Io::Unix(UnixStream::connect(path).await?),
        };
        let mut conn = Conn {
            io,
            buf: Vec::with_capacity(READ_CHUNK),
        };
        if self.setup_replies > 0 {
            conn.io.write_all(&self.setup).await?;
            for _ in 0..self.setup_replies {
                let len = conn.read_frame().await?;
                conn.check_error(len)?;
                conn.buf.drain(..len);
            }
        }
        Ok(conn)
    }

    fn keep(&self, mut conn: Conn) {
        conn.buf.clear();
        if conn.buf.capacity() > KEEP_BUFFER {
            conn.buf.shrink_to(READ_CHUNK);
        }
        let mut idle = self.idle.lock().expect("reader pool poisoned");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    fn unreachable(&self, e: std::io::Error) -> Error {
        unreachable(&self.url, &e)
    }

    /// One attempt at a new connection and a `PING`, bounded by the connect timeout,
    /// for [`EventStore::connect`](crate::EventStore::connect) to fail fast and clearly:
    /// a TLS failure says so, and a plain URL whose server hangs up at once (a TLS
    /// port) gets a hint.
    pub(crate) async fn probe(&self) -> Result<()> {
        let attempt = async {
            let mut conn = self.open().await?;
            let mut ping = Vec::new();
            pack(&mut ping, &[b"PING"]);
            conn.roundtrip(&ping, 0).await.map(drop)
        };
        match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(Failure::Reply(e))) => Err(Error::from(e)),
            Ok(Err(Failure::Redirect(to))) => Err(to.error(&self.url)),
            Ok(Err(Failure::Io(e))) => {
                let closed = matches!(
                    e.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                );
                if closed && matches!(self.addr, Addr::Tcp(..)) {
                    Err(Error::unreachable(
                        self.url.clone(),
                        format!("{e} (if this port speaks TLS, use a rediss:// URL)"),
                    ))
                } else {
                    Err(self.unreachable(e))
                }
            }
            Err(_) => Err(Error::unreachable(
                self.url.clone(),
                format!("no connection within {:?}", self.connect_timeout),
            )),
        }
    }
}

/// A broken connection's error: a TLS failure as such, anything else as unreachable.
fn unreachable(url: &str, e: &std::io::Error) -> Error {
    match crate::tls::failure_reason(e) {
        Some(reason) => Error::tls(url, reason),
        None => Error::unreachable(url, e.to_string()),
    }
}

impl Reader {
    /// A connection of its own, outside the pool, for one long-lived caller: a live
    /// subscription's blocking `XREAD`, which would hold a pooled connection for
    /// seconds at a time. Opened (and retried) like a pooled one.
    pub(crate) async fn dedicated(&self) -> Result<Dedicated> {
        Ok(Dedicated {
            conn: self.connect().await?,
            url: self.url.clone(),
            moved: None,
        })
    }
}

/// A lean connection owned by one caller (see [`Reader::dedicated`]). After any
/// error, timeout or cancelled request its replies may be out of step: drop it.
pub(crate) struct Dedicated {
    conn: Conn,
    url: String,
    /// Set when the node answers with a cluster redirect, so that the router reads
    /// the slot map again before the caller's next connection.
    pub(crate) moved: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl Dedicated {
    /// Sends one command and hands its complete reply to `walk`; the round trip is
    /// bounded by `timeout` (for `XREAD BLOCK`, longer than the block).
    pub(crate) async fn request<T>(
        &mut self,
        args: &[&[u8]],
        timeout: Duration,
        walk: impl FnOnce(Frame<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut command = Vec::with_capacity(64);
        pack(&mut command, args);
        let len = match tokio::time::timeout(timeout, self.conn.roundtrip(&command, 0)).await {
            Err(_) => return Err(Error::timeout(timeout)),
            Ok(Ok(len)) => len,
            Ok(Err(Failure::Reply(e))) => return Err(Error::from(e)),
            Ok(Err(Failure::Redirect(to))) => {
                if let Some(moved) = &self.moved {
                    moved.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                return Err(to.error(&self.url));
            }
            Ok(Err(Failure::Io(e))) => return Err(unreachable(&self.url, &e)),
        };
        if self.conn.buf.len() != len {
            return Err(Error::unreachable(
                self.url.clone(),
                protocol("bytes after the reply"),
            ));
        }
        let out = walk(Frame::new(&self.conn.buf[..len]));
        self.conn.buf.clear();
        if self.conn.buf.capacity() > KEEP_BUFFER {
            self.conn.buf.shrink_to(READ_CHUNK);
        }
        out
    }
}

/// Builds a command in RESP: `*<n>` then `$<len> <bytes>` per argument.
fn pack(out: &mut Vec<u8>, args: &[&[u8]]) {
    let _ = write!(out, "*{}\r\n", args.len());
    for a in args {
        let _ = write!(out, "${}\r\n", a.len());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

enum Failure {
    /// The connection is broken (or the server spoke something that is not RESP2).
    Io(std::io::Error),
    /// The server answered with an error.
    Reply(redis::RedisError),
    /// A cluster node answered `MOVED` or `ASK`: another node serves the key.
    Redirect(Redirect),
}

/// A cluster node's `-MOVED <slot> <host>:<port>` or `-ASK <slot> <host>:<port>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Redirect {
    /// `ASK`: this one command goes to the other node (a slot being migrated), after
    /// `ASKING`. `MOVED`: the slot lives there now.
    pub(crate) ask: bool,
    pub(crate) slot: u16,
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Redirect {
    /// Parses an error reply's line (without `-` and CRLF).
    fn parse(line: &[u8]) -> Option<Redirect> {
        let line = std::str::from_utf8(line).ok()?;
        let mut parts = line.split_ascii_whitespace();
        let ask = match parts.next()? {
            "MOVED" => false,
            "ASK" => true,
            _ => return None,
        };
        let slot = parts.next()?.parse().ok()?;
        let (host, port) = parts.next()?.rsplit_once(':')?;
        Some(Redirect {
            ask,
            slot,
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port: port.parse().ok()?,
        })
    }

    /// As an error for a caller that does not follow redirects: unavailable (the
    /// cluster is moving the slot, or our slot map is old), so retried like a restart.
    pub(crate) fn error(&self, url: &str) -> Error {
        let what = if self.ask { "ASK" } else { "MOVED" };
        Error::unreachable(
            url,
            format!(
                "slot {} is served by {}:{} ({what} redirect)",
                self.slot, self.host, self.port
            ),
        )
    }
}

/// What [`Reader::send`] got: the walked reply (or `walk`'s error), a failure before
/// any reply was walked, or a redirect; `walk` comes back unused with the last two.
pub(crate) enum Routed<T, W> {
    Done(Result<T>),
    Failed(Error, W),
    Redirect(Redirect, W),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

enum Io {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

impl Io {
    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Io::Tcp(s) => s.write_all(b).await,
            Io::Tls(s) => {
                s.write_all(b).await?;
                s.flush().await
            }
            Io::Unix(s) => s.write_all(b).await,
        }
    }

    async fn read_buf(&mut self, buf: &mut Vec<u8>) -> std::io::Result<usize> {
        match self {
            Io::Tcp(s) => s.read_buf(buf).await,
            Io::Tls(s) => s.read_buf(buf).await,
            Io::Unix(s) => s.read_buf(buf).await,
        }
    }
}

struct Conn {
    io: Io,
    /// Bytes read and not yet consumed: exactly one reply after a round trip.
    buf: Vec<u8>,
}

impl Conn {
    /// Writes `command` and reads the whole reply; its length in `buf`. `skip` replies
    /// come first (an `ASKING`'s `+OK`), each checked for an error and dropped.
    async fn roundtrip(
        &mut self,
        command: &[u8],
        skip: usize,
    ) -> std::result::Result<usize, Failure> {
        self.buf.clear();
        self.io.write_all(command).await?;
        for _ in 0..skip {
            let len = self.read_frame().await?;
            self.check_error(len)?;
            self.buf.drain(..len);
        }
        let len = self.read_frame().await?;
        self.check_error(len)?;
        Ok(len)
    }

    /// Reads until `buf` starts with one complete reply; returns its length.
    async fn read_frame(&mut self) -> std::io::Result<usize> {
        let mut scan = Scan::default();
        loop {
            if let Some(end) = scan_frame(&self.buf, &mut scan)? {
                return Ok(end);
            }
            if self.buf.capacity() - self.buf.len() < READ_CHUNK {
                self.buf.reserve(self.buf.len().max(4 * READ_CHUNK));
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "Redis closed the connection",
                ));
            }
        }
    }

    /// An error reply (`-WRONGTYPE ...`) as the `redis` crate's error, so its code and
    /// kind read the same as on the other connection.
    fn check_error(&self, len: usize) -> std::result::Result<(), Failure> {
        if self.buf.first() != Some(&b'-') {
            return Ok(());
        }
        if let Some(to) = Redirect::parse(&self.buf[1..len.saturating_sub(2)]) {
            return Err(Failure::Redirect(to));
        }
        let reply = redis::parse_redis_value(&self.buf[..len]).and_then(|v| v.extract_error());
        Err(match reply {
            Err(e) => Failure::Reply(e),
            Ok(_) => Failure::Io(protocol("an error reply that does not parse")),
        })
    }
}

fn protocol(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("not a RESP2 reply: {what}"),
    )
}

/// Where a frame scan stopped, so it resumes when more bytes arrive.
#[derive(Debug, Default)]
struct Scan {
    pos: usize,
    /// Elements still to come in each open array.
    open: Vec<usize>,
}

/// Finds the end of the first complete reply in `buf`, resuming where the last call
/// stopped; `None` until all of it is there. Checks the framing only (types, lengths,
/// line ends); [`Frame`] checks the shape.
fn scan_frame(buf: &[u8], st: &mut Scan) -> std::io::Result<Option<usize>> {
    loop {
        let Some(line_end) = find_crlf(buf, st.pos)? else {
            return Ok(None);
        };
        let header = &buf[st.pos + 1..line_end];
        let next = line_end + 2;
        match buf[st.pos] {
            b'*' => {
                let n = int(header).ok_or_else(|| protocol("bad array length"))?;
                st.pos = next;
                if n > 0 {
                    st.open.push(n as usize);
                    continue;
                }
            }
            b'$' => {
                let n = int(header).ok_or_else(|| protocol("bad string length"))?;
                let end = if n < 0 { next } else { next + n as usize + 2 };
                if end > buf.len() {
                    return Ok(None);
                }
                if n >= 0 && &buf[end - 2..end] != b"\r\n" {
                    return Err(protocol("a bulk string is not followed by CRLF"));
                }
                st.pos = end;
            }
            b'+' | b'-' | b':' => st.pos = next,
            other => {
                return Err(protocol(&format!("unexpected type byte {other:#04x}")));
            }
        }
        // One element is complete: close every array it completes.
        loop {
            match st.open.last_mut() {
                None => return Ok(Some(st.pos)),
                Some(left) if *left > 1 => {
                    *left -= 1;
                    break;
                }
                Some(_) => {
                    st.open.pop();
                }
            }
        }
    }
}

/// The index of the `\r` ending the line that starts at `from`, once the `\n` is there.
fn find_crlf(buf: &[u8], from: usize) -> std::io::Result<Option<usize>> {
    let Some(cr) = buf
        .get(from..)
        .and_then(|b| b.iter().position(|&c| c == b'\r'))
    else {
        return Ok(None);
    };
    let cr = from + cr;
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') if cr > from => Ok(Some(cr)),
        Some(_) => Err(protocol("a line does not end in CRLF")),
    }
}

/// A RESP integer (`-1`, `42`); `None` if it is not one.
fn int(b: &[u8]) -> Option<i64> {
    match b.split_first() {
        Some((b'-', digits)) => decimal(digits)
            .and_then(|n| i64::try_from(n).ok())
            .map(|n| -n),
        _ => decimal(b).and_then(|n| i64::try_from(n).ok()),
    }
}

/// Unsigned decimal digits, nothing else; `None` if empty, not digits, or over `u64`.
pub(crate) fn decimal(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    b.iter().try_fold(0u64, |n, &d| {
        if d.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
        } else {
            None
        }
    })
}

/// A complete reply, walked element by element. Methods fail with a description
/// (for [`ErrorKind::Corrupt`](crate::ErrorKind::Corrupt)) when the reply has another shape than asked for.
pub(crate) struct Frame<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Frame<'a> {
    pub(crate) fn new(b: &'a [u8]) -> Self {
        Frame { b, p: 0 }
    }

    /// The next element's header: its type byte and the line after it.
    fn header(&mut self) -> std::result::Result<(u8, &'a [u8]), String> {
        let kind = *self.b.get(self.p).ok_or("the reply ends early")?;
        let line = &self.b[self.p + 1..];
        let cr = line
            .iter()
            .position(|&c| c == b'\r')
            .ok_or("the reply ends early")?;
        self.p += 1 + cr + 2;
        Ok((kind, &line[..cr]))
    }

    /// An array's length; `None` for a nil array.
    pub(crate) fn array(&mut self) -> std::result::Result<Option<usize>, String> {
        match self.header()? {
            (b'*', n) => Ok(usize::try_from(int(n).ok_or("bad array length")?).ok()),
            (kind, _) => Err(format!("expected a list, got RESP type {:?}", kind as char)),
        }
    }

    /// A bulk string's bytes; `None` for a nil string.
    pub(crate) fn bulk(&mut self) -> std::result::Result<Option<&'a [u8]>, String> {
        match self.header()? {
            (b'$', n) => match usize::try_from(int(n).ok_or("bad string length")?) {
                Ok(n) => {
                    let s = self
                        .b
                        .get(self.p..self.p + n)
                        .ok_or("the reply ends early")?;
                    self.p += n + 2;
                    Ok(Some(s))
                }
                Err(_) => Ok(None),
            },
            (b'+' | b':', line) => Ok(Some(line)),
            (kind, _) => Err(format!(
                "expected a string, got RESP type {:?}",
                kind as char
            )),
        }
    }

    /// Skips one element, arrays with all they hold.
    #[cfg_attr(not(any(test, feature = "bench")), allow(dead_code))]
    pub(crate) fn skip(&mut self) -> std::result::Result<(), String> {
        let mut left = 1usize;
        while left > 0 {
            left -= 1;
            match self.header()? {
                (b'*', n) => left += usize::try_from(int(n).unwrap_or(0)).unwrap_or(0),
                (b'$', n) => {
                    if let Ok(n) = usize::try_from(int(n).ok_or("bad string length")?) {
                        self.p += n + 2;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A reply in RESP2 for `XRANGE`: entries of (id, fields).
    pub(crate) fn xrange_reply(entries: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = write!(out, "*{}\r\n", entries.len());
        for (id, fields) in entries {
            out.extend_from_slice(b"*2\r\n");
            let _ = write!(out, "${}\r\n{id}\r\n*{}\r\n", id.len(), fields.len() * 2);
            for (k, v) in *fields {
                let _ = write!(out, "${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len());
            }
        }
        out
    }

    #[test]
    fn frames_are_complete_only_when_whole_and_scans_resume() {
        let reply = xrange_reply(&[("1-0", &[("a", "bb")]), ("2-0", &[])]);
        for cut in 0..reply.len() {
            let mut st = Scan::default();
            assert_eq!(scan_frame(&reply[..cut], &mut st).unwrap(), None, "{cut}");
            assert_eq!(
                scan_frame(&reply, &mut st).unwrap(),
                Some(reply.len()),
                "resumed at {cut}"
            );
        }
        let mut st = Scan::default();
        assert_eq!(scan_frame(b"*0\r\nextra", &mut st).unwrap(), Some(4));
        for bad in [&b"?x\r\n"[..], b"$3\r\nabcd\r\n", b"*x\r\n", b"+a\rb"] {
            assert!(scan_frame(bad, &mut Scan::default()).is_err(), "{bad:?}");
        }
        // Error replies and nils are whole frames too.
        assert_eq!(
            scan_frame(b"-ERR no\r\n", &mut Scan::default()).unwrap(),
            Some(9)
        );
        assert_eq!(
            scan_frame(b"*-1\r\n", &mut Scan::default()).unwrap(),
            Some(5)
        );
    }

    #[test]
    fn frames_walk_as_slices_and_report_other_shapes() {
        let reply = xrange_reply(&[("1-0", &[("k", "v"), ("n", "")])]);
        let mut f = Frame::new(&reply);
        assert_eq!(f.array().unwrap(), Some(1));
        assert_eq!(f.array().unwrap(), Some(2));
        assert_eq!(f.bulk().unwrap(), Some(&b"1-0"[..]));
        assert_eq!(f.array().unwrap(), Some(4));
        assert_eq!(f.bulk().unwrap(), Some(&b"k"[..]));
        assert_eq!(f.bulk().unwrap(), Some(&b"v"[..]));
        f.skip().unwrap();
        assert_eq!(f.bulk().unwrap(), Some(&b""[..]));
        assert!(f.bulk().is_err(), "past the end");

        let mut f = Frame::new(b"$-1\r\n*-1\r\n:5\r\n");
        assert_eq!(f.bulk().unwrap(), None);
        assert_eq!(f.array().unwrap(), None);
        assert!(f.array().is_err(), "an integer is not a list");

        let mut f = Frame::new(&reply);
        f.skip().unwrap();
        assert_eq!(f.p, reply.len());
    }

    #[test]
    fn integers_parse_strictly() {
        assert_eq!(int(b"-1"), Some(-1));
        assert_eq!(int(b"1000"), Some(1000));
        for bad in [&b""[..], b"-", b"1a", b" 1", b"+1", b"9999999999999999999"] {
            assert_eq!(int(bad), None, "{bad:?}");
        }
        assert_eq!(decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(decimal(b"18446744073709551616"), None);
    }

    #[test]
    fn commands_pack_as_resp() {
        let mut out = Vec::new();
        pack(&mut out, &[b"XRANGE", b"k", b"-"]);
        assert_eq!(out, b"*3\r\n$6\r\nXRANGE\r\n$1\r\nk\r\n$1\r\n-\r\n");
    }
}
