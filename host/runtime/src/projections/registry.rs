//! Projection versions: bytes in the plugin blob store (`P:plugins:blob:DIGEST`),
//! metadata in the store's projection registry (version id = digest, metadata =
//! the component's info and when it was registered), and the runtime's own
//! settings per projection, each a field of one hash (one key per command: any slot
//! on a cluster):
//! - `P:projections:on_error`  name → `stop` | `skip`
//! - `P:projections:resume`    name → a counter bumped by every resume or rebuild
//! - `P:projections:resume_at` name → when a resume was last asked for (Unix ms)
//! - `P:projections:trimmed`   `name/vid` → the source streams trimmed before the
//!   version read them (events before the trim point were not in the feed)
//! - `P:projections:rate`      `name/vid` → `events-per-second unix-ms`, written by
//!   the version's runner

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use streamfold_sandbox::ProjectionInfo;

use super::{OnError, RegisteredProjection};
use crate::Runtime;
use std::collections::HashMap;

use crate::error::{Error, Result};

/// What the store's registry keeps per version.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    info: ProjectionInfo,
    registered_at: String,
}

fn key(rt: &Runtime, rest: &str) -> String {
    format!("{}:projections:{rest}", rt.store().key_prefix())
}

fn field(name: &str, vid: &str) -> String {
    format!("{name}/{vid}")
}

fn parse(name: &str, vid: &str, meta: &str) -> Result<RegisteredProjection> {
    let m: Meta = serde_json::from_str(meta)
        .map_err(|e| Error::corrupt(format!("projection {name} version {vid}"), e))?;
    Ok(RegisteredProjection {
        info: m.info,
        registered_at: m.registered_at,
        active: false,
        serving: false,
    })
}

/// Stores the bytes, then registers the version (bytes first: metadata never
/// names bytes that are not there). Registering again keeps the first registration.
pub(crate) async fn put(
    rt: &Runtime,
    info: &ProjectionInfo,
    bytes: &[u8],
) -> Result<RegisteredProjection> {
    let store = rt.store();
    streamfold_store::validate_projection_name(&info.name)?;
    if let Ok(existing) = store.projection_info(&info.name).await
        && let Some(meta) = existing.versions.get(&info.digest)
    {
        rt.inner.registry.put_blob(&info.digest, bytes).await?;
        return parse(&info.name, &info.digest, meta);
    }
    rt.inner.registry.put_blob(&info.digest, bytes).await?;
    let meta = Meta {
        info: info.clone(),
        registered_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    };
    let text = serde_json::to_string(&meta).expect("projection metadata serializes");
    match store
        .register_projection_version(&info.name, &info.digest, &text)
        .await
    {
        Ok(_) => {}
        // Registered meanwhile by another client, with its own time: take that.
        Err(e) if e.is_conflict() => {
            let existing = store.projection_info(&info.name).await?;
            if let Some(meta) = existing.versions.get(&info.digest) {
                return parse(&info.name, &info.digest, meta);
            }
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    }
    Ok(RegisteredProjection {
        info: meta.info,
        registered_at: meta.registered_at,
        active: false,
        serving: false,
    })
}

/// The serving and active versions of a projection ([not found](Error::is_not_found)
/// if it has no version).
pub(crate) async fn pointers(rt: &Runtime, name: &str) -> Result<(Option<String>, Option<String>)> {
    let info = rt.store().projection_info(name).await?;
    Ok((info.serving, info.active))
}

/// Every version, oldest first, with the pointers marked.
pub(crate) async fn versions(rt: &Runtime, name: &str) -> Result<Vec<RegisteredProjection>> {
    let info = rt.store().projection_info(name).await?;
    let mut out = Vec::new();
    for (vid, meta) in &info.versions {
        let mut reg = parse(name, vid, meta)?;
        reg.active = info.active.as_deref() == Some(vid.as_str());
        reg.serving = info.serving.as_deref() == Some(vid.as_str());
        out.push(reg);
    }
    out.sort_by(|a, b| a.registered_at.cmp(&b.registered_at));
    Ok(out)
}

/// Resolves a full digest, a unique digest prefix (6+ hex digits, `sha256:`
/// optional) or a semantic version among a projection's versions.
pub(crate) async fn resolve(
    rt: &Runtime,
    name: &str,
    wanted: &str,
) -> Result<RegisteredProjection> {
    let wanted = wanted.trim_start_matches("sha256:");
    let all = versions(rt, name).await?;
    let by_digest: Vec<_> = all
        .iter()
        .filter(|p| wanted.len() >= 6 && p.info.digest.starts_with(wanted))
        .collect();
    let matches: Vec<_> = if by_digest.is_empty() {
        all.iter().filter(|p| p.info.version == wanted).collect()
    } else {
        by_digest
    };
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(Error::not_found(format!(
            "a version of projection {name:?} matching {:?}",
            crate::text::shown(wanted, 128)
        ))),
        many => Err(Error::invalid(format!(
            "{:?} matches {} versions of projection {name:?}; give (more of) the digest",
            crate::text::shown(wanted, 128),
            many.len()
        ))),
    }
}

/// The projection's failure policy (`stop` unless set).
pub(crate) async fn on_error(rt: &Runtime, name: &str) -> Result<OnError> {
    let mut conn = rt.store().connection();
    let v: Option<String> = conn.hget(key(rt, "on_error"), name).await?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or_default())
}

pub(crate) async fn set_on_error(rt: &Runtime, name: &str, on_error: OnError) -> Result<()> {
    let mut conn = rt.store().connection();
    let _: () = conn
        .hset(key(rt, "on_error"), name, on_error.as_str())
        .await?;
    Ok(())
}

/// The projection's resume counter.
pub(crate) async fn resume_generation(rt: &Runtime, name: &str) -> Result<u64> {
    let mut conn = rt.store().connection();
    let v: Option<u64> = conn.hget(key(rt, "resume"), name).await?;
    Ok(v.unwrap_or(0))
}

/// Asks the runners of a projection to retry: bumps its counter (which waiting
/// runners watch) and records when (Unix ms, this host's clock: a runner that starts
/// later compares it with the failure's time).
pub(crate) async fn request_resume(rt: &Runtime, name: &str) -> Result<()> {
    let mut conn = rt.store().connection();
    let now = chrono::Utc::now().timestamp_millis();
    let _: () = conn.hset(key(rt, "resume_at"), name, now).await?;
    let _: u64 = conn.hincr(key(rt, "resume"), name, 1).await?;
    Ok(())
}

/// When a resume of the projection was last asked for, Unix ms.
pub(crate) async fn resume_asked_at(rt: &Runtime, name: &str) -> Result<Option<u64>> {
    let mut conn = rt.store().connection();
    Ok(conn.hget(key(rt, "resume_at"), name).await?)
}

pub(crate) async fn trimmed(rt: &Runtime, name: &str, vid: &str) -> Result<Option<String>> {
    let mut conn = rt.store().connection();
    Ok(conn.hget(key(rt, "trimmed"), field(name, vid)).await?)
}

pub(crate) async fn set_trimmed(rt: &Runtime, name: &str, vid: &str, text: &str) -> Result<()> {
    let mut conn = rt.store().connection();
    let _: () = conn
        .hset(key(rt, "trimmed"), field(name, vid), text)
        .await?;
    Ok(())
}

pub(crate) async fn clear_trimmed(rt: &Runtime, name: &str, vid: &str) -> Result<()> {
    let mut conn = rt.store().connection();
    let _: () = conn.hdel(key(rt, "trimmed"), field(name, vid)).await?;
    Ok(())
}

/// The last rate a runner wrote: events per second, and when (Unix ms).
pub(crate) async fn rate(rt: &Runtime, name: &str, vid: &str) -> Result<Option<(f64, u64)>> {
    let mut conn = rt.store().connection();
    let v: Option<String> = conn.hget(key(rt, "rate"), field(name, vid)).await?;
    Ok(v.and_then(|v| {
        let (eps, at) = v.split_once(' ')?;
        Some((eps.parse().ok()?, at.parse().ok()?))
    }))
}

pub(crate) async fn set_rate(rt: &Runtime, name: &str, vid: &str, eps: f64) -> Result<()> {
    let mut conn = rt.store().connection();
    let now = chrono::Utc::now().timestamp_millis();
    let _: () = conn
        .hset(key(rt, "rate"), field(name, vid), format!("{eps:.1} {now}"))
        .await?;
    Ok(())
}

/// Drops what the runtime kept about a removed version (its bytes included).
pub(crate) async fn forget_version(rt: &Runtime, name: &str, vid: &str) -> Result<()> {
    let mut conn = rt.store().connection();
    let f = field(name, vid);
    let _: () = conn.hdel(key(rt, "trimmed"), &f).await?;
    let _: () = conn.hdel(key(rt, "rate"), &f).await?;
    clear_bases(rt, name, vid).await?;
    rt.inner.registry.remove_blob(vid).await
}

/// Per source stream of a version: how many of its entries were gone (trimmed)
/// before the version folded its first one, for the lag in events (hash
/// `P:projections:base:NAME/VID`, stream key -> count; not hash-tagged, one key per
/// command).
pub(crate) async fn bases(rt: &Runtime, name: &str, vid: &str) -> Result<HashMap<String, u64>> {
    let mut conn = rt.store().connection();
    Ok(conn
        .hgetall(key(rt, &format!("base:{}", field(name, vid))))
        .await?)
}

/// Records a stream's base (see [`bases`]), unless one is there already.
pub(crate) async fn set_base(
    rt: &Runtime,
    name: &str,
    vid: &str,
    stream: &str,
    base: u64,
) -> Result<()> {
    let mut conn = rt.store().connection();
    let _: bool = conn
        .hset_nx(key(rt, &format!("base:{}", field(name, vid))), stream, base)
        .await?;
    Ok(())
}

/// Forgets a version's bases (it is rebuilt from nothing, or removed).
pub(crate) async fn clear_bases(rt: &Runtime, name: &str, vid: &str) -> Result<()> {
    let mut conn = rt.store().connection();
    let _: () = conn
        .del(key(rt, &format!("base:{}", field(name, vid))))
        .await?;
    Ok(())
}
