//! What the `groups` and `projections` sections measure beside time: CPU per event
//! (this process's, Redis's) and Redis's own command statistics, plus the latency
//! helpers both use.

use std::collections::HashMap;
use std::time::Instant;

use anyhow::Result;
use streamfold::EventStore;

use crate::report::fmt_num;

/// CPU seconds of this process so far (user + system, all threads; /proc ticks of
/// 10 ms).
pub(crate) fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(") ").map_or("", |(_, s)| s);
    let f: Vec<&str> = after.split_whitespace().collect();
    let tick = |i: usize| {
        f.get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    (tick(11) + tick(12)) / 100.0
}

/// `INFO commandstats`: command -> (calls, µs).
pub(crate) async fn command_stats(store: &EventStore) -> Result<HashMap<String, (u64, u64)>> {
    let mut con = store.connection();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut con)
        .await?;
    let mut out = HashMap::new();
    for line in info.lines() {
        let Some((name, fields)) = line
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |f: &str| {
            fields
                .split(',')
                .find_map(|kv| kv.strip_prefix(f))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(name.to_owned(), (field("calls="), field("usec=")));
    }
    Ok(out)
}

/// The three commands that took most of Redis' time between two
/// [`command_stats`], per 1,000 events: `evalsha 20 calls of 500 µs, ...`.
pub(crate) fn top_commands(
    before: &HashMap<String, (u64, u64)>,
    after: &HashMap<String, (u64, u64)>,
    events: u64,
) -> String {
    let mut d: Vec<(&str, u64, u64)> = after
        .iter()
        .map(|(k, (c, u))| {
            let (c0, u0) = before.get(k).copied().unwrap_or((0, 0));
            (k.as_str(), c.saturating_sub(c0), u.saturating_sub(u0))
        })
        .filter(|(k, c, _)| *c > 0 && *k != "info")
        .collect();
    d.sort_by_key(|c| std::cmp::Reverse(c.2));
    let per = 1000.0 / events.max(1) as f64;
    d.iter()
        .take(3)
        .map(|(k, c, u)| {
            format!(
                "{k} {} calls of {} µs",
                fmt_num(*c as f64 * per),
                fmt_num(*u as f64 / (*c).max(1) as f64)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// redis-server's CPU seconds so far (`INFO cpu`, user + system).
pub(crate) async fn redis_cpu(store: &EventStore) -> Result<f64> {
    let mut con = store.connection();
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut con).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    Ok(field("used_cpu_sys:") + field("used_cpu_user:"))
}

pub(crate) fn ns(base: Instant) -> u64 {
    u64::try_from(base.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// The `q` quantile (0..=1) of sorted values.
pub(crate) fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What a measured round saw besides its rate, for its row's note.
#[derive(Debug, Clone, Default)]
pub(crate) struct Side {
    /// Events per call: per fetch, commit or read, as the section says.
    pub(crate) per_call: f64,
    /// CPU of this process, µs per event.
    pub(crate) bench_cpu_us: f64,
    /// CPU of redis-server, µs per event.
    pub(crate) redis_cpu_us: f64,
    /// CPU of the Python process(es), µs per event.
    pub(crate) python_cpu_us: f64,
    /// The Redis commands that took most of its time (`INFO commandstats`).
    pub(crate) commands: String,
}

/// Redis's CPU and command statistics at the start of a round.
pub(crate) struct RedisMark {
    cpu: f64,
    stats: HashMap<String, (u64, u64)>,
}

impl RedisMark {
    pub(crate) async fn now(store: &EventStore) -> Result<RedisMark> {
        Ok(RedisMark {
            cpu: redis_cpu(store).await?,
            stats: command_stats(store).await?,
        })
    }

    /// Fills `side`'s Redis figures with what Redis did since the mark, over `events`.
    pub(crate) async fn since(
        self,
        store: &EventStore,
        events: u64,
        side: &mut Side,
    ) -> Result<()> {
        side.redis_cpu_us = (redis_cpu(store).await? - self.cpu) * 1e6 / events as f64;
        side.commands = top_commands(&self.stats, &command_stats(store).await?, events);
        Ok(())
    }
}

/// The [`Side`]s of the measured rounds, by variant.
#[derive(Default)]
pub(crate) struct Sides(std::sync::Mutex<HashMap<String, Vec<Side>>>);

impl Sides {
    pub(crate) fn record(&self, key: &str, side: Side) {
        self.0
            .lock()
            .expect("sides")
            .entry(key.to_owned())
            .or_default()
            .push(side);
    }

    /// One figure of each of `key`'s rounds.
    fn each(&self, key: &str, f: impl Fn(&Side) -> f64) -> Vec<f64> {
        let sides = self.0.lock().expect("sides");
        sides.get(key).into_iter().flatten().map(f).collect()
    }

    /// The median over `key`'s rounds of one figure.
    pub(crate) fn median(&self, key: &str, f: fn(&Side) -> f64) -> f64 {
        crate::stats::Stat::of(&self.each(key, f)).median
    }

    /// `key`'s rounds' CPU per event, every process counted (this one, Redis, Python).
    pub(crate) fn total_cpu(&self, key: &str) -> Vec<f64> {
        self.each(key, |s| s.bench_cpu_us + s.redis_cpu_us + s.python_cpu_us)
    }

    /// `key`'s last round's top commands, labelled so.
    pub(crate) fn last_commands(&self, key: &str) -> String {
        self.0
            .lock()
            .expect("sides")
            .get(key)
            .and_then(|v| v.last())
            .map(|s| format!("{} (last round)", s.commands))
            .unwrap_or_default()
    }
}
