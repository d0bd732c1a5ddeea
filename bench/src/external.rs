//! The baselines that run outside this process: the Python references
//! (`bench/*_reference.py serve`: long-lived subprocesses answering one JSON request
//! per line, timing inside Python) and `redis-benchmark` (the ceiling for `XADD`).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// A Python reference script, running: `python bench/<script> serve --url URL`,
/// which prints a hello line (its versions), then answers each JSON request line
/// with one JSON line (`{"error": ...}` when it failed).
#[derive(Debug)]
pub struct PyServe {
    /// What the messages call it: "the seed reference".
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// How long one request may take.
    timeout: Duration,
    /// Its hello line: the Python, redis-py and hiredis versions.
    pub hello: Value,
}

impl PyServe {
    /// Starts `script` (a file of `bench/`) against the Redis at `url` and reads its
    /// hello line.
    pub async fn start(
        python: &Path,
        script: &str,
        url: &str,
        name: &'static str,
        timeout: Duration,
    ) -> Result<PyServe> {
        let mut child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
            .args(["serve", "--url", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot run {}", python.display()))?;
        let stdin = child.stdin.take().context("python stdin")?;
        let mut lines = BufReader::new(child.stdout.take().context("python stdout")?).lines();
        let hello = lines
            .next_line()
            .await?
            .with_context(|| format!("{name} exited at start (is redis-py installed?)"))?;
        let hello: Value =
            serde_json::from_str(&hello).with_context(|| format!("{name} said {hello:?}"))?;
        Ok(PyServe {
            name,
            child,
            stdin,
            lines,
            timeout,
            hello,
        })
    }

    /// A redis-py reference of a section (`groups_reference.py`, ...), its hello
    /// line printed for the run's log.
    pub async fn redis_py(
        python: &Path,
        script: &str,
        url: &str,
        timeout: Duration,
    ) -> Result<PyServe> {
        let py = PyServe::start(python, script, url, "the redis-py reference", timeout).await?;
        eprintln!("  redis-py reference: {}", py.hello);
        Ok(py)
    }

    /// One request, one reply.
    pub async fn call(&mut self, request: Value) -> Result<Value> {
        let name = self.name;
        self.stdin
            .write_all(format!("{request}\n").as_bytes())
            .await?;
        self.stdin.flush().await?;
        let line = tokio::time::timeout(self.timeout, self.lines.next_line())
            .await
            .with_context(|| format!("{name} took longer than {:?}", self.timeout))??
            .with_context(|| format!("{name} exited"))?;
        let reply: Value = serde_json::from_str(&line)?;
        if let Some(e) = reply.get("error") {
            bail!("{name} failed: {e}");
        }
        Ok(reply)
    }

    /// Closes its input (it exits) and waits for it.
    pub async fn stop(mut self) {
        drop(self.stdin);
        let _ = self.child.wait().await;
    }
}

/// The seed reference (`bench/seed_reference.py`), running.
#[derive(Debug)]
pub struct SeedPython {
    py: PyServe,
}

/// Which redis-py reply parser the seed's client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parser {
    /// redis-py's default: hiredis, since the venv installs it.
    Default,
    /// redis-py's own pure-Python parser.
    Python,
}

impl Parser {
    fn name(self) -> &'static str {
        match self {
            Parser::Default => "default",
            Parser::Python => "python",
        }
    }
}

/// What one timed Python replay gave.
#[derive(Debug)]
pub struct SeedRun {
    pub seconds: f64,
    pub state: String,
}

const SCRIPT: &str = "seed_reference.py";

impl SeedPython {
    /// Starts `python seed_reference.py serve --url URL` and reads its hello line.
    pub async fn start(python: &Path, url: &str) -> Result<SeedPython> {
        // Generous: a full run's longest request replays 100,000 events in pure Python.
        let py = PyServe::start(
            python,
            SCRIPT,
            url,
            "the seed reference",
            Duration::from_secs(600),
        )
        .await?;
        Ok(SeedPython { py })
    }

    /// Its hello line: the Python, redis-py and hiredis versions.
    pub fn hello(&self) -> &Value {
        &self.py.hello
    }

    async fn ask_raw(&mut self, request: Value) -> Result<Value> {
        self.py.call(request).await
    }

    async fn ask(&mut self, request: Value) -> Result<SeedRun> {
        let reply = self.ask_raw(request).await?;
        Ok(SeedRun {
            seconds: reply["seconds"].as_f64().context("no seconds")?,
            state: reply["state"].as_str().context("no state")?.to_owned(),
        })
    }

    /// The seed's `replay_to_state` over the stream `key`.
    pub async fn replay(&mut self, key: &str, parser: Parser) -> Result<SeedRun> {
        self.ask(json!({"op": "replay", "key": key, "parser": parser.name()}))
            .await
    }

    /// The seed's `load_with_snapshot`: the snapshot hash `snapshot_key` (fields
    /// `state` and `version_id`), then `XRANGE key version_id +`.
    pub async fn replay_snapshot(
        &mut self,
        key: &str,
        snapshot_key: &str,
        parser: Parser,
    ) -> Result<SeedRun> {
        self.ask(json!({"op": "replay_snapshot", "key": key, "snapshot_key": snapshot_key, "parser": parser.name()}))
            .await
    }

    /// The seed's `replay_to_state` over every stream of `keys`, one after another:
    /// the seconds the whole loop took.
    pub async fn replay_many(&mut self, keys: &[String], parser: Parser) -> Result<f64> {
        let reply = self
            .ask_raw(json!({"op": "replay_many", "keys": keys, "parser": parser.name()}))
            .await?;
        reply["seconds"].as_f64().context("no seconds")
    }

    /// `GET` of every path (`/v1/...`) from one keep-alive `http.client` connection
    /// to the server at `addr`, each body parsed with `json.loads`: the seconds the
    /// whole loop took.
    pub async fn http_many(&mut self, addr: std::net::SocketAddr, paths: &[String]) -> Result<f64> {
        let v = self
            .ask_raw(json!({"op": "http_many", "host": addr.ip().to_string(), "port": addr.port(), "paths": paths}))
            .await?;
        v["seconds"].as_f64().context("no seconds in the reply")
    }

    pub async fn stop(self) {
        self.py.stop().await;
    }
}

/// Runs `redis-benchmark` with one command, `n` requests from `clients`
/// connections with `pipeline` commands in flight each; returns requests/s
/// (parsed from its `--csv` output).
pub async fn redis_benchmark(
    port: u16,
    clients: usize,
    pipeline: usize,
    n: u64,
    command: &[String],
) -> Result<f64> {
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-c", &clients.to_string()])
        .args(["-P", &pipeline.to_string()])
        .args(["-n", &n.to_string()])
        .arg("--csv")
        .args(command)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run redis-benchmark (Debian: apt-get install redis-tools)")?;
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_csv_rps(&String::from_utf8_lossy(&out.stdout))
}

/// The `rps` column of redis-benchmark's CSV: the test's name (the command line,
/// quotes and all, unescaped) comes first, then seven numeric columns.
fn parse_csv_rps(csv: &str) -> Result<f64> {
    for line in csv.lines().rev() {
        let cols: Vec<&str> = line.trim().trim_matches('"').split("\",\"").collect();
        if cols.len() >= 8
            && let Ok(rps) = cols[cols.len() - 7].parse::<f64>()
        {
            return Ok(rps);
        }
    }
    bail!("no rps in redis-benchmark's output: {csv:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_redis_benchmark_csv() {
        let csv = concat!(
            "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n",
            "\"XADD k * data {\"a\":\"b\",\"c\":1} version 1\",\"196078.44\",\"0.321\",\"0.080\",\"0.151\",\"0.207\",\"4.471\",\"7.951\"\n"
        );
        assert_eq!(parse_csv_rps(csv).unwrap(), 196078.44);
        assert!(parse_csv_rps("nothing").is_err());
    }
}
