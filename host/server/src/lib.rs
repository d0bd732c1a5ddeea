//! `streamfold-server`: the host as a service. JSON over HTTP under `/v1`, errors as
//! `application/problem+json`, bearer tokens with roles, bounds on everything, and a
//! graceful shutdown. The CLI's `streamfold serve` runs it; an application can too.
//!
//! # A tour
//! - [`ServerConfig`]: where to listen, the tokens, the limits. Without tokens the
//!   server listens on loopback only and refuses anything else unless
//!   [`ServerConfig::insecure`] says so.
//! - [`Server::bind`] checks the configuration and binds; [`Server::run`] serves
//!   until the shutdown future completes, then lets requests in flight finish
//!   within [`ServerConfig::shutdown_timeout`].
//! - `routes/mod.rs` declares every route once (`api()`): its handler, the role it
//!   needs and the type that role is checked against, its body and its problems;
//!   `routes/declare.rs` turns each declaration into a guard that runs before the
//!   handler reads anything, and into the route's OpenAPI entry.
//! - `routes/`: one file per resource — `events` (appends, histories, the category
//!   feed), `state` (replays, with ETags), `subscribe` (live subscriptions as
//!   Server-Sent Events, resumable with `Last-Event-ID`, with `state=true` pushing
//!   the reducer's state), `plugins` (the registry), `ops`
//!   (`/healthz`, `/readyz`, which reports what the background check in `health` last found); `metrics`
//!   serves `/metrics` (Prometheus text).
//! - [`auth`]: tokens (hashes only) and roles.
//! - [`problem`]: every error: its [`ProblemType`] (slug, title, status) and the
//!   fields a caller acts on.
//!
//! The server always follows activations (hot reload): a newly activated reducer
//! serves the next request. Replays run on the runtime's blocking pool, never on the
//! threads that answer requests, and at most [`ServerConfig::max_concurrent_replays`]
//! run at once: beyond that a request waits for a slot at most
//! [`ServerConfig::replay_queue_timeout`], then gets 503 with `Retry-After`.
#![warn(missing_docs)]

pub mod auth;
mod health;
mod metrics;
pub mod problem;
mod routes;
mod session;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt;
use streamfold::Runtime;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use auth::{Caller, Role, Tokens, new_token};
pub use problem::{Problem, ProblemType};

/// The OpenAPI 3.1 document of a server with the default configuration over a store
/// with the default key layout. A running server serves its own
/// (`GET /v1/openapi.json`), with its limits.
pub fn openapi() -> serde_json::Value {
    openapi_for(&ServerConfig::default(), streamfold::Layout::Default)
}

/// The OpenAPI 3.1 document of a server with `config` over a store with `layout`.
pub fn openapi_for(config: &ServerConfig, layout: streamfold::Layout) -> serde_json::Value {
    routes::openapi::document(config, layout)
}

/// How a server is set up. Every field has a sensible, safe default.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Where to listen. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// The tokens accepted (`None`: no authentication, loopback only).
    pub tokens: Option<Tokens>,
    /// Listen on a non-loopback address without tokens. Default false: refused.
    pub insecure: bool,
    /// Largest append body. Default 1 MiB.
    pub append_body_bytes: usize,
    /// Largest plugin upload. Default 64 MiB.
    pub plugin_body_bytes: usize,
    /// Most events in one append. Default 1,000.
    pub max_events_per_append: usize,
    /// Longest a request may take (not subscriptions). Default 30 s.
    pub request_timeout: Duration,
    /// Replays (and verifications) running at once; more get 503. Default 16.
    pub max_concurrent_replays: usize,
    /// How long a replay waits for a slot when all are taken, before 503. Default 1 s
    /// (zero: refuse at once).
    pub replay_queue_timeout: Duration,
    /// Largest page of events a read may ask for. Default 10,000.
    pub max_page: usize,
    /// Live subscriptions open at once; more get 503. Default 1,024.
    pub max_subscribers: usize,
    /// How long a subscriber may leave its buffer of events full before it is
    /// disconnected (a client too slow to keep up). Default 30 s.
    pub slow_client_timeout: Duration,
    /// How often an idle subscription gets a keep-alive comment. Default 15 s.
    pub heartbeat: Duration,
    /// How long requests in flight may take to finish after a shutdown signal.
    /// Default 10 s.
    pub shutdown_timeout: Duration,
    /// How long a browser session (`POST /v1/session`) lasts. Default 8 h.
    pub session_lifetime: Duration,
    /// Mark session cookies `Secure` (sent over HTTPS only): for a server behind a TLS
    /// proxy. A request that says `X-Forwarded-Proto: https` gets one anyway.
    /// Default false.
    pub secure_cookies: bool,
    /// Serve the explorer, a web page under `/ui/` (and redirect `/` there).
    /// Default true.
    pub ui: bool,
    /// Run the active projections (`Runtime::run_projections`): every server that
    /// shares a Redis competes for them, one runner per projection version at a
    /// time. Default true.
    pub projections: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tokens: None,
            insecure: false,
            append_body_bytes: 1 << 20,
            plugin_body_bytes: 64 << 20,
            max_events_per_append: 1000,
            request_timeout: Duration::from_secs(30),
            max_concurrent_replays: 16,
            replay_queue_timeout: Duration::from_secs(1),
            max_page: 10_000,
            max_subscribers: 1024,
            slow_client_timeout: Duration::from_secs(30),
            heartbeat: Duration::from_secs(15),
            shutdown_timeout: Duration::from_secs(10),
            session_lifetime: Duration::from_secs(8 * 3600),
            secure_cookies: false,
            ui: true,
            projections: true,
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::listen`].
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }
    /// Sets [`ServerConfig::tokens`].
    pub fn tokens(mut self, tokens: Option<Tokens>) -> Self {
        self.tokens = tokens;
        self
    }
    /// Sets [`ServerConfig::insecure`].
    pub fn insecure(mut self, on: bool) -> Self {
        self.insecure = on;
        self
    }
    /// Sets [`ServerConfig::append_body_bytes`].
    pub fn append_body_bytes(mut self, n: usize) -> Self {
        self.append_body_bytes = n;
        self
    }
    /// Sets [`ServerConfig::plugin_body_bytes`].
    pub fn plugin_body_bytes(mut self, n: usize) -> Self {
        self.plugin_body_bytes = n;
        self
    }
    /// Sets [`ServerConfig::max_events_per_append`].
    pub fn max_events_per_append(mut self, n: usize) -> Self {
        self.max_events_per_append = n.clamp(1, streamfold::MAX_BATCH);
        self
    }
    /// Sets [`ServerConfig::request_timeout`].
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }
    /// Sets [`ServerConfig::max_concurrent_replays`].
    pub fn max_concurrent_replays(mut self, n: usize) -> Self {
        self.max_concurrent_replays = n.max(1);
        self
    }
    /// Sets [`ServerConfig::replay_queue_timeout`].
    pub fn replay_queue_timeout(mut self, t: Duration) -> Self {
        self.replay_queue_timeout = t;
        self
    }

    /// Sets [`ServerConfig::max_subscribers`].
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n.max(1);
        self
    }
    /// Sets [`ServerConfig::slow_client_timeout`].
    pub fn slow_client_timeout(mut self, t: Duration) -> Self {
        self.slow_client_timeout = t;
        self
    }
    /// Sets [`ServerConfig::heartbeat`].
    pub fn heartbeat(mut self, t: Duration) -> Self {
        self.heartbeat = t;
        self
    }
    /// Sets [`ServerConfig::session_lifetime`].
    pub fn session_lifetime(mut self, t: Duration) -> Self {
        self.session_lifetime = t;
        self
    }
    /// Sets [`ServerConfig::secure_cookies`].
    pub fn secure_cookies(mut self, on: bool) -> Self {
        self.secure_cookies = on;
        self
    }
    /// Sets [`ServerConfig::ui`].
    pub fn ui(mut self, on: bool) -> Self {
        self.ui = on;
        self
    }
    /// Sets [`ServerConfig::projections`].
    pub fn projections(mut self, on: bool) -> Self {
        self.projections = on;
        self
    }
    /// Sets [`ServerConfig::shutdown_timeout`].
    pub fn shutdown_timeout(mut self, t: Duration) -> Self {
        self.shutdown_timeout = t;
        self
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) runtime: Runtime,
    pub(crate) tokens: Option<Arc<Tokens>>,
    pub(crate) replays: Arc<Semaphore>,
    pub(crate) subscribers: Arc<Semaphore>,
    pub(crate) config: Arc<ServerConfig>,
    /// Turns true when the server starts shutting down (long-lived responses end).
    pub(crate) stopping: tokio::sync::watch::Receiver<bool>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Signs and checks browser session cookies (with tokens only: without them
    /// there is nothing to sign in with).
    pub(crate) sessions: Option<session::Sessions>,
    /// Whether Redis answers, kept current in the background (`/readyz`).
    pub(crate) health: health::Health,
    /// The OpenAPI document this server serves, rendered once.
    pub(crate) openapi: Arc<String>,
}

/// A bound server, ready to [`run`](Server::run).
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: axum::Router,
    runtime: Runtime,
    config: ServerConfig,
    stop: tokio::sync::watch::Sender<bool>,
}

/// Why a server could not start.
#[derive(Debug)]
pub struct StartError(String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StartError {}

impl Server {
    /// Checks the configuration, follows activations, and binds the listener.
    ///
    /// Refuses a non-loopback address without tokens unless `insecure` is set:
    /// an open event store on the network is never the default.
    pub async fn bind(runtime: Runtime, config: ServerConfig) -> Result<Server, StartError> {
        if config.tokens.is_none() && !config.listen.ip().is_loopback() && !config.insecure {
            return Err(StartError(format!(
                "refusing to listen on {} without tokens: anyone who can reach it could read and write every aggregate. Give a tokens file, listen on a loopback address, or pass --insecure",
                config.listen
            )));
        }
        runtime
            .follow_activations()
            .await
            .map_err(|e| StartError(format!("cannot follow plugin activations: {e}")))?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let api = routes::api(&config);
        let layout = runtime.store().config().layout;
        let openapi = serde_json::to_string_pretty(&openapi_for(&config, layout))
            .expect("the OpenAPI document serializes");
        let health = health::Health::start(runtime.clone(), stopping.clone()).await;
        let sessions = match &config.tokens {
            Some(_) => Some(
                session::Sessions::load(&runtime)
                    .await
                    .map_err(|e| StartError(format!("cannot load the session key: {e}")))?,
            ),
            None => None,
        };
        let state = AppState {
            sessions,
            health,
            runtime: runtime.clone(),
            tokens: config.tokens.clone().map(Arc::new),
            replays: Arc::new(Semaphore::new(config.max_concurrent_replays)),
            subscribers: Arc::new(Semaphore::new(config.max_subscribers)),
            config: Arc::new(config.clone()),
            stopping,
            metrics: metrics::Metrics::new(config.max_concurrent_replays),
            openapi: Arc::new(openapi),
        };
        state.metrics.watch_instances(state.runtime.clone());
        state.metrics.watch_redis(state.health.clone());
        state
            .metrics
            .watch_groups(state.runtime.clone(), state.stopping.clone());
        Ok(Server {
            listener,
            runtime,
            router: routes::router(state, &api),
            config,
            stop,
        })
    }

    /// The address the server listens on (with the port chosen, if it was 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes; then stops accepting, ends long-lived
    /// responses, lets requests in flight finish within the shutdown timeout, and
    /// returns. Connections still open after it are closed.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = self.stop;
        let mut stopping = stop.subscribe();
        let signal = async move {
            let _ = stopping.wait_for(|s| *s).await;
        };
        let app = self
            .router
            .into_make_service_with_connect_info::<SocketAddr>();
        // Small answers and stream events go out as they are written, not held back
        // for the peer's acknowledgement of the last ones (Nagle's algorithm).
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
            }
        });
        let serve = axum::serve(listener, app).with_graceful_shutdown(signal);
        let mut serve = tokio::spawn(async move { serve.await });
        // The projections run beside the requests and stop with them (releasing their
        // leases, so that another server takes over at once).
        let projections = self.config.projections.then(|| {
            let runtime = self.runtime.clone();
            let mut stopping = stop.subscribe();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stopping.wait_for(|s| *s).await;
                };
                if let Err(e) = runtime.run_projections(stopped).await {
                    tracing::error!("the projections stopped: {e}");
                }
            })
        });
        let stop_projections = |projections: Option<tokio::task::JoinHandle<()>>| async move {
            if let Some(p) = projections {
                let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
            }
        };
        tokio::select! {
            done = &mut serve => {
                let _ = stop.send(true);
                stop_projections(projections).await;
                return done.map_err(std::io::Error::other)?;
            }
            _ = shutdown => {}
        }
        let deadline = self.config.shutdown_timeout;
        tracing::info!("shutting down: waiting up to {deadline:?} for requests in flight");
        let _ = stop.send(true);
        let served = match tokio::time::timeout(deadline, &mut serve).await {
            Ok(done) => done.map_err(std::io::Error::other)?,
            Err(_) => {
                tracing::warn!("requests still in flight after {deadline:?}: closing them");
                serve.abort();
                Ok(())
            }
        };
        stop_projections(projections).await;
        served
    }
}
