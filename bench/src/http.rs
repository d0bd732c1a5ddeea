//! The load generator of the `server` section: one keep-alive HTTP/1.1 connection
//! per virtual client, and as little as possible on top of it, so that what the
//! figures show is the server.
//!
//! A [`Client`] is hyper's client connection (`hyper::client::conn::http1`) over a
//! `TcpStream` with `TCP_NODELAY`: no pool, no redirects, no decompression (it asks
//! for none, so the server's gzip layer stays out of it), one request at a time.
//! Every response's status is checked and every body read to its end; any non-2xx
//! answer or I/O error is counted in the client's [`Errors`], never ignored. After
//! an I/O error the connection is dropped and the next request opens a new one.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result, ensure};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Response, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// How many error messages a client keeps word for word (the rest are counted).
const KEEP: usize = 3;

/// The errors a client met: how many, of which kind, and the first few in full.
#[derive(Debug, Default, Clone)]
pub struct Errors {
    pub count: u64,
    /// `HTTP 503`, `I/O`, ... -> how many.
    pub kinds: BTreeMap<String, u64>,
    pub first: Vec<String>,
}

impl Errors {
    pub fn record(&mut self, kind: impl Into<String>, detail: String) {
        self.count += 1;
        *self.kinds.entry(kind.into()).or_default() += 1;
        if self.first.len() < KEEP {
            self.first.push(detail);
        }
    }

    pub fn merge(&mut self, other: &Errors) {
        self.count += other.count;
        for (k, n) in &other.kinds {
            *self.kinds.entry(k.clone()).or_default() += n;
        }
        for d in &other.first {
            if self.first.len() < KEEP {
                self.first.push(d.clone());
            }
        }
    }

    /// `0 errors`, or `3 errors (HTTP 503: 3; first: ...)`.
    pub fn summary(&self) -> String {
        if self.count == 0 {
            return "0 errors".to_owned();
        }
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        format!(
            "{} errors ({}; first: {})",
            self.count,
            kinds.join(", "),
            self.first.first().map(String::as_str).unwrap_or("-")
        )
    }
}

/// One virtual client: one keep-alive connection, one request at a time.
#[derive(Debug)]
pub struct Client {
    addr: SocketAddr,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
    pub errors: Errors,
    /// Connections opened after the first (each follows an I/O error).
    pub reconnects: u64,
}

async fn handshake(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    // Drives the connection; its failures surface in the requests on it.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Result<Client> {
        Ok(Client {
            addr,
            host: HeaderValue::from_str(&addr.to_string())?,
            sender: Some(handshake(addr).await?),
            errors: Errors::default(),
            reconnects: 0,
        })
    }

    /// Connects `n` clients.
    pub async fn pool(addr: SocketAddr, n: usize) -> Result<Vec<Client>> {
        let mut clients = Vec::with_capacity(n);
        for _ in 0..n {
            clients.push(Client::connect(addr).await?);
        }
        Ok(clients)
    }

    fn request(&self, method: Method, uri: Uri, body: Option<Bytes>) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(body.clone().unwrap_or_default()));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(HOST, self.host.clone());
        if body.is_some() {
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        req
    }

    async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            self.sender = None;
            self.reconnects += 1;
            self.sender = Some(handshake(self.addr).await?);
        }
        let sender = self.sender.as_mut().context("no connection")?;
        sender.ready().await?;
        Ok(sender.send_request(req).await?)
    }

    /// Sends a request and reads its whole body: the response if it is 2xx, else
    /// `None` with the error counted.
    pub async fn call(
        &mut self,
        method: Method,
        uri: Uri,
        body: Option<Bytes>,
    ) -> Option<Response<Bytes>> {
        let what = format!("{method} {uri}");
        let req = self.request(method, uri, body);
        let got = async {
            let resp = self.send(req).await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Response::from_parts(parts, body))
        }
        .await;
        match got {
            Ok(resp) if resp.status().is_success() => Some(resp),
            Ok(resp) => {
                let status = resp.status();
                let text = String::from_utf8_lossy(resp.body());
                let text: String = text.chars().take(300).collect();
                self.errors.record(
                    format!("HTTP {}", status.as_u16()),
                    format!("{what}: {status} {text}"),
                );
                None
            }
            Err(e) => {
                self.sender = None;
                self.errors.record("I/O", format!("{what}: {e:#}"));
                None
            }
        }
    }

    pub async fn get(&mut self, uri: Uri) -> Option<Response<Bytes>> {
        self.call(Method::GET, uri, None).await
    }

    pub async fn post_json(&mut self, uri: Uri, body: Bytes) -> Option<Response<Bytes>> {
        self.call(Method::POST, uri, Some(body)).await
    }

    /// A GET whose body is read as it comes (an event stream): the response once
    /// its head is in, which must be 200.
    pub async fn stream(&mut self, uri: Uri) -> Result<Response<Incoming>> {
        let req = self.request(Method::GET, uri.clone(), None);
        let resp = self.send(req).await?;
        ensure!(resp.status().is_success(), "GET {uri}: {}", resp.status());
        Ok(resp)
    }
}

/// One message of an event stream (`text/event-stream`).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: String,
}

/// Reads the messages of an event stream out of its body as it arrives.
#[derive(Debug)]
pub struct SseReader {
    body: Incoming,
    buf: Vec<u8>,
}

impl SseReader {
    pub fn new(resp: Response<Incoming>) -> SseReader {
        SseReader {
            body: resp.into_body(),
            buf: Vec::new(),
        }
    }

    /// The next message (comments skipped); `None` when the stream ends.
    pub async fn next(&mut self) -> Result<Option<SseMessage>> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buf.drain(..end + 2).collect();
                if let Some(m) = parse(&block[..end]) {
                    return Ok(Some(m));
                }
                continue;
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => return Ok(None),
            }
        }
    }
}

/// One block of `field: value` lines; `None` for a comment-only block.
fn parse(block: &[u8]) -> Option<SseMessage> {
    let text = String::from_utf8_lossy(block);
    let mut m = SseMessage::default();
    let mut any = false;
    for line in text.split('\n') {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "event" => m.event = value.to_owned(),
            "id" => m.id = Some(value.to_owned()),
            "data" => {
                if !m.data.is_empty() {
                    m.data.push('\n');
                }
                m.data.push_str(value);
            }
            _ => {}
        }
    }
    if m.event.is_empty() {
        m.event = "message".to_owned();
    }
    any.then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_blocks() {
        let m = parse(b"event: event\nid: 1-0\ndata: {\"revision\":1}").unwrap();
        assert_eq!(m.event, "event");
        assert_eq!(m.id.as_deref(), Some("1-0"));
        assert_eq!(m.data, "{\"revision\":1}");
        assert!(parse(b": keep-alive").is_none());
    }

    #[test]
    fn errors_add_up() {
        let mut a = Errors::default();
        a.record("HTTP 503", "busy".to_owned());
        let mut b = Errors::default();
        b.record("I/O", "reset".to_owned());
        b.record("HTTP 503", "busy".to_owned());
        a.merge(&b);
        assert_eq!(a.count, 3);
        assert_eq!(a.kinds["HTTP 503"], 2);
        assert!(a.summary().starts_with("3 errors (HTTP 503: 2, I/O: 1"));
    }
}
