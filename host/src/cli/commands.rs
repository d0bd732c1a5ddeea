//! One function per command.

use anyhow::{Context, Result};
use streamfold::runtime::{ReplayOptions, Runtime, RuntimeConfig};
use streamfold::store::{EventStore, NewEvent, ReadOptions, StoreConfig};

use super::output;
use super::{Cli, Command, Global, PluginCommand};

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
    }
}

async fn plugin(g: &Global, cmd: PluginCommand) -> Result<()> {
    let rt = runtime(g).await?;
    match cmd {
        PluginCommand::Add {
            file,
            no_activate,
            json,
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
            let reg = rt
                .register(bytes, !no_activate)
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
    }
    Ok(())
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
    let config = RuntimeConfig::default();
    match &g.cache_dir {
        Some(dir) => config.cache_dir(Some(dir.clone())),
        None => config,
    }
}

async fn runtime(g: &Global) -> Result<Runtime> {
    let store = connect(g).await?;
    Ok(Runtime::new(store, runtime_config(g))?)
}
