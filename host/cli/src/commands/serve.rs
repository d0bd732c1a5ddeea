//! `streamfold serve`: the host as an HTTP service (see the README's "Run the host
//! as a service").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use streamfold_server::{Server, ServerConfig, Tokens};

use super::Global;
use crate::output::outln;
use crate::{connect, parse};

/// Run the host as an HTTP service: JSON under /v1, bearer tokens, hot reload.
///
/// Without --tokens the server listens on loopback only; a non-loopback --listen
/// is refused unless --insecure is given. SIGTERM or Ctrl-C drains and exits 0.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on.
    #[arg(long, env = "STREAMFOLD_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The tokens file: `sha256:HASH ROLE [TYPES]` per line (`streamfold token new`).
    #[arg(long, env = "STREAMFOLD_TOKENS")]
    tokens: Option<PathBuf>,
    /// Listen on a non-loopback address without tokens (development only).
    #[arg(long, env = "STREAMFOLD_INSECURE")]
    insecure: bool,
    /// Largest append body, e.g. 1MiB.
    #[arg(long, env = "STREAMFOLD_MAX_APPEND_BODY", default_value = "1MiB", value_parser = parse::bytes)]
    max_append_body: usize,
    /// Largest plugin upload, e.g. 64MiB.
    #[arg(long, env = "STREAMFOLD_MAX_PLUGIN_BODY", default_value = "64MiB", value_parser = parse::bytes)]
    max_plugin_body: usize,
    /// Most events in one append.
    #[arg(long, env = "STREAMFOLD_MAX_EVENTS_PER_APPEND", default_value_t = 1000)]
    max_events_per_append: usize,
    /// Longest a request may take, e.g. 30s.
    #[arg(long, env = "STREAMFOLD_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse::duration)]
    request_timeout: Duration,
    /// Replays running at once; more wait for a slot (see --replay-queue-timeout).
    #[arg(long, env = "STREAMFOLD_MAX_REPLAYS", default_value_t = 16)]
    max_replays: usize,
    /// How long a replay waits for a slot before 503 with Retry-After, e.g. 1s.
    #[arg(long, env = "STREAMFOLD_REPLAY_QUEUE_TIMEOUT", default_value = "1s", value_parser = parse::duration)]
    replay_queue_timeout: Duration,
    /// Live subscriptions open at once; more get 503.
    #[arg(long, env = "STREAMFOLD_MAX_SUBSCRIBERS", default_value_t = 1024)]
    max_subscribers: usize,
    /// How long a subscriber may stop reading before it is disconnected, e.g. 30s.
    #[arg(long, env = "STREAMFOLD_SLOW_CLIENT_TIMEOUT", default_value = "30s", value_parser = parse::duration)]
    slow_client_timeout: Duration,
    /// How long requests in flight may take to finish on shutdown, e.g. 10s.
    #[arg(long, env = "STREAMFOLD_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse::duration)]
    shutdown_timeout: Duration,
    /// How long a browser session (POST /v1/session) lasts, e.g. 8h.
    #[arg(long, env = "STREAMFOLD_SESSION_LIFETIME", default_value = "8h", value_parser = parse::duration)]
    session_lifetime: Duration,
    /// Mark session cookies Secure (HTTPS only): behind a TLS proxy. A request with
    /// X-Forwarded-Proto: https gets one anyway.
    #[arg(long, env = "STREAMFOLD_SECURE_COOKIES")]
    secure_cookies: bool,
    /// Do not serve the explorer (the web page under /ui/).
    #[arg(long, env = "STREAMFOLD_NO_UI")]
    no_ui: bool,
    /// Do not run projections here (other servers, or `streamfold projection run`,
    /// run them; this one still serves their documents).
    #[arg(long, env = "STREAMFOLD_NO_PROJECTIONS")]
    no_projections: bool,
    /// Print this server's OpenAPI 3.1 document (what GET /v1/openapi.json would serve)
    /// and exit.
    #[arg(long)]
    print_openapi: bool,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let tokens = match &args.tokens {
        Some(path) => Some(Tokens::load(path).map_err(anyhow::Error::msg)?),
        None => None,
    };
    let config = ServerConfig::default()
        .listen(args.listen)
        .tokens(tokens)
        .insecure(args.insecure)
        .append_body_bytes(args.max_append_body)
        .plugin_body_bytes(args.max_plugin_body)
        .max_events_per_append(args.max_events_per_append)
        .request_timeout(args.request_timeout)
        .max_concurrent_replays(args.max_replays)
        .replay_queue_timeout(args.replay_queue_timeout)
        .max_subscribers(args.max_subscribers)
        .slow_client_timeout(args.slow_client_timeout)
        .shutdown_timeout(args.shutdown_timeout)
        .session_lifetime(args.session_lifetime)
        .secure_cookies(args.secure_cookies)
        .ui(!args.no_ui)
        .projections(!args.no_projections);
    if args.print_openapi {
        // This server's document: its limits, and the names its key layout accepts.
        let doc = streamfold_server::openapi_for(&config, g.layout);
        let doc = serde_json::to_string_pretty(&doc).context("the OpenAPI document")?;
        outln!("{doc}")?;
        return Ok(());
    }
    let ui = config.ui;
    let rt = connect::runtime(g).await?;
    let server = Server::bind(rt, config).await?;
    let addr = server.local_addr().context("the listening address")?;
    // One line on stderr that scripts (and the tests) can wait for.
    eprintln!("listening on http://{addr}");
    if ui {
        eprintln!("explorer: http://{addr}/ui/");
    }
    server.run(shutdown_signal()).await.context("serving")?;
    Ok(())
}

/// SIGTERM or Ctrl-C (SIGINT).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown signal received");
}
