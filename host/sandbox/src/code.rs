//! What every kind of plugin shares before it is a reducer or a projection: the
//! size limit, the digest, the compiled-code cache, the contract versions, and
//! telling which kind a component is from its exports. A new kind of plugin (a
//! command handler, say) is one more [`PluginKind`] and one more module beside
//! `plugin` (reducers) and `projection`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

use crate::engine::Limits;
use crate::error::{Error, Result};
use crate::plugin::digest;
use crate::text;

/// What a plugin component is: which Streamfold world it implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PluginKind {
    /// Folds the events of one aggregate into its state: the world `plugin` of
    /// [`CONTRACT`](crate::CONTRACT) (`wit/reducer.wit`).
    Reducer,
    /// Folds whole categories into a read model: the world `projection-plugin` of
    /// [`PROJECTION_CONTRACT`](crate::PROJECTION_CONTRACT)
    /// (`wit/projection/projection.wit`).
    Projection,
}

impl PluginKind {
    /// Every kind, in order.
    pub const ALL: [PluginKind; 2] = [PluginKind::Reducer, PluginKind::Projection];

    /// The WIT package (with its version) a component of this kind implements.
    pub const fn contract(self) -> &'static str {
        match self {
            PluginKind::Reducer => crate::plugin::CONTRACT,
            PluginKind::Projection => crate::projection::PROJECTION_CONTRACT,
        }
    }

    /// The export (an interface of [`contract`](Self::contract)) that makes a
    /// component this kind, e.g. `streamfold:reducer/reducer@0.1.0`.
    pub const fn export_name(self) -> &'static str {
        match self {
            PluginKind::Reducer => "streamfold:reducer/reducer@0.1.0",
            PluginKind::Projection => "streamfold:projection/projection@0.1.0",
        }
    }

    /// `reducer` or `projection`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PluginKind::Reducer => "reducer",
            PluginKind::Projection => "projection",
        }
    }

    /// The WIT package name without its version, e.g. `streamfold:reducer`.
    fn package(self) -> &'static str {
        self.contract()
            .split_once('@')
            .expect("a contract has a version")
            .0
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component that passed the checks every kind shares: within the size limit,
/// compiled (or taken from the cache), built against contract versions this host
/// speaks, and exporting exactly one kind's world.
pub(crate) struct Checked {
    pub(crate) digest: String,
    pub(crate) component: Component,
    pub(crate) cache_hit: bool,
    pub(crate) kind: PluginKind,
}

/// The checks every kind shares (see [`Checked`]). `wanted` is the kind the caller
/// asked for, if any: a component of another kind is refused saying what it is.
pub(crate) fn check(
    engine: &Engine,
    cache: &CodeCache,
    limits: &Limits,
    bytes: &[u8],
    wanted: Option<PluginKind>,
) -> Result<Checked> {
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
    check_contract_versions(&component, engine)?;
    let kind = kind_of(&component, engine, wanted)?;
    Ok(Checked {
        digest,
        component,
        cache_hit,
        kind,
    })
}

/// The names a component exports, for error messages (bounded and escaped).
pub(crate) fn exports_shown(component: &Component, engine: &Engine) -> String {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if exports.is_empty() {
        "nothing".to_string()
    } else {
        text::shown(&exports.join(", "), text::MESSAGE_BYTES)
    }
}

/// Which kind `component` is, from the contract interface it exports.
fn kind_of(
    component: &Component,
    engine: &Engine,
    wanted: Option<PluginKind>,
) -> Result<PluginKind> {
    let ty = component.component_type();
    let exported: Vec<PluginKind> = PluginKind::ALL
        .into_iter()
        .filter(|kind| {
            ty.exports(engine)
                .any(|(name, _)| name == kind.export_name())
        })
        .collect();
    match (exported.as_slice(), wanted) {
        ([kind], None) => Ok(*kind),
        ([kind], Some(wanted)) if *kind == wanted => Ok(*kind),
        ([kind], Some(wanted)) => Err(Error::plugin(
            None,
            format!(
                "is a {kind} (it exports {}), not a {wanted}: register or load it as a {kind}",
                kind.export_name()
            ),
        )),
        ([], _) => {
            let worlds = match wanted {
                Some(kind) => format!("the {kind} world {}", kind.export_name()),
                None => PluginKind::ALL
                    .iter()
                    .map(|k| format!("the {k} world {}", k.export_name()))
                    .collect::<Vec<_>>()
                    .join(" or "),
            };
            Err(Error::plugin(
                None,
                format!(
                    "does not export {worlds} (it exports: {})",
                    exports_shown(component, engine)
                ),
            ))
        }
        _ => Err(Error::plugin(
            None,
            "exports more than one kind of plugin's world; a component is one kind",
        )),
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

/// Refuses a component that imports or exports a contract's interfaces at a version
/// this host cannot serve, naming the version it was built for: otherwise the error
/// would only say that the world is missing.
fn check_contract_versions(component: &Component, engine: &Engine) -> Result<()> {
    let ty = component.component_type();
    let names: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .chain(ty.exports(engine).map(|(name, _)| name.to_string()))
        .collect();
    for kind in PluginKind::ALL {
        let (package, ours) = (kind.package(), kind.contract());
        let ours_version = ours.split_once('@').expect("a contract has a version").1;
        let prefix = format!("{package}/");
        for name in &names {
            let Some(interface) = name.strip_prefix(&prefix) else {
                continue;
            };
            let theirs = interface.split_once('@').map(|(_, v)| v);
            if theirs.is_none_or(|v| !semver_compatible(v, ours_version)) {
                return Err(Error::plugin(
                    None,
                    format!(
                        "was built against the contract {package}@{} (it uses {}); this host speaks {ours}: build it with a matching SDK and WIT",
                        text::shown(theirs.unwrap_or("(no version)"), 64),
                        text::shown(name, 256)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether interface version `a` can be served by `b` (semver: same major, or same
/// minor while the major is 0).
pub(crate) fn semver_compatible(a: &str, b: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_versions_match_by_semver() {
        assert!(semver_compatible("0.1.0", "0.1.0"));
        assert!(semver_compatible("0.1.3", "0.1.0"));
        assert!(!semver_compatible("0.2.0", "0.1.0"));
        assert!(semver_compatible("1.4.0", "1.0.0"));
        assert!(!semver_compatible("2.0.0", "1.0.0"));
        assert!(!semver_compatible("x", "0.1.0"));
    }

    #[test]
    fn kinds_name_their_contracts() {
        for kind in PluginKind::ALL {
            let (package, version) = kind.contract().split_once('@').unwrap();
            assert_eq!(kind.package(), package);
            assert!(kind.export_name().starts_with(&format!("{package}/")));
            assert!(kind.export_name().ends_with(&format!("@{version}")));
        }
        assert_eq!(
            serde_json::to_string(&PluginKind::Projection).unwrap(),
            "\"projection\""
        );
    }
}
