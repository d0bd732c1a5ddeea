//! A reducer component, validated and compiled, ready to instantiate.

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wasmtime::component::{ComponentExportIndex, InstancePre, Linker};

use crate::bindings;
use crate::code::{self, PluginKind};
use crate::engine::{self, HostState, Limits, LogContext};
use crate::error::{Error, Result};
use crate::info::InfoCheck;
use crate::session::Instance;
use crate::text;

/// The WIT package every reducer implements, and the versions this host accepts.
pub const CONTRACT: &str = "streamfold:reducer@0.1.0";
const EXPORT_NAME: &str = PluginKind::Reducer.export_name();

/// What a registered reducer is: what it said about itself, plus its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginInfo {
    /// The reducer's name (`info.name`).
    pub name: String,
    /// Its semantic version (`info.version`).
    pub version: String,
    /// The aggregate type it folds.
    pub aggregate_type: String,
    /// The event types it handles; empty means all.
    pub handles: Vec<String>,
    /// SHA-256 of the component's bytes, hex: the plugin's identity.
    pub digest: String,
    /// Size of the component in bytes.
    pub size: u64,
}

impl PluginInfo {
    /// Always [`PluginKind::Reducer`]: a [`PluginInfo`] describes a reducer (a
    /// projection's is a [`ProjectionInfo`](crate::ProjectionInfo)).
    pub fn kind(&self) -> PluginKind {
        PluginKind::Reducer
    }

    /// `name@version (sha256:0123456789ab)`: how errors and logs name a plugin.
    pub fn label(&self) -> String {
        format!(
            "{}@{} ({})",
            self.name,
            self.version,
            short_digest(&self.digest)
        )
    }
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// `sha256:` and the first 12 hex digits of a digest.
pub fn short_digest(digest: &str) -> String {
    format!("sha256:{}", &digest[..digest.len().min(12)])
}

/// The SHA-256 of `bytes`, as lowercase hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A validated, compiled reducer. Cheap to share. Sessions run on instances made
/// from it: warm ones kept between sessions (see [`Instances`](crate::Instances)), or
/// fresh ones; an instance that failed in any way is never used again.
pub struct Plugin {
    info: PluginInfo,
    handles: HashSet<String>,
    pre: InstancePre<HostState>,
    /// Where the world's exports are, looked up once (not per instance).
    indices: bindings::PluginIndices,
    /// `[method]aggregate.apply`, called with borrowed events (see `EventArg`).
    apply: ComponentExportIndex,
    /// Idle instances, ready for the next session (most recently used last).
    idle: Mutex<Vec<Instance>>,
    /// Serve every session on a fresh instance (a reducer that keeps state across
    /// aggregates, say).
    fresh_only: AtomicBool,
    /// Instances made so far.
    instances_made: AtomicU64,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// What the reducer said about itself, and its digest.
    pub fn info(&self) -> &PluginInfo {
        &self.info
    }

    /// Whether the reducer wants events of this type.
    pub fn handles(&self, event_type: &str) -> bool {
        self.handles.is_empty() || self.handles.contains(event_type)
    }

    /// Serves every later session of this plugin on a fresh instance, and lets the
    /// idle ones go: for a reducer whose results depend on what its instance served
    /// before (it keeps state across aggregates). Sessions already running finish
    /// on their instances, which are then dropped.
    pub fn serve_fresh(&self) {
        self.fresh_only.store(true, Ordering::SeqCst);
        self.idle.lock().expect("idle instances").clear();
    }

    /// Whether [`serve_fresh`](Self::serve_fresh) was called.
    pub fn serves_fresh(&self) -> bool {
        self.fresh_only.load(Ordering::SeqCst)
    }

    /// How many instances were made of this plugin so far (fresh and warm).
    pub fn instances_made(&self) -> u64 {
        self.instances_made.load(Ordering::Relaxed)
    }

    /// How many idle instances are kept for the next sessions.
    pub fn idle_instances(&self) -> usize {
        self.idle.lock().expect("idle instances").len()
    }

    pub(crate) fn take_idle(&self) -> Option<Instance> {
        if self.serves_fresh() {
            return None;
        }
        self.idle.lock().expect("idle instances").pop()
    }

    /// Keeps `instance` for a later session, if fewer than `max_idle` are kept.
    pub(crate) fn keep_idle(&self, instance: Instance, max_idle: usize) {
        if self.serves_fresh() {
            return;
        }
        let mut idle = self.idle.lock().expect("idle instances");
        if idle.len() < max_idle {
            idle.push(instance);
        }
    }

    pub(crate) fn made_instance(&self) {
        self.instances_made.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn pre(&self) -> &InstancePre<HostState> {
        &self.pre
    }

    pub(crate) fn apply_export(&self) -> &ComponentExportIndex {
        &self.apply
    }

    pub(crate) fn indices(&self) -> &bindings::PluginIndices {
        &self.indices
    }
}

/// Prepares a component that passed the shared checks (`code::check`) as a
/// reducer: linked against our imports, exporting our world, with sane `info`.
pub(crate) fn load_checked(
    machine: &engine::Machine,
    linker: &Linker<HostState>,
    limits: &Limits,
    checked: code::Checked,
    size: u64,
) -> Result<(Arc<Plugin>, bool)> {
    let code::Checked {
        digest,
        component,
        cache_hit,
        ..
    } = checked;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        Error::plugin(
            None,
            format!("imports something a reducer may not use (only {CONTRACT}'s `host` interface, and WASI with no capabilities, are provided): {}", text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)),
        )
    })?;
    let indices = bindings::PluginIndices::new(&pre).map_err(|e| {
        Error::plugin(
            None,
            format!(
                "does not export the reducer world {EXPORT_NAME} (it exports: {}): {}",
                code::exports_shown(&component, &machine.engine),
                text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
            ),
        )
    })?;

    // Ask the reducer what it is, in a sandbox like any other call.
    let mut store = engine::store(
        machine,
        limits,
        LogContext {
            plugin: short_digest(&digest),
            aggregate: "-".into(),
            max_bytes: limits.log_line_bytes,
            lines_left: 10,
            dropped: 0,
        },
    );
    let info = pre
        .instantiate(&mut store)
        .and_then(|i| indices.load(&mut store, &i))
        .and_then(|p| {
            engine::arm_deadline(&mut store, limits);
            p.streamfold_reducer_reducer().call_info(&mut store)
        })
        .map_err(|e| {
            Error::plugin(
                None,
                format!(
                    "failed while answering `info`: {}",
                    text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
                ),
            )
        })?;
    let info = check_info(info, digest, size)?;
    let handles = info.handles.iter().cloned().collect();
    let apply = component
        .get_export_index(None, EXPORT_NAME)
        .and_then(|reducer| component.get_export_index(Some(&reducer), "[method]aggregate.apply"))
        .ok_or_else(|| Error::plugin(None, format!("{EXPORT_NAME} has no aggregate.apply")))?;
    Ok((
        Arc::new(Plugin {
            info,
            handles,
            pre,
            indices,
            apply,
            idle: Mutex::new(Vec::new()),
            fresh_only: AtomicBool::new(false),
            instances_made: AtomicU64::new(0),
        }),
        cache_hit,
    ))
}

/// `info` is untrusted text that the registry keeps and every error shows (see
/// [`crate::info`]).
fn check_info(info: bindings::Info, digest: String, size: u64) -> Result<PluginInfo> {
    let check = InfoCheck::new(&info.name);
    check.name(&info.name)?;
    check.version(&info.version)?;
    check.aggregate_type("info.aggregate-type", &info.aggregate_type)?;
    check.handles(&info.handles)?;
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        aggregate_type: info.aggregate_type,
        handles: info.handles,
        digest,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{MAX_HANDLES, MAX_INFO_NAME, MAX_INFO_VERSION};

    fn info(
        name: &str,
        version: &str,
        aggregate_type: &str,
        handles: Vec<String>,
    ) -> bindings::Info {
        bindings::Info {
            name: name.into(),
            version: version.into(),
            aggregate_type: aggregate_type.into(),
            handles,
        }
    }

    fn refusal(i: bindings::Info) -> String {
        let e = check_info(i, "ab".repeat(32), 1).expect_err("refused");
        assert!(e.is_invalid_plugin(), "{e}");
        let shown = e.to_string();
        assert!(!text::has_controls(&shown), "{shown:?}");
        assert!(shown.len() < 1024, "the refusal itself is bounded: {shown}");
        shown
    }

    #[test]
    fn sane_info_is_accepted() {
        let ok = check_info(
            info("user", "0.1.0", "user", vec!["A".into()]),
            "d".into(),
            1,
        );
        assert_eq!(ok.unwrap().name, "user");
        let most = vec!["E".repeat(MAX_INFO_NAME); MAX_HANDLES];
        assert!(check_info(info("u", "1.0.0-rc.1+b5", "t", most), "d".into(), 1).is_ok());
    }

    #[test]
    fn info_fields_over_their_limits_are_refused() {
        let long = "n".repeat(MAX_INFO_NAME + 1);
        assert!(refusal(info(&long, "0.1.0", "user", vec![])).contains("info.name"));
        let version = format!("1.0.0-{}", "a".repeat(MAX_INFO_VERSION));
        assert!(refusal(info("u", &version, "user", vec![])).contains("info.version"));
        assert!(refusal(info("u", "0.1.0", &long, vec![])).contains("info.aggregate-type"));
        let many = vec!["E".to_owned(); MAX_HANDLES + 1];
        let shown = refusal(info("u", "0.1.0", "user", many));
        assert!(shown.contains("1025 event types"), "{shown}");
        let shown = refusal(info("u", "0.1.0", "user", vec![long.clone()]));
        assert!(shown.contains("info.handles"), "{shown}");
        // A huge field is quoted cut, with its length.
        let huge = "n".repeat(1 << 20);
        let shown = refusal(info(&huge, "0.1.0", "user", vec![]));
        assert!(shown.contains("1048576 bytes"), "{shown}");
    }

    #[test]
    fn info_fields_with_control_characters_are_refused_and_quoted_escaped() {
        let shown = refusal(info("a\u{1b}[2Jb", "0.1.0", "user", vec![]));
        assert!(shown.contains("a\\u{1b}[2Jb"), "{shown}");
        refusal(info("u", "0.1.0", "us\u{7}er", vec![]));
        refusal(info(
            "u",
            "0.1.0",
            "user",
            vec!["Ok".into(), "Bad\nLine".into()],
        ));
        refusal(info("u", "0.1.0", "user", vec!["Bidi\u{202e}".into()]));
    }
}
