//! A reducer component, validated and compiled, ready to instantiate.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use crate::bindings;
use crate::engine::{self, HostState, Limits, LogContext};
use crate::error::{Error, Result};
use crate::session::Instance;
use crate::text;

/// The WIT package every reducer implements, and the versions this host accepts.
pub const CONTRACT: &str = "streamfold:reducer@0.1.0";
const EXPORT_NAME: &str = "streamfold:reducer/reducer@0.1.0";

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

/// Where compiled code is kept between runs: one file per component digest, in
/// a folder per engine configuration (a different Wasmtime or different settings
/// never read another's code).
#[derive(Debug, Clone)]
pub(crate) struct CodeCache {
    dir: Option<PathBuf>,
}

impl CodeCache {
    pub(crate) fn new(root: Option<PathBuf>, engine: &Engine) -> Self {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let dir = root.map(|root| {
            let mut h = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut h);
            env!("CARGO_PKG_VERSION").hash(&mut h);
            root.join(format!("{:016x}", h.finish()))
        });
        CodeCache { dir }
    }

    fn path(&self, digest: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{digest}.cwasm")))
    }

    /// The compiled component for `digest`, from disk when it is there; compiles
    /// `bytes` (and saves the result) when it is not. Returns whether it was a hit.
    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        digest: &str,
        bytes: &[u8],
    ) -> Result<(Component, bool)> {
        if let Some(path) = self.path(digest).filter(|p| p.exists()) {
            // SAFETY: files in our cache folder were written by `Component::serialize`
            // of this very engine configuration (the folder name is its hash), named by
            // the digest of their source. A truncated or corrupt file fails to
            // deserialize and is recompiled below. The file is mapped into memory, so
            // it must never be truncated while in use: we only ever rename new files
            // into place (`write_atomically`).
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(c) => return Ok((c, true)),
                Err(_) => {
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let component = compile(engine, bytes)?;
        if let Some(path) = self.path(digest) {
            // A cache we cannot write only costs a recompile next time.
            let _ = write_atomically(&path, &component);
        }
        Ok((component, false))
    }
}

fn write_atomically(path: &Path, component: &Component) -> std::io::Result<()> {
    let dir = path.parent().expect("cache path has a folder");
    std::fs::create_dir_all(dir)?;
    let code = component.serialize().map_err(std::io::Error::other)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &code)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Checks the file's header before handing it to Cranelift, so the common
/// mistakes get a message that says what to do.
fn compile(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    const MAGIC: &[u8] = b"\0asm";
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        return Err(Error::plugin(
            None,
            "not a WebAssembly file (no \\0asm header)",
        ));
    }
    // Bytes 4..8: version and layer. Layer 0 is a core module, layer 1 a component.
    if bytes[6..8] == [0, 0] {
        return Err(Error::plugin(
            None,
            "this is a core WebAssembly module, not a component: build for wasm32-wasip2, \
             or wrap the module with `wasm-tools component new`",
        ));
    }
    Component::new(engine, bytes).map_err(|e| {
        Error::plugin(
            None,
            format!(
                "does not compile: {}",
                text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
            ),
        )
    })
}

/// Validates `bytes` as a reducer and prepares it for instantiation: compiled (or
/// loaded from the cache), linked against our imports, exporting our world, with
/// sane `info`.
pub(crate) fn load(
    engine: &Engine,
    linker: &Linker<HostState>,
    cache: &CodeCache,
    limits: &Limits,
    bytes: &[u8],
) -> Result<(Arc<Plugin>, bool)> {
    if bytes.len() > limits.component_bytes {
        return Err(Error::plugin(
            None,
            format!(
                "{} bytes is over the size limit of {} bytes",
                bytes.len(),
                limits.component_bytes
            ),
        ));
    }
    let digest = digest(bytes);
    let (component, cache_hit) = cache.load_or_compile(engine, &digest, bytes)?;
    check_contract_version(&component, engine)?;
    let pre = linker.instantiate_pre(&component).map_err(|e| {
        Error::plugin(
            None,
            format!("imports something a reducer may not use (only {CONTRACT}'s `host` interface, and WASI with no capabilities, are provided): {}", text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)),
        )
    })?;
    let indices = bindings::PluginIndices::new(&pre).map_err(|e| {
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        Error::plugin(
            None,
            format!(
                "does not export the reducer world {EXPORT_NAME} (it exports: {}): {}",
                if exports.is_empty() {
                    "nothing".to_string()
                } else {
                    text::shown(&exports.join(", "), text::MESSAGE_BYTES)
                },
                text::shown(&format!("{e:#}"), text::MESSAGE_BYTES)
            ),
        )
    })?;

    // Ask the reducer what it is, in a sandbox like any other call.
    let mut store = engine::store(
        engine,
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
    let info = check_info(info, digest, bytes.len() as u64)?;
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

/// Refuses a component that imports or exports the contract's interfaces at a version
/// this host cannot serve, naming the version it was built for: otherwise the error
/// would only say that the reducer world is missing.
fn check_contract_version(component: &Component, engine: &Engine) -> Result<()> {
    let (package, ours) = CONTRACT.split_once('@').expect("CONTRACT has a version");
    let prefix = format!("{package}/");
    let ty = component.component_type();
    let names = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .chain(ty.exports(engine).map(|(name, _)| name.to_string()));
    for name in names {
        let Some(interface) = name.strip_prefix(&prefix) else {
            continue;
        };
        let theirs = interface.split_once('@').map(|(_, v)| v);
        if theirs.is_none_or(|v| !semver_compatible(v, ours)) {
            return Err(Error::plugin(
                None,
                format!(
                    "was built against the contract {package}@{} (it uses {}); this host speaks {CONTRACT}: build it with a matching SDK and WIT",
                    text::shown(theirs.unwrap_or("(no version)"), 64),
                    text::shown(&name, 256)
                ),
            ));
        }
    }
    Ok(())
}

/// Whether interface version `a` can be served by `b` (semver: same major, or same
/// minor while the major is 0).
fn semver_compatible(a: &str, b: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64)> {
        let mut it = v.split(['-', '+']).next()?.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    };
    match (parts(a), parts(b)) {
        (Some((0, a_minor)), Some((0, b_minor))) => a_minor == b_minor,
        (Some((a_major, _)), Some((b_major, _))) => a_major == b_major,
        _ => false,
    }
}

/// Longest `info.name`, `info.aggregate-type` and `info.handles` entry, in bytes.
pub const MAX_INFO_NAME: usize = 128;
/// Longest `info.version`, in bytes.
pub const MAX_INFO_VERSION: usize = 64;
/// Most entries in `info.handles`.
pub const MAX_HANDLES: usize = 1024;

/// `info` is untrusted text that the registry keeps and every error shows: refuse
/// what is too long, or holds characters that could repaint a terminal, instead of
/// storing it. Messages quote the offending value bounded and escaped.
fn check_info(info: bindings::Info, digest: String, size: u64) -> Result<PluginInfo> {
    let name = Some(info.name.as_str()).filter(|n| !n.is_empty() && !text::has_controls(n));
    let bad = |reason: String| Error::plugin(name, reason);
    let quoted = |s: &str| format!("\"{}\"", text::shown(s, 64));
    let sane = |s: &str, max: usize| !s.is_empty() && s.len() <= max && !text::has_controls(s);
    if !sane(&info.name, MAX_INFO_NAME) || info.name.trim().is_empty() {
        return Err(bad(format!(
            "info.name {} ({} bytes) must be 1 to {MAX_INFO_NAME} bytes with no control characters",
            quoted(&info.name),
            info.name.len()
        )));
    }
    if info.version.len() > MAX_INFO_VERSION || !is_semver(&info.version) {
        return Err(bad(format!(
            "info.version {} is not a semantic version like 1.2.3 of at most {MAX_INFO_VERSION} bytes",
            quoted(&info.version)
        )));
    }
    let t = &info.aggregate_type;
    if !sane(t, MAX_INFO_NAME)
        || t.chars()
            .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | ':'))
    {
        return Err(bad(format!(
            "info.aggregate-type {} must be 1 to {MAX_INFO_NAME} bytes with no whitespace, control characters, braces or colons",
            quoted(t)
        )));
    }
    if info.handles.len() > MAX_HANDLES {
        return Err(bad(format!(
            "info.handles lists {} event types; at most {MAX_HANDLES} are accepted",
            info.handles.len()
        )));
    }
    if let Some(h) = info
        .handles
        .iter()
        .find(|h| !sane(h, MAX_INFO_NAME) || h.trim().is_empty())
    {
        return Err(bad(format!(
            "info.handles contains the event type {} ({} bytes): each must be 1 to {MAX_INFO_NAME} bytes with no control characters",
            quoted(h),
            h.len()
        )));
    }
    Ok(PluginInfo {
        name: info.name,
        version: info.version,
        aggregate_type: info.aggregate_type,
        handles: info.handles,
        digest,
        size,
    })
}

/// `MAJOR.MINOR.PATCH`, optionally followed by `-pre` and/or `+build` made of ASCII
/// letters, digits, `-` and `.` (as semver.org says).
pub(crate) fn is_semver(v: &str) -> bool {
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'+'))
    {
        return false;
    }
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver() {
        assert!(is_semver("0.1.0"));
        assert!(is_semver("1.20.3-beta.1+build5"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("01.2.3"));
        assert!(!is_semver("v1.2.3"));
        assert!(!is_semver(""));
        assert!(!is_semver("1.0.0-\u{1b}[2J"));
        assert!(!is_semver("1.0.0+build 5"));
    }

    #[test]
    fn contract_versions_match_by_semver() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(semver_compatible("0.1.3", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.0"));
        assert!(!semver_compatible("2.0.0", "1.0.0"));
        assert!(!semver_compatible("x", "0.1.0"));
    }

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
