//! Many small aggregates (issue 13): what most users have. `count` aggregates of
//! 10 events each (10,000 in full mode), replayed one after another and 8 at a
//! time, alternating in the same rounds:
//!
//! - the floor: each aggregate's `XRANGE` fetched on the store's read connection,
//!   not decoded;
//! - the Rust, JavaScript and Python `user` components through `Runtime::state`, on
//!   warm instances (the default) — and the Rust one on fresh instances, the
//!   instantiation that warm instances save;
//! - the same states through the server (`GET /v1/aggregates/user/{id}/state` over
//!   loopback HTTP, one keep-alive connection per client, the active Rust reducer);
//! - the same states read by a Python client (issue 23): the benchmark's Python
//!   process, one keep-alive `http.client` connection, `GET .../state` and
//!   `json.loads` of each, with the Rust, the JavaScript and the Python reducer
//!   active in turn (sequential only): what a Python service gets from the server,
//!   against the seed's loop in that same process;
//! - with the state cache on (the runtime's default; every other row has it off, so
//!   that it measures replays): `Runtime::state`, the Rust client through a server
//!   over that runtime, and the Python client through it with each reducer active;
//!   every aggregate read before, nothing appended since, so each read is one
//!   `XRANGE` from the held state's last entry and no reducer call; and, with each
//!   reducer, reads of aggregates of its own that each got one event since their
//!   last read (appended before the clock): the held state restored and that one
//!   event folded onto it;
//! - the seed's Python loop (`replay_to_state` over every aggregate), with redis-py's
//!   pure-Python parser and with hiredis.
//!
//! Figures are microseconds per aggregate (a round's total over the count).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use futures::StreamExt;
use streamfold::{Instances, Plugin, ReplayOptions, Runtime};

use crate::data::{self, TYPE};
use crate::external::Parser;
use crate::report::Row;
use crate::stats::alternate;
use crate::{Ctx, Lang, faster, fmt_count, row, times};

/// Events per aggregate.
pub const EVENTS: u64 = 10;
/// Replays in flight in the concurrent variants.
pub const CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum V {
    Floor,
    Warm(Lang),
    Fresh,
    Server,
    /// The Python client through the server, this reducer active.
    PyHttp(Lang),
    /// `Runtime::state` with the state cache on, every aggregate read before and
    /// nothing appended since (the Rust reducer active).
    Cached,
    /// The Rust client through a server whose runtime has the state cache on.
    ServerCached,
    /// The Python client through that server, this reducer active.
    PyHttpCached(Lang),
    /// `Runtime::state` with the state cache on, this reducer active, over its own
    /// aggregates, each with one event appended since its last read (before the
    /// clock): the held state and that one event folded onto it.
    Grow(Lang),
    Seed(Parser),
}

impl V {
    fn label(self) -> &'static str {
        match self {
            V::Floor => "floor",
            V::Warm(Lang::Rust) => "wasm-rust",
            V::Warm(Lang::JavaScript) => "wasm-js",
            V::Warm(Lang::Python) => "wasm-py",
            V::Fresh => "wasm-rust-fresh",
            V::Server => "server-rust",
            V::PyHttp(Lang::Rust) => "py-http-rust",
            V::PyHttp(Lang::JavaScript) => "py-http-js",
            V::PyHttp(Lang::Python) => "py-http-py",
            V::Cached => "cached-rust",
            V::ServerCached => "server-rust-cached",
            V::PyHttpCached(Lang::Rust) => "py-http-rust-cached",
            V::PyHttpCached(Lang::JavaScript) => "py-http-js-cached",
            V::PyHttpCached(Lang::Python) => "py-http-py-cached",
            V::Grow(Lang::Rust) => "grow-rust-cached",
            V::Grow(Lang::JavaScript) => "grow-js-cached",
            V::Grow(Lang::Python) => "grow-py-cached",
            V::Seed(Parser::Default) => "seed",
            V::Seed(Parser::Python) => "seed-pure",
        }
    }
}

struct Data {
    ids: Vec<String>,
    keys: Vec<String>,
    /// A runtime on the same store whose instances are all fresh, and the Rust
    /// reducer loaded there (a plugin belongs to its runtime's engine).
    fresh: Runtime,
    fresh_rust: Arc<Plugin>,
    /// The state URIs of `ids`, and one keep-alive client per concurrent reader.
    uris: Vec<hyper::Uri>,
    clients: Vec<tokio::sync::Mutex<crate::http::Client>>,
    /// The server's address, and the digest of each language's `user` reducer
    /// (registered; the variant through the server activates the one it needs).
    addr: std::net::SocketAddr,
    digests: Vec<(Lang, String)>,
    /// A runtime on the same store with the state cache on, a server over it, and
    /// one keep-alive client of that server per concurrent reader.
    cached: Runtime,
    cached_addr: std::net::SocketAddr,
    cached_clients: Vec<tokio::sync::Mutex<crate::http::Client>>,
    /// Each language's own aggregates for [`V::Grow`], and the languages whose
    /// aggregates were read once already (every later read must start from a held
    /// state).
    grow: Vec<(Lang, Vec<String>)>,
    grown: std::sync::Mutex<Vec<Lang>>,
}

impl Data {
    async fn activate(&self, ctx: &Ctx, lang: Lang) -> Result<()> {
        self.activate_on(&ctx.rt, lang).await
    }

    fn grow_ids(&self, lang: Lang) -> Result<&[String]> {
        self.grow
            .iter()
            .find(|(l, _)| *l == lang)
            .map(|(_, ids)| ids.as_slice())
            .context("grow aggregates")
    }

    /// Activates `lang`'s reducer through `rt` (which then knows it at once; the
    /// other runtime learns it from Redis).
    async fn activate_on(&self, rt: &Runtime, lang: Lang) -> Result<()> {
        let digest = self
            .digests
            .iter()
            .find(|(l, _)| *l == lang)
            .map(|(_, d)| d)
            .context("registered")?;
        rt.activate(TYPE, digest).await?;
        Ok(())
    }
}

/// Appends one event to each of `ids` (16 at a time).
async fn grow_by_one(ctx: &Ctx, ids: &[String]) -> Result<()> {
    let results: Vec<_> = futures::stream::iter(ids.iter().enumerate())
        .map(|(i, id)| {
            let event = data::new_event(i as u64, EVENTS + 1);
            ctx.store
                .append(TYPE, id, vec![event], streamfold::ExpectedRevision::Any)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        r?;
    }
    Ok(())
}

/// Every aggregate's state through `plugin` on `rt`, `concurrency` at a time, each
/// checked to have read [`EVENTS`] events.
pub async fn replay_all(
    rt: &Runtime,
    plugin: &Arc<Plugin>,
    ids: &[String],
    concurrency: usize,
) -> Result<()> {
    let options = ReplayOptions::default()
        .use_snapshots(false)
        .plugin(plugin.clone());
    let results: Vec<_> = futures::stream::iter(ids)
        .map(|id| {
            let options = options.clone();
            async move { rt.state(TYPE, id, options).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    for r in results {
        let r = r?;
        ensure!(r.events_read == EVENTS, "read {} events", r.events_read);
    }
    Ok(())
}

/// One run of a variant over every aggregate: microseconds per aggregate.
async fn run_variant(ctx: &Ctx, d: &Data, v: V, concurrency: usize) -> Result<f64> {
    // Before the clock: the reducer the server replays with.
    match v {
        V::Server => d.activate(ctx, Lang::Rust).await?,
        V::PyHttp(lang) => d.activate(ctx, lang).await?,
        V::Cached | V::ServerCached => d.activate_on(&d.cached, Lang::Rust).await?,
        V::PyHttpCached(lang) => d.activate_on(&d.cached, lang).await?,
        V::Grow(lang) => {
            d.activate_on(&d.cached, lang).await?;
            grow_by_one(ctx, d.grow_ids(lang)?).await?;
        }
        _ => {}
    }
    let n = d.ids.len() as f64;
    let t = Instant::now();
    let us = |t: Instant| t.elapsed().as_secs_f64() * 1e6 / n;
    match v {
        V::Floor => {
            let store = &ctx.store;
            let page = store.config().page_size;
            let got: Vec<_> = futures::stream::iter(&d.keys)
                .map(|key| crate::replay::floor(store, key, "-", page))
                .buffer_unordered(concurrency)
                .collect()
                .await;
            for g in got {
                ensure!(g? == EVENTS as usize, "the floor read another count");
            }
        }
        V::Warm(lang) => replay_all(&ctx.rt, ctx.reducers.get(lang), &d.ids, concurrency).await?,
        V::Fresh => replay_all(&d.fresh, &d.fresh_rust, &d.ids, concurrency).await?,
        V::Cached => {
            let results: Vec<_> = futures::stream::iter(&d.ids)
                .map(|id| d.cached.state(TYPE, id, ReplayOptions::default()))
                .buffer_unordered(concurrency)
                .collect()
                .await;
            for r in results {
                ensure!(r?.revision == EVENTS, "another revision");
            }
        }
        V::Grow(lang) => {
            let results: Vec<_> = futures::stream::iter(d.grow_ids(lang)?)
                .map(|id| d.cached.state(TYPE, id, ReplayOptions::default()))
                .buffer_unordered(concurrency)
                .collect()
                .await;
            let elapsed = us(t);
            let mut grown = d.grown.lock().expect("grown");
            let first = !grown.contains(&lang);
            for r in results {
                let r = r?;
                ensure!(
                    first || (r.cached_revision.is_some() && r.events_read == 1),
                    "a read did not start from the held state one event back \
                     (held {:?}, {} events read)",
                    r.cached_revision,
                    r.events_read
                );
            }
            if first {
                grown.push(lang);
            }
            return Ok(elapsed);
        }
        V::Server | V::ServerCached => {
            let clients = if v == V::Server {
                &d.clients
            } else {
                &d.cached_clients
            };
            // `concurrency` clients, each taking every concurrency-th aggregate.
            let reads = (0..concurrency).map(|c| async move {
                let mut client = clients[c].lock().await;
                let before = client.errors.count;
                for uri in d.uris.iter().skip(c).step_by(concurrency) {
                    client.get(uri.clone()).await;
                }
                ensure!(
                    client.errors.count == before,
                    "the server answered with errors: {}",
                    client.errors.summary()
                );
                anyhow::Ok(())
            });
            for r in futures::future::join_all(reads).await {
                r?;
            }
        }
        V::PyHttp(_) | V::PyHttpCached(_) => {
            let addr = if matches!(v, V::PyHttp(_)) {
                d.addr
            } else {
                d.cached_addr
            };
            let paths: Vec<String> = d
                .uris
                .iter()
                .map(|u| {
                    u.path_and_query()
                        .map_or_else(String::new, |p| p.to_string())
                })
                .collect();
            let mut seed = ctx.seed.lock().await;
            let seconds = seed
                .as_mut()
                .context("seed reference")?
                .http_many(addr, &paths)
                .await?;
            return Ok(seconds * 1e6 / n);
        }
        V::Seed(parser) => {
            let mut seed = ctx.seed.lock().await;
            let seconds = seed
                .as_mut()
                .context("seed reference")?
                .replay_many(&d.keys, parser)
                .await?;
            return Ok(seconds * 1e6 / n);
        }
    }
    Ok(us(t))
}

pub async fn run(ctx: &Ctx) -> Result<Vec<Row>> {
    let count = ctx.plan.small_aggregates;
    eprintln!(
        "  small: {} aggregates of {EVENTS} events",
        fmt_count(count as u64)
    );
    let ids = data::ensure_aggregates(&ctx.store, "small", count, EVENTS).await?;
    let keys = ids
        .iter()
        .map(|id| Ok(ctx.store.keys(TYPE, id)?.stream))
        .collect::<Result<Vec<_>>>()?;
    let fresh = Runtime::new(
        ctx.store.clone(),
        ctx.runtime_config(Some(ctx.cache_dir.clone()))
            .instances(Instances::Fresh),
    )?;
    let (fresh_rust, _) = fresh
        .load_async(ctx.reducers.bytes(Lang::Rust).into())
        .await?;
    // The server replays through the active reducer: each variant through it
    // activates the one it measures (the Rust `user` for the Rust client's).
    let mut digests = Vec::new();
    for lang in ctx.reducers.langs() {
        let reg = ctx
            .rt
            .register(
                ctx.reducers.bytes(lang),
                streamfold::RegisterOptions::default(),
            )
            .await?;
        digests.push((lang, reg.info.digest.clone()));
    }
    let server = streamfold_server::Server::bind(
        ctx.rt.clone(),
        streamfold_server::ServerConfig::default().listen("127.0.0.1:0".parse()?),
    )
    .await?;
    let addr = server.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let uris = ids
        .iter()
        .map(|id| crate::server::state_uri(id, ""))
        .collect::<Result<Vec<_>>>()?;
    let clients = crate::http::Client::pool(addr, CONCURRENCY)
        .await?
        .into_iter()
        .map(tokio::sync::Mutex::new)
        .collect();
    let cached = Runtime::new(
        ctx.store.clone(),
        ctx.runtime_config(Some(ctx.cache_dir.clone()))
            .state_cache_bytes(64 << 20),
    )?;
    let cached_server = streamfold_server::Server::bind(
        cached.clone(),
        streamfold_server::ServerConfig::default().listen("127.0.0.1:0".parse()?),
    )
    .await?;
    let cached_addr = cached_server.local_addr()?;
    let (stop_cached, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving_cached = tokio::spawn(cached_server.run(async move {
        let _ = stopped.await;
    }));
    let cached_clients = crate::http::Client::pool(cached_addr, CONCURRENCY)
        .await?
        .into_iter()
        .map(tokio::sync::Mutex::new)
        .collect();
    let mut grow = Vec::new();
    for lang in ctx.reducers.langs() {
        let ids =
            data::ensure_aggregates(&ctx.store, &format!("grow-{}", lang.name()), count, EVENTS)
                .await?;
        grow.push((lang, ids));
    }
    let d = Data {
        ids,
        keys,
        fresh,
        fresh_rust,
        uris,
        clients,
        addr,
        digests,
        cached,
        cached_addr,
        cached_clients,
        grow,
        grown: std::sync::Mutex::new(Vec::new()),
    };

    let seed = ctx.seed.lock().await.is_some();
    let mut rows = Vec::new();
    for concurrency in [1, CONCURRENCY] {
        let mut variants = vec![V::Floor];
        variants.extend(ctx.reducers.langs().map(V::Warm));
        variants.push(V::Fresh);
        variants.push(V::Server);
        variants.push(V::Cached);
        variants.push(V::ServerCached);
        // The seed's loop is sequential (one redis-py connection).
        if concurrency == 1 {
            variants.extend(ctx.reducers.langs().map(V::Grow));
        }
        if seed && concurrency == 1 {
            variants.extend(ctx.reducers.langs().map(V::PyHttp));
            variants.extend(ctx.reducers.langs().map(V::PyHttpCached));
            variants.push(V::Seed(Parser::Python));
            variants.push(V::Seed(Parser::Default));
        }
        let d = &d;
        let s = alternate(
            &variants,
            ctx.plan.warmup,
            ctx.plan.rounds,
            |v, _| async move { run_variant(ctx, d, v, concurrency).await },
        )
        .await?;
        let mode = if concurrency == 1 {
            "sequential".to_owned()
        } else {
            format!("{concurrency} at a time")
        };
        let section = format!(
            "Many small aggregates: {} aggregates of {EVENTS} events, {mode} (µs per aggregate)",
            fmt_count(count as u64)
        );
        let k = |name: &str| format!("small.{concurrency}.{name}");
        let at = |v: V| {
            variants
                .iter()
                .position(|x| *x == v)
                .map(|i| s[i].as_slice())
        };
        let floor = at(V::Floor).context("floor")?;
        let seed_pure = at(V::Seed(Parser::Python));
        let seed_default = at(V::Seed(Parser::Default));
        let warm_rust = at(V::Warm(Lang::Rust)).context("rust")?;
        for (i, v) in variants.iter().enumerate() {
            let samples = &s[i];
            let name = match v {
                V::Floor => {
                    "floor: each aggregate's XRANGE on the store's read connection, not decoded"
                        .to_owned()
                }
                V::Warm(lang) => format!("{} reducer, warm instances (the default)", lang.title()),
                V::Fresh => "Rust reducer, a fresh instance per replay".to_owned(),
                V::Server => "through the server: GET .../state over loopback HTTP (the active Rust reducer, warm; snapshot lookup included)".to_owned(),
                V::PyHttp(lang) => format!(
                    "a Python client through the server: http.client keep-alive, GET .../state and json.loads, the {} reducer active",
                    lang.title()
                ),
                V::Cached => "the state cache on (the default; the runs above have it off): Runtime::state, each aggregate read before, nothing appended since (one XRANGE from the held state's last entry, no reducer call)".to_owned(),
                V::ServerCached => "through the server, the state cache on (the default): GET .../state, each aggregate read before, nothing appended since".to_owned(),
                V::Grow(lang) => format!(
                    "the state cache on, the {} reducer, one event appended to each aggregate since its last read (before the clock): Runtime::state folds that event onto the held state",
                    lang.title()
                ),
                V::PyHttpCached(lang) => format!(
                    "a Python client through the server, the state cache on (the default), each aggregate read before: http.client keep-alive, GET .../state and json.loads, the {} reducer active",
                    lang.title()
                ),
                V::Seed(Parser::Python) => {
                    "the seed's Python loop, redis-py's pure-Python parser".to_owned()
                }
                V::Seed(Parser::Default) => "the seed's Python loop, hiredis".to_owned(),
            };
            let mut r = row(&k(v.label()), &section, &name, "µs", samples);
            if !matches!(v, V::Floor) {
                r.ratios
                    .push(times(samples, floor, &k("floor"), "the floor's time"));
            }
            if matches!(
                v,
                V::Warm(_)
                    | V::Fresh
                    | V::Server
                    | V::PyHttp(_)
                    | V::Cached
                    | V::ServerCached
                    | V::PyHttpCached(_)
            ) {
                if let Some(p) = seed_pure {
                    r.ratios.push(faster(
                        samples,
                        p,
                        &small_key(1, "seed-pure"),
                        "faster than the seed (pure-Python parser)",
                        true,
                    ));
                }
                if let Some(p) = seed_default {
                    r.ratios.push(faster(
                        samples,
                        p,
                        &small_key(1, "seed"),
                        "faster than the seed (hiredis)",
                        true,
                    ));
                }
            }
            if matches!(v, V::Server) {
                r.ratios.push(times(
                    samples,
                    warm_rust,
                    &k("wasm-rust"),
                    "the library's time",
                ));
            }
            if let V::Grow(lang) = v
                && let Some(replay) = at(V::Warm(*lang))
            {
                r.ratios.push(times(
                    samples,
                    replay,
                    &k(V::Warm(*lang).label()),
                    "a 10-event replay's time (same reducer, cache off)",
                ));
            }
            if matches!(v, V::ServerCached)
                && let Some(library) = at(V::Cached)
            {
                r.ratios.push(times(
                    samples,
                    library,
                    &k("cached-rust"),
                    "the library's time (the state cache on in both)",
                ));
            }
            if matches!(v, V::Fresh) {
                r.ratios.push(times(
                    samples,
                    warm_rust,
                    &k("wasm-rust"),
                    "the warm instances' time",
                ));
            }
            rows.push(r);
        }
    }
    // Later sections find the Rust `user` active, as before this one.
    d.activate(ctx, Lang::Rust).await?;
    let _ = stop.send(());
    serving.await??;
    let _ = stop_cached.send(());
    serving_cached.await??;
    Ok(rows)
}

/// The key of a row of this section.
pub fn small_key(concurrency: usize, label: &str) -> String {
    format!("small.{concurrency}.{label}")
}
