//! Streamfold's benchmarks (issue 7): one command, figures as ratios against
//! baselines measured in the same run.
//!
//! ```text
//! ./dev bench            # quick mode, about 8 minutes (--only to pick sections)
//! ./dev bench --full     # BENCHMARKS.md: 7 rounds, longer samples, JS/Python cold compiles
//! cargo run --release -p streamfold-bench -- [--quick|--full] [--only replay,...] [--python PY] [--json FILE]
//! ```
//!
//! Sections (`--only`): `append`, `replay`, `memory`, `lifecycle`, `server` (through
//! the HTTP server), `small` (many small aggregates), `cluster` (Redis Cluster),
//! `groups` (durable subscriptions, issue 21: fetch + ack throughput with 1 and 8 HTTP
//! workers against hand-written redis-py `XREADGROUP`/`XACK` workers,
//! `bench/groups_reference.py`, and append -> delivery latency at 1,000 events/s) and
//! `projections` (issue 20: events per second through the `email-domains` projection,
//! Rust and JavaScript, against a seed-style redis-py `XREAD` + `GET`/`SET` loop,
//! `bench/projections_reference.py`, and append -> visible in the read model at
//! 1,000 events/s).
//!
//! Everything runs against a private `redis-server` started here (`LocalRedis`).
//! Each comparison alternates its variants round by round (after warm-up rounds),
//! and every ratio is computed per round, so a noisy neighbour slows a variant and
//! its baseline alike. The table goes to stdout (markdown), the same figures to
//! `target/bench/results.json`, with the machine (cores, CPU, load averages).

mod append;
mod cluster;
mod data;
mod external;
mod groups;
mod http;
mod lifecycle;
mod machine;
mod memory;
mod probe;
mod projections;
mod replay;
mod report;
mod server;
mod small;
mod stats;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use streamfold::Plugin;
use streamfold::StoreConfig;
use streamfold::{EventStore, Runtime, RuntimeConfig};
use streamfold_test_support::LocalRedis;

use crate::external::SeedPython;
use crate::machine::Machine;
use crate::report::{Goal, Ratio, Report, RoundsInfo, Row, fmt_num, fmt_ratio};
use crate::stats::Stat;

#[derive(Debug, Parser)]
#[command(
    about = "Streamfold's benchmarks: one command, ratios against baselines measured in the same run"
)]
struct Args {
    /// Quick mode (the default): fewer and shorter rounds, about 8 minutes in all.
    #[arg(long, conflicts_with = "full")]
    quick: bool,
    /// Full mode: more rounds, longer samples, 100,000-event memory figures, cold
    /// compiles of the JavaScript and Python components.
    #[arg(long)]
    full: bool,
    /// Run only these sections.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Section>,
    /// A Python with redis-py (and hiredis) for the seed's reference replay;
    /// default: target/bench-venv/bin/python if it exists. Without one, the seed's
    /// Python baseline is skipped.
    #[arg(long, env = "STREAMFOLD_BENCH_PYTHON")]
    python: Option<PathBuf>,
    /// Where to write the JSON (default: target/bench/results.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Instead of benchmarking: run one replay variant back to back (for `perf
    /// record` or `valgrind --tool=callgrind`): floor, floor-value, history,
    /// native, wasm-rust, wasm-js or wasm-py; or 16 concurrent writers, one event
    /// per append: append16 (the store), append16-seed (the seed's two XADDs) or
    /// append16-bare (those in one script call).
    #[arg(long, value_name = "VARIANT")]
    profile: Option<String>,
    /// With --profile: events in the aggregate.
    #[arg(long, default_value_t = 100_000, requires = "profile")]
    events: u64,
    /// With --profile: for how long.
    #[arg(long, default_value_t = 10.0, requires = "profile")]
    seconds: f64,
    /// Without wasmtime's pooling allocator (whose large address-space reservation
    /// valgrind refuses); instantiation figures are then not the host's.
    #[arg(long)]
    no_pooling: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Section {
    Append,
    Replay,
    Memory,
    Lifecycle,
    Server,
    Small,
    Cluster,
    Groups,
    Projections,
}

/// How much of everything a mode does.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: &'static str,
    pub warmup: usize,
    pub rounds: usize,
    /// Events per sequential-append sample.
    pub singles: u64,
    /// Batches of 100 per batch-append sample.
    pub batches: u64,
    /// Events per writer, 16 writers on 16 aggregates.
    pub writer_events: u64,
    /// Events per writer, 16 writers on one aggregate.
    pub contended_events: u64,
    pub replay_sizes: Vec<u64>,
    /// Largest replay run with redis-py's pure-Python parser too (it is slow).
    pub seed_pure_max: u64,
    /// Replays per instantiation sample.
    pub instantiate_iters: usize,
    /// Cold-compile rounds of the 10+ MB JavaScript and Python components.
    pub big_compile_rounds: usize,
    pub verify_aggregates: usize,
    pub verify_warmup: usize,
    pub verify_rounds: usize,
    pub memory_long: u64,
    pub memory_small: usize,
    /// Aggregates of 10 events in the many-small-aggregates section.
    pub small_aggregates: usize,
    /// Server section: 10-event state reads per 1-client sample.
    pub server_state_reads: usize,
    /// Server section: 10-event state reads per client, 32 clients.
    pub server_state_reads_each: usize,
    /// Server section: 100,000-event state reads per sample.
    pub server_big_reads: usize,
    /// Server section: seconds of appends at 1,000/s per delivery sample.
    pub sse_seconds: f64,
    /// Server section: the soak's length (32 clients).
    pub soak_seconds: f64,
}

impl Plan {
    fn quick() -> Plan {
        Plan {
            mode: "quick",
            warmup: 1,
            rounds: 3,
            singles: 1000,
            batches: 50,
            writer_events: 100,
            contended_events: 20,
            replay_sizes: vec![1_000, 10_000, 100_000],
            seed_pure_max: 100_000,
            instantiate_iters: 200,
            big_compile_rounds: 0,
            verify_aggregates: 10_000,
            verify_warmup: 0,
            verify_rounds: 1,
            memory_long: 10_000,
            memory_small: 10_000,
            small_aggregates: 1_000,
            server_state_reads: 600,
            server_state_reads_each: 50,
            server_big_reads: 1,
            sse_seconds: 1.5,
            soak_seconds: 10.0,
        }
    }

    fn full() -> Plan {
        Plan {
            mode: "full",
            warmup: 1,
            rounds: 7,
            singles: 5000,
            batches: 200,
            writer_events: 500,
            contended_events: 50,
            replay_sizes: vec![1_000, 10_000, 100_000],
            seed_pure_max: 100_000,
            instantiate_iters: 500,
            big_compile_rounds: 3,
            verify_aggregates: 10_000,
            verify_warmup: 1,
            verify_rounds: 3,
            memory_long: 100_000,
            memory_small: 10_000,
            small_aggregates: 10_000,
            server_state_reads: 3000,
            server_state_reads_each: 200,
            server_big_reads: 3,
            sse_seconds: 5.0,
            soak_seconds: 60.0,
        }
    }
}

/// A reducer language of the `user` component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    JavaScript,
    Python,
}

impl Lang {
    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::JavaScript => "js",
            Lang::Python => "py",
        }
    }
    pub fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::JavaScript => "JavaScript",
            Lang::Python => "Python",
        }
    }
}

/// The `user` reducer in each language that is built, loaded once.
#[derive(Debug)]
pub struct Reducers {
    pub rust: Arc<Plugin>,
    pub js: Option<Arc<Plugin>>,
    pub py: Option<Arc<Plugin>>,
    bytes: Vec<(Lang, Vec<u8>)>,
}

impl Reducers {
    pub fn langs(&self) -> impl Iterator<Item = Lang> + use<> {
        let mut v = vec![Lang::Rust];
        if self.js.is_some() {
            v.push(Lang::JavaScript);
        }
        if self.py.is_some() {
            v.push(Lang::Python);
        }
        v.into_iter()
    }
    pub fn get(&self, lang: Lang) -> &Arc<Plugin> {
        match lang {
            Lang::Rust => &self.rust,
            Lang::JavaScript => self.js.as_ref().unwrap_or(&self.rust),
            Lang::Python => self.py.as_ref().unwrap_or(&self.rust),
        }
    }
    pub fn bytes(&self, lang: Lang) -> Vec<u8> {
        self.bytes
            .iter()
            .find(|(l, _)| *l == lang)
            .map(|(_, b)| b.clone())
            .unwrap_or_default()
    }
}

/// Everything the sections share.
#[derive(Debug)]
pub struct Ctx {
    pub plan: Plan,
    pub url: String,
    pub port: u16,
    /// Prefix `bench`: appends and replays.
    pub store: EventStore,
    /// The runtime replays go through (compiled-code cache in target/bench/cache).
    pub rt: Runtime,
    pub reducers: Reducers,
    /// `tests/plugins/user-v2`, the candidate for activation and verify.
    pub user_v2: Option<Vec<u8>>,
    pub cache_dir: PathBuf,
    pub tmp_dir: PathBuf,
    pub seed: tokio::sync::Mutex<Option<SeedPython>>,
    /// The Python with redis-py (`--python`, or the bench venv's), if there is one.
    pub python: Option<PathBuf>,
    pub pooling: bool,
    notes: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn runtime_config(&self, cache: Option<PathBuf>) -> RuntimeConfig {
        runtime_config(cache).pooling(self.pooling)
    }
    pub fn note(&self, note: String) {
        eprintln!("  note: {note}");
        self.notes.lock().expect("notes").push(note);
    }
}

/// Without the state cache: a row that reads an aggregate again measures its
/// replay, not the cache (the rows that measure the cache turn it on).
fn runtime_config(cache: Option<PathBuf>) -> RuntimeConfig {
    RuntimeConfig::default()
        .cache_dir(cache)
        .snapshot_every(None)
        .state_cache_bytes(0)
}

/// A row of samples.
pub fn row(key: &str, section: &str, name: &str, unit: &str, samples: &[f64]) -> Row {
    Row {
        key: key.to_owned(),
        section: section.to_owned(),
        name: name.to_owned(),
        unit: unit.to_owned(),
        value: Stat::of(samples),
        samples: samples.to_vec(),
        ratios: Vec::new(),
        note: None,
    }
}

/// How many times faster than the baseline: for times (`lower_is_better`) theirs /
/// ours, for rates ours / theirs.
pub fn faster(ours: &[f64], theirs: &[f64], against: &str, label: &str, times: bool) -> Ratio {
    let (meaning, value) = if times {
        (
            "baseline time / our time (per round)",
            stats::ratio(ours, theirs, |a, b| b / a),
        )
    } else {
        (
            "our rate / baseline rate (per round)",
            stats::ratio(ours, theirs, |a, b| a / b),
        )
    };
    Ratio {
        against: against.to_owned(),
        meaning: meaning.to_owned(),
        label: label.to_owned(),
        value,
    }
}

/// Our rate as a share of the baseline's (ceilings).
pub fn share(ours: &[f64], theirs: &[f64], against: &str, label: &str) -> Ratio {
    Ratio {
        against: against.to_owned(),
        meaning: "our rate / baseline rate (per round)".to_owned(),
        label: label.to_owned(),
        value: stats::ratio(ours, theirs, |a, b| a / b),
    }
}

/// Our time (or size) in units of the baseline's.
pub fn times(ours: &[f64], theirs: &[f64], against: &str, label: &str) -> Ratio {
    Ratio {
        against: against.to_owned(),
        meaning: "our value / baseline value (per round)".to_owned(),
        label: label.to_owned(),
        value: stats::ratio(ours, theirs, |a, b| a / b),
    }
}

/// `100000` -> `100,000`.
pub fn fmt_count(n: u64) -> String {
    fmt_num(n as f64)
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// The built component of another language's `user` reducer: `env` if set (to
/// benchmark another build), else the one `tests/build.rs` built (`built`).
fn other_component(env: &str, built: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    Some(PathBuf::from(built)).filter(|p| p.is_file())
}

async fn load_reducers(
    rt: &Runtime,
    wanted: impl Fn(Lang) -> bool,
) -> Result<(Reducers, Vec<String>)> {
    let mut notes = Vec::new();
    let user = std::fs::read(streamfold_tests::plugins::USER)
        .with_context(|| format!("reading {}", streamfold_tests::plugins::USER))?;
    let (rust, _) = rt.load_async(user.clone().into()).await?;
    let mut bytes = vec![(Lang::Rust, user)];
    let mut others = [(Lang::JavaScript, None), (Lang::Python, None)];
    for (lang, slot) in &mut others {
        if !wanted(*lang) {
            continue;
        }
        let (env, built) = match lang {
            Lang::JavaScript => (
                "STREAMFOLD_BENCH_USER_JS",
                streamfold_tests::plugins::USER_JS,
            ),
            _ => (
                "STREAMFOLD_BENCH_USER_PY",
                streamfold_tests::plugins::USER_PY,
            ),
        };
        let Some(path) = other_component(env, built) else {
            notes.push(format!(
                "no {} `user` component at {built} (plugins/user-{}); its rows are missing. Set {env} to a built .wasm to include it.",
                lang.title(),
                lang.name()
            ));
            continue;
        };
        let b = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        eprintln!(
            "loading {} ({} KiB; compiled once, then cached in target/bench/cache)",
            path.display(),
            b.len() / 1024
        );
        let (p, _) = rt.load_async(b.clone().into()).await?;
        *slot = Some(p);
        bytes.push((*lang, b));
    }
    let [(_, js), (_, py)] = others;
    Ok((
        Reducers {
            rust,
            js,
            py,
            bytes,
        },
        notes,
    ))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let plan = if args.full {
        Plan::full()
    } else {
        Plan::quick()
    };
    let started = Instant::now();
    let started_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut machine = Machine::now();
    eprintln!(
        "streamfold-bench, {} mode: {} cores, {}, load average {}",
        plan.mode, machine.nproc, machine.cpu_model, machine.loadavg_start
    );

    let root = workspace_root();
    let bench_dir = root.join("target").join("bench");
    let cache_dir = bench_dir.join("cache");
    let tmp_dir = bench_dir.join("tmp");
    let _ = std::fs::remove_dir_all(&tmp_dir);
    std::fs::create_dir_all(&tmp_dir)?;
    std::fs::create_dir_all(&cache_dir)?;

    let redis = LocalRedis::start()?;
    let url = redis.url();
    let store = EventStore::connect(&url, StoreConfig::default().prefix("bench")).await?;
    {
        let mut con = store.connection();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut con)
            .await?;
        machine.redis_version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("?")
            .trim()
            .to_owned();
    }
    let rt = Runtime::new(
        store.clone(),
        runtime_config(Some(cache_dir.clone())).pooling(!args.no_pooling),
    )?;
    // `--profile` loads only the component it runs (under valgrind, loading the
    // 12-18 MB JavaScript and Python components alone takes minutes); the server,
    // groups and projections sections use only the Rust one (or none).
    let (reducers, mut notes) = load_reducers(&rt, |lang| match &args.profile {
        None => {
            args.only.is_empty()
                || args
                    .only
                    .iter()
                    .any(|s| !matches!(s, Section::Server | Section::Groups | Section::Projections))
        }
        Some(v) => *v == format!("wasm-{}", lang.name()),
    })
    .await?;
    // The candidate version for activation and verify.
    let v2_path = std::env::var_os("STREAMFOLD_BENCH_USER_V2")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(streamfold_tests::plugins::USER_V2));
    let user_v2 = match std::fs::read(&v2_path) {
        Ok(b) => Some(b),
        Err(e) => {
            notes.push(format!(
                "no user-v2 component at {} ({e}): activation and verify rows are missing (tests/build.rs builds it as `fixture-user-v2`; or set STREAMFOLD_BENCH_USER_V2)",
                v2_path.display()
            ));
            None
        }
    };

    let python = args.python.clone().or_else(|| {
        let venv = root.join("target/bench-venv/bin/python");
        venv.is_file().then_some(venv)
    });
    let seed = match &python {
        _ if args.profile.is_some() => None,
        Some(py) => match SeedPython::start(py, &url).await {
            Ok(s) => {
                machine.python = Some(s.hello().clone());
                Some(s)
            }
            Err(e) => {
                notes.push(format!(
                    "the seed's Python reference did not start ({e:#}): its rows are missing"
                ));
                None
            }
        },
        None => {
            notes.push("no Python with redis-py (run through `./dev bench`, or pass --python): the seed's Python rows are missing".to_owned());
            None
        }
    };
    for n in &notes {
        eprintln!("  note: {n}");
    }

    let ctx = Ctx {
        plan: plan.clone(),
        url: url.clone(),
        port: redis.port(),
        store,
        rt,
        reducers,
        user_v2,
        cache_dir,
        tmp_dir: tmp_dir.clone(),
        seed: tokio::sync::Mutex::new(seed),
        python: python.clone(),
        pooling: !args.no_pooling,
        notes: Mutex::new(notes),
    };

    if args.no_pooling {
        ctx.note("wasmtime's pooling allocator is off (--no-pooling): instantiation costs are not the host's".to_owned());
    }
    if let Some(variant) = &args.profile
        && variant.starts_with("append16")
    {
        append::profile(&ctx, variant, args.seconds).await?;
        return Ok(());
    }
    if let Some(variant) = &args.profile {
        replay::profile(&ctx, variant, args.events, args.seconds).await?;
        return Ok(());
    }

    let wanted = |s: Section| args.only.is_empty() || args.only.contains(&s);
    let mut rows = Vec::new();
    // The server last: it makes the runtime follow activations.
    let sections: [(Section, &str); 9] = [
        (Section::Append, "appends"),
        (Section::Replay, "replays"),
        (Section::Memory, "memory"),
        (Section::Lifecycle, "plugin life cycle"),
        (Section::Server, "through the server"),
        (Section::Small, "many small aggregates"),
        (Section::Cluster, "Redis Cluster"),
        (Section::Groups, "durable subscriptions"),
        (Section::Projections, "projections"),
    ];
    for (section, title) in sections {
        if !wanted(section) {
            continue;
        }
        let t = Instant::now();
        eprintln!("{title} ...");
        rows.extend(match section {
            Section::Append => append::run(&ctx).await?,
            Section::Replay => replay::run(&ctx).await?,
            Section::Memory => memory::run(&ctx).await?,
            Section::Lifecycle => lifecycle::run(&ctx).await?,
            Section::Server => server::run(&ctx).await?,
            Section::Small => small::run(&ctx).await?,
            Section::Cluster => cluster::run(&ctx).await?,
            Section::Groups => groups::run(&ctx).await?,
            Section::Projections => projections::run(&ctx).await?,
        });
        eprintln!("{title}: {:.1} s", t.elapsed().as_secs_f64());
    }

    if let Some(seed) = ctx.seed.lock().await.take() {
        seed.stop().await;
    }
    machine.loadavg_end = machine::loadavg();
    let mut report = Report {
        mode: plan.mode.to_owned(),
        machine,
        started_at,
        duration_s: started.elapsed().as_secs_f64(),
        rounds: RoundsInfo {
            warmup: plan.warmup,
            measured: plan.rounds,
        },
        rows,
        goals: Vec::new(),
        notes: ctx.notes.lock().expect("notes").clone(),
    };
    report.goals = goals(&report, &plan);
    println!("{}", report.table());
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| bench_dir.join("results.json"));
    report.write_json(&json)?;
    eprintln!("figures written to {}", json.display());
    let _ = std::fs::remove_dir_all(&tmp_dir);
    drop(redis);
    Ok(())
}

/// The goals of issues 7, 12 (through the server), 13 (small aggregates, appends), 20
/// (projections) and 21 (durable subscriptions), held against this run's figures.
fn goals(r: &Report, plan: &Plan) -> Vec<Goal> {
    let ratio = |key: &str, against: &str| -> Option<Stat> {
        r.row(key)?
            .ratios
            .iter()
            .find(|q| q.against == against)
            .map(|q| q.value)
    };
    let fmt_stat = |s: Stat| {
        format!(
            "{} [{}-{}]",
            fmt_ratio(s.median),
            fmt_ratio(s.min),
            fmt_ratio(s.max)
        )
    };
    let n = plan.replay_sizes.iter().copied().max().unwrap_or(0);
    let nk = fmt_count(n);
    let mut goals = Vec::new();
    let mut goal = |goal: String, target: &str, measured: Option<(String, bool)>| {
        let (measured, met) = match measured {
            Some((m, ok)) => (m, Some(ok)),
            None => ("not measured in this run".to_owned(), None),
        };
        goals.push(Goal {
            goal,
            target: target.to_owned(),
            measured,
            met,
        });
    };

    let rk = |name: &str| format!("replay.{n}.{name}");
    let vs_seed = |seed: &str| {
        ratio(&rk("wasm-rust"), &rk(seed))
            .map(|s| (format!("{} faster", fmt_stat(s)), s.median >= 20.0))
    };
    goal(
        format!(
            "Replay of {nk} events, Rust reducer vs the seed's Python as `pip install redis` runs it (pure-Python reply parser)"
        ),
        ">= 20x faster",
        vs_seed("seed-pure"),
    );
    goal(
        format!(
            "Replay of {nk} events, Rust reducer vs the seed's Python with hiredis (`pip install redis[hiredis]`)"
        ),
        ">= 20x faster",
        vs_seed("seed"),
    );
    goal(
        format!("Replay of {nk} events, Rust reducer vs fetch-only floor"),
        "<= 1.3x the floor's time",
        ratio(&rk("wasm-rust"), &rk("floor"))
            .map(|s| (format!("{} the floor's time", fmt_stat(s)), s.median <= 1.3)),
    );
    goal(
        format!("WASM (Rust) vs the same logic native, {nk} events"),
        "<= 1.5x native's time",
        ratio(&rk("wasm-rust"), &rk("native"))
            .map(|s| (format!("{} native's time", fmt_stat(s)), s.median <= 1.5)),
    );
    for lang in [Lang::JavaScript, Lang::Python] {
        let measured = r.row(&rk(&format!("wasm-{}", lang.name()))).map(|row| {
            let rate = n as f64 / (row.value.median / 1e3);
            let worst = n as f64 / (row.value.max / 1e3);
            (
                format!(
                    "{} events/s (slowest run {})",
                    fmt_num(rate),
                    fmt_num(worst)
                ),
                rate >= 100_000.0,
            )
        });
        let g = format!("{} reducer replay throughput ({nk} events)", lang.title());
        goal(g, ">= 100,000 events/s", measured);
    }
    goal(
        "Batch append (100 events) vs redis-benchmark XADD, pipelined".to_owned(),
        ">= 80% of the ceiling",
        ratio("append.batch100.streamfold", "append.batch100.ceiling").map(|s| {
            (
                format!(
                    "{:.0}% [{:.0}-{:.0}%]",
                    s.median * 100.0,
                    s.min * 100.0,
                    s.max * 100.0
                ),
                s.median >= 0.8,
            )
        }),
    );
    goal(
        "Sequential single appends vs the seed's approach".to_owned(),
        ">= 2x the seed's rate",
        ratio("append.sequential.streamfold", "append.sequential.seed")
            .map(|s| (format!("{} the seed's rate", fmt_stat(s)), s.median >= 2.0)),
    );
    goal(
        format!("Replay from a snapshot 100 events before the end ({nk} events, Rust)"),
        "< 2 ms",
        r.row(&format!("snapshot.{n}.wasm-rust")).map(|row| {
            (
                format!(
                    "{} ms median (max {} ms)",
                    fmt_num(row.value.median),
                    fmt_num(row.value.max)
                ),
                row.value.median < 2.0,
            )
        }),
    );
    goal(
        "Activate -> first replay on the new version in a running host".to_owned(),
        "< 100 ms",
        r.row("lifecycle.activate-to-use").map(|row| {
            (
                format!(
                    "{} ms median, {} ms worst of {}",
                    fmt_num(row.value.median),
                    fmt_num(row.value.max),
                    row.value.runs
                ),
                row.value.max < 100.0,
            )
        }),
    );

    // Issues 12 and 23: through the server.
    goal(
        "State of a 10-event aggregate through the server vs the library, 1 client".to_owned(),
        "<= 1.3x the library's time",
        ratio("server.state10.server", "server.state10.library").map(|s| {
            (
                format!("{} the library's time", fmt_stat(s)),
                s.median <= 1.3,
            )
        }),
    );
    goal(
        "Append -> SSE delivery through the server at 1,000 events/s".to_owned(),
        "p99 < 10 ms",
        r.row("server.sse.server.pooled-p99").map(|row| {
            let worst = r
                .row("server.sse.server.p99")
                .map_or(f64::NAN, |p| p.value.max);
            (
                format!(
                    "p99 {} ms over all measured rounds (worst round {} ms)",
                    fmt_num(row.value.median),
                    fmt_num(worst)
                ),
                row.value.median < 10.0,
            )
        }),
    );
    // Issue 13: many small aggregates.
    let small = |label: &str, against: &str| {
        ratio(&small::small_key(1, label), &small::small_key(1, against))
    };
    goal(
        "10-event replay, Rust (warm) vs the seed's Python loop, pure-Python parser".to_owned(),
        ">= 5x faster",
        small("wasm-rust", "seed-pure")
            .map(|s| (format!("{} faster", fmt_stat(s)), s.median >= 5.0)),
    );
    for lang in ["js", "py"] {
        goal(
            format!("10-event replay, {lang} (warm) vs the seed's Python loop, pure-Python parser"),
            ">= 2x faster",
            small(&format!("wasm-{lang}"), "seed-pure")
                .map(|s| (format!("{} faster", fmt_stat(s)), s.median >= 2.0)),
        );
    }
    // Replaying, and with the state cache on (the default; each aggregate read
    // before and nothing appended since).
    for (suffix, how) in [
        ("", ""),
        (
            "-cached",
            ", the state cache on (the default; the aggregate read before)",
        ),
    ] {
        for (lang, title, target) in [
            ("rust", "Rust", 2.0),
            ("js", "JavaScript", 1.5),
            ("py", "Python", 1.5),
        ] {
            goal(
                format!(
                    "10-event state through the server from a Python keep-alive client, {title} reducer{how}, vs the seed's loop in that client (pure-Python parser)"
                ),
                &format!(">= {target}x faster"),
                small(&format!("py-http-{lang}{suffix}"), "seed-pure")
                    .map(|s| (format!("{} faster", fmt_stat(s)), s.median >= target)),
            );
        }
    }
    goal(
        "10-event replay, Rust (warm) vs the fetch-only floor".to_owned(),
        "<= 2x the floor's time",
        small("wasm-rust", "floor")
            .map(|s| (format!("{} the floor's time", fmt_stat(s)), s.median <= 2.0)),
    );
    let nsmall = plan.replay_sizes.iter().copied().min().unwrap_or(0);
    for lang in [Lang::Rust, Lang::JavaScript, Lang::Python] {
        let key = |name: &str| format!("snapshot.{nsmall}.{name}");
        goal(
            format!(
                "Snapshot + 100 events ({} events), {} vs the seed's load_with_snapshot",
                fmt_count(nsmall),
                lang.title()
            ),
            ">= 1x its speed",
            ratio(&key(&format!("wasm-{}", lang.name())), &key("seed"))
                .map(|s| (format!("{} its speed", fmt_stat(s)), s.median >= 1.0)),
        );
    }
    let redis_us = |key: &str| r.row(key).map(|row| row.value.median);
    if let Some(xadd) = redis_us("append.server.seed") {
        let seed_event = 2.0 * xadd;
        for (key, what, limit) in [
            ("append.server.single", "single appends", 2.0),
            ("append.server.batch", "batches of 100", 1.3),
        ] {
            goal(
                format!("Redis time per event, {what}, vs the seed's two XADDs"),
                &format!("<= {limit}x"),
                redis_us(key).map(|us| {
                    let x = us / seed_event;
                    (
                        format!(
                            "{} ({} vs {} µs per event)",
                            fmt_ratio(x),
                            fmt_num(us),
                            fmt_num(seed_event)
                        ),
                        x <= limit,
                    )
                }),
            );
        }
    }
    goal(
        "16 concurrent writers on different aggregates vs the seed's rate".to_owned(),
        ">= 1.5x the seed's rate",
        ratio("append.concurrent16.streamfold", "append.concurrent16.seed").map(|s| {
            let reference = ratio("append.concurrent16.bare", "append.concurrent16.seed")
                .map(|b| {
                    format!(
                        " (the seed's two XADDs alone in one script call per event: {})",
                        fmt_stat(b)
                    )
                })
                .unwrap_or_default();
            (
                format!("{} the seed's rate{reference}", fmt_stat(s)),
                s.median >= 1.5,
            )
        }),
    );
    let soak = r.row("server.soak.errors").map(|row| row.value.median);
    let soak_goal = "Errors with 32 clients over 60 s (appends and state reads)".to_owned();
    match soak {
        Some(errors) if plan.soak_seconds < 60.0 => goals.push(Goal {
            goal: soak_goal,
            target: "zero".to_owned(),
            measured: format!(
                "{errors:.0} errors over {} s ({} mode; `--full` soaks 60 s)",
                plan.soak_seconds, plan.mode
            ),
            met: None,
        }),
        Some(errors) => goals.push(Goal {
            goal: soak_goal,
            target: "zero".to_owned(),
            measured: format!("{errors:.0} errors over {} s", plan.soak_seconds),
            met: Some(errors == 0.0),
        }),
        None => goals.push(Goal {
            goal: soak_goal,
            target: "zero".to_owned(),
            measured: "not measured in this run".to_owned(),
            met: None,
        }),
    }
    // Issue 21: durable subscriptions.
    goals.extend(groups::goals(r));
    // Issue 20: projections.
    goals.extend(projections::goals(r));

    goals
}
