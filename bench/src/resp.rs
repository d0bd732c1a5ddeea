//! A lean RESP2 reader for `XRANGE`, over a plain TCP connection: how fast the
//! same pages come in when the reply is not first built into `redis::Value`s.
//!
//! DESIGN.md ("Redis facts") measured the `redis` crate's value parsing at ~3x the
//! cost of a lean reader on long `XRANGE` replies. This module is the measuring stick
//! for that claim in this run: it fetches the same pages with no decoding (to compare
//! with the `redis::Value` floor) and decodes them straight into
//! [`RecordedEvent`]s (to compare with [`EventStore::history`](streamfold::EventStore::history)),
//! so a proposed fix in `host/src/store/read.rs` comes with numbers.

use anyhow::{Context, Result, bail};
use streamfold::store::RecordedEvent;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One connection, one reply at a time.
#[derive(Debug)]
pub struct LeanConn {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
}

/// Where a frame scan stopped: resumable when more bytes arrive.
#[derive(Debug, Default)]
struct Scan {
    pos: usize,
    /// Elements still to come at each open array level.
    stack: Vec<i64>,
}

impl LeanConn {
    pub async fn connect(port: u16) -> Result<LeanConn> {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .context("lean RESP connection")?;
        stream.set_nodelay(true)?;
        Ok(LeanConn {
            stream,
            buf: Vec::with_capacity(1 << 20),
            out: Vec::with_capacity(256),
        })
    }

    async fn send(&mut self, args: &[&[u8]]) -> Result<()> {
        self.out.clear();
        self.out
            .extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            self.out
                .extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            self.out.extend_from_slice(a);
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&self.out).await?;
        Ok(())
    }

    /// Reads until `self.buf` starts with one complete reply; returns its length.
    async fn read_frame(&mut self) -> Result<usize> {
        let mut scan = Scan::default();
        loop {
            if let Some(end) = scan_frame(&self.buf, &mut scan)? {
                return Ok(end);
            }
            if self.buf.capacity() - self.buf.len() < 64 * 1024 {
                self.buf.reserve(256 * 1024);
            }
            let n = self.stream.read_buf(&mut self.buf).await?;
            if n == 0 {
                bail!("redis closed the connection mid-reply");
            }
        }
    }

    async fn xrange(&mut self, key: &str, start: &str, count: usize) -> Result<usize> {
        let count = count.to_string();
        self.send(&[
            b"XRANGE",
            key.as_bytes(),
            start.as_bytes(),
            b"+",
            b"COUNT",
            count.as_bytes(),
        ])
        .await?;
        self.read_frame().await
    }

    /// One page, not decoded: how many entries, and the last one's id.
    pub async fn page_raw(
        &mut self,
        key: &str,
        start: &str,
        count: usize,
    ) -> Result<(usize, Option<String>)> {
        let end = self.xrange(key, start, count).await?;
        let mut c = Cursor {
            b: &self.buf[..end],
            p: 0,
        };
        let n = c.array()?;
        let mut last = None;
        for i in 0..n {
            if c.array()? != 2 {
                bail!("a stream entry is not [id, fields]");
            }
            let id = c.bulk()?;
            if i + 1 == n {
                last = Some(String::from_utf8(id.to_vec())?);
            }
            let fields = c.array()?;
            for _ in 0..fields {
                c.bulk()?;
            }
        }
        self.buf.drain(..end);
        Ok((n, last))
    }

    /// One page decoded into events, the way `history()` decodes it (every field
    /// into an owned `String`), for an aggregate stream whose entries carry their
    /// revision.
    pub async fn page_events(
        &mut self,
        key: &str,
        start: &str,
        count: usize,
        aggregate: (&str, &str),
        out: &mut Vec<RecordedEvent>,
    ) -> Result<(usize, Option<String>)> {
        let end = self.xrange(key, start, count).await?;
        let mut c = Cursor {
            b: &self.buf[..end],
            p: 0,
        };
        let n = c.array()?;
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).context("not UTF-8");
        let mut last = None;
        for i in 0..n {
            if c.array()? != 2 {
                bail!("a stream entry is not [id, fields]");
            }
            let id = c.bulk()?;
            let fields = c.array()?;
            let mut e = RecordedEvent {
                event_id: String::new(),
                aggregate_type: String::new(),
                aggregate_id: String::new(),
                event_type: String::new(),
                data: String::new(),
                timestamp: String::new(),
                version: String::new(),
                revision: 0,
                position: text(id)?,
            };
            for _ in 0..fields / 2 {
                let name = c.bulk()?;
                let value = c.bulk()?;
                match name {
                    b"event_id" => e.event_id = text(value)?,
                    b"aggregate_type" => e.aggregate_type = text(value)?,
                    b"aggregate_id" => e.aggregate_id = text(value)?,
                    b"event_type" => e.event_type = text(value)?,
                    b"data" => e.data = text(value)?,
                    b"timestamp" => e.timestamp = text(value)?,
                    b"version" => e.version = text(value)?,
                    b"revision" => e.revision = std::str::from_utf8(value)?.parse()?,
                    _ => {}
                }
            }
            if e.aggregate_type.is_empty() {
                e.aggregate_type = aggregate.0.to_owned();
            }
            if e.aggregate_id.is_empty() {
                e.aggregate_id = aggregate.1.to_owned();
            }
            if i + 1 == n {
                last = Some(e.position.clone());
            }
            out.push(e);
        }
        self.buf.drain(..end);
        Ok((n, last))
    }
}

/// Finds the end of the first complete reply in `buf`, resuming where the last call
/// stopped; `None` until all of it is there.
fn scan_frame(buf: &[u8], st: &mut Scan) -> Result<Option<usize>> {
    loop {
        let Some(cr) = buf[st.pos..].iter().position(|&b| b == b'\r') else {
            return Ok(None);
        };
        let line_end = st.pos + cr;
        if line_end + 2 > buf.len() {
            return Ok(None);
        }
        let kind = buf[st.pos];
        let header = &buf[st.pos + 1..line_end];
        match kind {
            b'*' => {
                let n = int(header)?;
                st.pos = line_end + 2;
                if n > 0 {
                    st.stack.push(n);
                    continue;
                }
            }
            b'$' => {
                let n = int(header)?;
                let end = if n < 0 {
                    line_end + 2
                } else {
                    line_end + 2 + n as usize + 2
                };
                if end > buf.len() {
                    return Ok(None);
                }
                st.pos = end;
            }
            b'+' | b':' => st.pos = line_end + 2,
            b'-' => bail!(
                "redis error: {}",
                String::from_utf8_lossy(&buf[st.pos + 1..line_end])
            ),
            other => bail!("unexpected RESP type byte {other:#x}"),
        }
        // One element finished: close every array it completes.
        loop {
            match st.stack.last_mut() {
                None => return Ok(Some(st.pos)),
                Some(top) => {
                    *top -= 1;
                    if *top == 0 {
                        st.stack.pop();
                    } else {
                        break;
                    }
                }
            }
        }
    }
}

fn int(b: &[u8]) -> Result<i64> {
    Ok(std::str::from_utf8(b)?.parse()?)
}

/// Walks a complete reply.
struct Cursor<'a> {
    b: &'a [u8],
    p: usize,
}

impl<'a> Cursor<'a> {
    fn line(&mut self, kind: u8) -> Result<i64> {
        if self.b.get(self.p) != Some(&kind) {
            bail!("expected RESP type {:?}", kind as char);
        }
        let cr = self.b[self.p..]
            .iter()
            .position(|&x| x == b'\r')
            .context("truncated reply")?;
        let n = int(&self.b[self.p + 1..self.p + cr])?;
        self.p += cr + 2;
        Ok(n)
    }

    fn array(&mut self) -> Result<usize> {
        Ok(usize::try_from(self.line(b'*')?).unwrap_or(0))
    }

    fn bulk(&mut self) -> Result<&'a [u8]> {
        let n = usize::try_from(self.line(b'$')?).context("nil bulk string")?;
        let s = &self.b[self.p..self.p + n];
        self.p += n + 2;
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_complete_only_when_whole() {
        let reply =
            b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$2\r\nbb\r\n*2\r\n$3\r\n2-0\r\n*0\r\n";
        for cut in 0..reply.len() {
            let mut st = Scan::default();
            assert_eq!(scan_frame(&reply[..cut], &mut st).unwrap(), None, "{cut}");
            // ... and resumes to the right end once the rest is there.
            assert_eq!(
                scan_frame(&reply[..], &mut st).unwrap(),
                Some(reply.len()),
                "{cut}"
            );
        }
        let mut st = Scan::default();
        assert_eq!(scan_frame(b"*0\r\nextra", &mut st).unwrap(), Some(4));
        assert!(scan_frame(b"-ERR x\r\n", &mut Scan::default()).is_err());
    }
}
