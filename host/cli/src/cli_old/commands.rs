//! One function per command.

use anyhow::{Context, Result};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use streamfold::runtime::{
    Limits, Plugin, ReplayOptions, Runtime, RuntimeConfig, VerifyOptions, VerifyReport,
    short_digest,
};
use streamfold::store::{EventStore, NewEvent, ReadOptions, StoreConfig};

use super::output;
use super::{Cli, Command, Explained, Global, PluginCommand, Sample, status};

pub(crate) async fn run(cli: Cli) -> Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Demo => super::demo::run(g).await,
        Command::Append {
            aggregate_type,
            aggregate_id,
            event_type,
            data,
            expect,
            event_id,
            json,
        } => {
            let store = connect(g).await?;
            let mut event = NewEvent::from_json_text(event_type, data).context("DATA_JSON")?;
            if let Some(id) = event_id {
                event = event.with_id(id);
            }
            let r = store
                .append(&aggregate_type, &aggregate_id, vec![event], expect)
                .await?;
            if json {
                output::json(&serde_json::json!({
                    "revision": r.last_revision,
                    "position": r.positions.first(),
                    "event_id": r.event_ids.first(),
                    "already_appended": r.already_appended,
                }));
            } else {
                let note = if r.already_appended {
                    " (already appended: nothing written)"
                } else {
                    ""
                };
                println!(
                    "appended to {aggregate_type}/{aggregate_id} at revision {} (position {}){note}",
                    r.last_revision,
                    r.positions.first().map(String::as_str).unwrap_or("-")
                );
            }
            Ok(())
        }
        Command::Import { file, batch, json } => {
            let store = connect(g).await?;
            super::import::run(&store, &file, batch, json).await
        }
        Command::History {
            aggregate_type,
            aggregate_id,
            from,
            json,
        } => {
            let store = connect(g).await?;
            let mut opts = ReadOptions::default();
            if let Some(from) = from {
                opts = opts.from_revision(from);
            }
            let events = store.read_all(&aggregate_type, &aggregate_id, opts).await?;
            if events.is_empty() && from.is_none() {
                return Err(streamfold::Error::NotFound(format!(
                    "aggregate {aggregate_type}/{aggregate_id} (no events)"
                ))
                .into());
            }
            if json {
                output::json(&events);
            } else {
                output::history(&events);
            }
            Ok(())
        }
        Command::State {
            aggregate_type,
            aggregate_id,
            at_revision,
            as_of,
            no_snapshot,
            json,
        } => {
            let rt = runtime(g).await?;
            let mut opts = ReplayOptions::default().use_snapshots(!no_snapshot);
            if let Some(r) = at_revision {
                opts = opts.at_revision(r);
            }
            if let Some(t) = as_of {
                opts = opts.as_of(t.to_utc());
            }
            let replayed = rt.state(&aggregate_type, &aggregate_id, opts).await?;
            output::state(&replayed, json);
            Ok(())
        }
        Command::Snapshot {
            aggregate_type,
            aggregate_id,
            json,
        } => {
            let rt = runtime(g).await?;
            let r = rt.snapshot(&aggregate_type, &aggregate_id).await?;
            if json {
                output::json(&serde_json::json!({
                    "revision": r.revision,
                    "position": r.position,
                    "reducer": r.plugin,
                }));
            } else {
                println!(
                    "saved a snapshot of {aggregate_type}/{aggregate_id} at revision {} for {}",
                    r.revision,
                    r.plugin.label()
                );
            }
            Ok(())
        }
        Command::Plugin(cmd) => plugin(g, cmd).await,
        Command::Watch {
            plugins,
            interval_ms,
        } => {
            let rt = runtime(g).await?;
            super::watch::run(&rt, &plugins, std::time::Duration::from_millis(interval_ms)).await
        }
    }
}

async fn plugin(g: &Global, cmd: PluginCommand) -> Result<()> {
    let rt = runtime(g).await?;
    match cmd {
        PluginCommand::Add {
            file,
            no_activate,
            verify,
            force,
            sample,
            json,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let mut activate = !no_activate;
            if verify {
                let (candidate, _) = rt
                    .load_async(bytes.clone().into())
                    .await
                    .with_context(|| format!("{} was not registered", file.display()))?;
                let report = run_verify(&rt, candidate, &sample, json).await?;
                if !report.passed() {
                    if !force {
                        return Err(Explained {
                            status: status::VERIFY_FAILED,
                            message: format!(
                                "{} was not registered: verification found {} differing and {} failing aggregates (use --force to activate anyway)",
                                file.display(),
                                report.differed.len(),
                                report.failed.len()
                            ),
                        }
                        .into());
                    }
                    eprintln!("warning: activating despite the differences (--force)");
                }
                activate = true;
            }
            let reg = rt
                .register(bytes, activate)
                .await
                .with_context(|| format!("{} was not registered", file.display()))?;
            if json {
                output::json(&reg);
            } else {
                println!(
                    "registered {} for aggregate type {:?}{}",
                    reg.info.label(),
                    reg.info.aggregate_type,
                    if reg.active { " (active)" } else { "" }
                );
                println!("digest: sha256:{}", reg.info.digest);
            }
        }
        PluginCommand::List {
            aggregate_type,
            json,
        } => {
            let list = rt.plugins(aggregate_type.as_deref()).await?;
            if json {
                output::json(&list);
            } else {
                output::plugins(&list);
            }
        }
        PluginCommand::Activate {
            aggregate_type,
            digest_or_version,
            json,
        } => {
            let reg = rt.activate(&aggregate_type, &digest_or_version).await?;
            if json {
                output::json(&reg);
            } else {
                println!(
                    "{} is now the active reducer for {:?}",
                    reg.info.label(),
                    aggregate_type
                );
            }
        }
        PluginCommand::Verify {
            file,
            aggregate_type,
            sample,
            json,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let (candidate, _) = rt.load_async(bytes.into()).await?;
            if let Some(t) = aggregate_type.filter(|t| *t != candidate.info().aggregate_type) {
                return Err(streamfold::Error::InvalidInput(format!(
                    "{} folds {:?} aggregates, not {t:?}",
                    candidate.info().label(),
                    candidate.info().aggregate_type
                ))
                .into());
            }
            let report = run_verify(&rt, candidate, &sample, json).await?;
            if !report.passed() {
                return Err(Explained {
                    status: status::VERIFY_FAILED,
                    message: format!(
                        "verification failed: {} of {} aggregates differ, {} fail in the candidate",
                        report.differed.len(),
                        report.checked,
                        report.failed.len()
                    ),
                }
                .into());
            }
        }
        PluginCommand::History {
            aggregate_type,
            json,
        } => {
            let history = rt.activation_history(&aggregate_type).await?;
            if json {
                output::json(&history);
            } else if history.is_empty() {
                println!("nothing was ever activated for {aggregate_type:?}");
            } else {
                for a in &history {
                    println!(
                        "{}  {}@{}  {}",
                        a.activated_at,
                        a.name,
                        a.version,
                        short_digest(&a.digest)
                    );
                }
            }
        }
        PluginCommand::Remove {
            aggregate_type,
            digest_or_version,
        } => {
            let reg = rt.remove(&aggregate_type, &digest_or_version).await?;
            println!("removed {} from the registry", reg.info.label());
        }
    }
    Ok(())
}

/// Runs a replay-diff with a progress bar on a terminal, prints the report.
async fn run_verify(
    rt: &Runtime,
    candidate: Arc<Plugin>,
    sample: &Sample,
    json: bool,
) -> Result<VerifyReport> {
    let options = if sample.all {
        VerifyOptions::default().all()
    } else {
        VerifyOptions::default().sample(sample.sample)
    };
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "verifying {bar:40} {pos}/{len} aggregates ({per_sec}, {eta})",
        )
        .expect("valid template"),
    );
    let report = rt
        .verify(candidate, options, |done, total| {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        })
        .await?;
    bar.finish_and_clear();
    if json {
        output::json(&report);
    } else {
        output::verify(&report);
    }
    Ok(report)
}

pub(crate) fn store_config(g: &Global) -> StoreConfig {
    StoreConfig::default()
        .prefix(g.prefix.clone())
        .layout(g.layout)
}

pub(crate) async fn connect(g: &Global) -> Result<EventStore> {
    Ok(EventStore::connect(&g.redis, store_config(g)).await?)
}

pub(crate) fn runtime_config(g: &Global) -> RuntimeConfig {
    let limits = Limits::default()
        .call_timeout(g.call_timeout)
        .memory_bytes(g.memory_limit);
    let config = RuntimeConfig::default().limits(limits);
    match &g.cache_dir {
        Some(dir) => config.cache_dir(Some(dir.clone())),
        None => config,
    }
}

async fn runtime(g: &Global) -> Result<Runtime> {
    let store = connect(g).await?;
    Ok(Runtime::new(store, runtime_config(g))?)
}
