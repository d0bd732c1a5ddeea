//! `streamfold watch --plugins DIR`: the reducer author's loop. Every `.wasm` in
//! the folder is registered and activated at start, and again whenever it
//! changes, so a rebuild is all it takes to see the new state. The host also
//! follows activations made elsewhere, like any long-running host.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use streamfold::{RegisterOptions, Runtime};

use super::Global;
use crate::connect;
use crate::output::outln;

/// Register and activate every component in a folder, and again whenever one
/// changes: rebuild a reducer and the next replay uses it. Stops on Ctrl-C.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The folder of `.wasm` components.
    #[arg(long)]
    plugins: PathBuf,
    /// How often to look for changes, in milliseconds.
    #[arg(long, default_value_t = 300)]
    interval_ms: u64,
}

pub(crate) async fn run(g: &Global, args: Args) -> Result<()> {
    let rt = connect::runtime(g).await?;
    watch(&rt, &args.plugins, Duration::from_millis(args.interval_ms)).await
}

async fn watch(rt: &Runtime, dir: &Path, interval: Duration) -> Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a folder", dir.display());
    }
    rt.follow_activations().await?;
    outln!(
        "watching {} for .wasm components (Ctrl-C stops)",
        dir.display()
    )?;
    let mut seen: HashMap<PathBuf, (SystemTime, u64)> = HashMap::new();
    let mut tick = tokio::time::interval(interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        for (path, stamp) in scan(dir)? {
            if seen.get(&path) == Some(&stamp) {
                continue;
            }
            // A file still being written is picked up at the next tick.
            if !settled(&path, stamp) {
                continue;
            }
            seen.insert(path.clone(), stamp);
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!("{}: cannot read: {e}", path.display());
                    continue;
                }
            };
            match rt
                .register(bytes, RegisterOptions::default().activate(true))
                .await
            {
                Ok(reg) => outln!(
                    "{}: {} active for {:?}",
                    path.display(),
                    reg.info.label(),
                    reg.info.aggregate_type
                )?,
                Err(e) => tracing::warn!("{}: refused: {e}", path.display()),
            }
        }
    }
}

fn scan(dir: &Path) -> Result<Vec<(PathBuf, (SystemTime, u64))>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm")
            && let Ok(meta) = std::fs::metadata(&path)
        {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            out.push((path, (modified, meta.len())));
        }
    }
    out.sort();
    Ok(out)
}

/// Whether the file looks complete: unchanged for a moment.
fn settled(path: &Path, stamp: (SystemTime, u64)) -> bool {
    std::thread::sleep(Duration::from_millis(50));
    std::fs::metadata(path)
        .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()) == stamp)
        .unwrap_or(false)
}
