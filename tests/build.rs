//! Builds every reducer the integration tests load, from source, into `OUT_DIR`:
//! the example plugins (Rust, JavaScript, Python), the misbehaving fixtures of
//! `tests/plugins/`, and two files the host must refuse (a core module, a component
//! of another world). `src/plugins.rs` names them.
//!
//! JavaScript and Python plugins (reducers and projections) are built with their own
//! toolchains, which `./dev setup` installs: `npm ci` in each JavaScript plugin's
//! folder that has a `package-lock.json` (the others use `plugins/user-js`'s), and a
//! venv at `target/py-venv` with `componentize-py` for the Python ones. A missing toolchain
//! fails the build with the command that installs it; no test is ever skipped.
//! Their components are kept in `target/lang-plugins/`, named by a hash of all their
//! inputs, so they are rebuilt only when a source, the WIT or the toolchain changes.

use std::collections::hash_map::DefaultHasher;
use std::env;
use std::fs;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, exit};
use std::thread;

#[path = "../plugins/build_plugins.rs"]
mod build_plugins;

/// The plugins written in other languages: plugin folder, language and world.
const LANG_PLUGINS: &[(&str, Lang, World)] = &[
    ("user-js", Lang::JavaScript, World::Reducer),
    ("user-py", Lang::Python, World::Reducer),
    ("cart-py", Lang::Python, World::Reducer),
    ("email-domains-js", Lang::JavaScript, World::Projection),
    ("cart-daily-totals-py", Lang::Python, World::Projection),
    ("email-domains-py", Lang::Python, World::Projection),
];

/// The plugin folder whose `node_modules` (jco, componentize-qjs) builds the
/// JavaScript plugins that have no `package-lock.json` of their own, and whose
/// `src/json.js` (exact JSON) they import.
const JS_TOOLCHAIN: &str = "user-js";

/// What fixes a missing toolchain.
const SETUP: &str = "run './dev setup'";
/// The folder in plugins/ of Python modules the Python reducers share.
const PY_COMMON: &str = "py-common";

fn main() {
    let plugins = build_plugins::build(&[
        "user",
        "cart",
        "email-domains",
        "fixture-spin",
        "fixture-bomb",
        "fixture-trap",
        "fixture-other-world",
        "fixture-next-contract",
        "fixture-user-v2",
        "fixture-hostile",
        "fixture-bad-info",
        "fixture-leaky",
        "fixture-forgetful",
        "fixture-projection-hostile",
    ]);
    for plugin in &plugins {
        if let Some(short) = plugin.name.strip_prefix("fixture-") {
            let path = plugin.component.with_file_name(format!("{short}.wasm"));
            fs::rename(&plugin.component, &path).expect("rename a fixture");
        }
        if plugin.name == "user" {
            // Not a component: what cargo produced before wit-component.
            let path = plugin.component.with_file_name("user-core.wasm");
            fs::copy(&plugin.core, &path).expect("copy the user core module");
        }
    }
    build_lang_plugins();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lang {
    JavaScript,
    Python,
}

/// What a plugin implements: a reducer (`wit/reducer.wit`, world `plugin`, its code
/// in `src/reducer.js` or the module `reducer`) or a projection
/// (`wit/projection/projection.wit`, world `projection-plugin`, `src/projection.js`
/// or the module `projection`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum World {
    Reducer,
    Projection,
}

impl World {
    fn wit(self, root: &Path) -> PathBuf {
        match self {
            World::Reducer => root.join("wit").join("reducer.wit"),
            World::Projection => root.join("wit").join("projection").join("projection.wit"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            World::Reducer => "plugin",
            World::Projection => "projection-plugin",
        }
    }

    /// The JavaScript entry file, or the Python module.
    fn entry(self) -> &'static str {
        match self {
            World::Reducer => "reducer",
            World::Projection => "projection",
        }
    }
}

/// Builds the JavaScript and Python plugins (in parallel), or takes them from
/// `target/lang-plugins/` when nothing they are built from changed.
fn build_lang_plugins() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .to_path_buf();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let cache = root.join("target").join("lang-plugins");
    fs::create_dir_all(&cache)
        .unwrap_or_else(|e| fail(&format!("cannot create {}: {e}", cache.display())));

    let jobs: Vec<_> = LANG_PLUGINS
        .iter()
        .map(|&(name, lang, world)| {
            let (root, out_dir, cache) = (root.clone(), out_dir.clone(), cache.clone());
            thread::spawn(move || build_lang_plugin(&root, &out_dir, &cache, name, lang, world))
        })
        .collect();
    let mut errors = Vec::new();
    for job in jobs {
        if let Err(e) = job.join().expect("a plugin build thread panicked") {
            errors.push(e);
        }
    }
    if !errors.is_empty() {
        // cargo shows a build script's stderr only when the script fails.
        for e in &errors {
            if !e.detail.is_empty() {
                eprintln!("{}\n", e.detail);
            }
        }
        // One line per problem (a missing venv is one problem for every Python plugin).
        let mut lines: Vec<&str> = errors.iter().map(|e| e.line.as_str()).collect();
        lines.dedup();
        for line in lines {
            println!("cargo::error={line}");
        }
        exit(1);
    }
}

/// A failed plugin build: one line for cargo, the tool's output for stderr.
struct BuildError {
    line: String,
    detail: String,
}

impl BuildError {
    fn line(line: String) -> Self {
        BuildError {
            line,
            detail: String::new(),
        }
    }
}

fn build_lang_plugin(
    root: &Path,
    out_dir: &Path,
    cache: &Path,
    name: &str,
    lang: Lang,
    world: World,
) -> Result<(), BuildError> {
    let plugins = root.join("plugins");
    let dir = plugins.join(name);
    let wit = world.wit(root);
    let mut sources = sources(&dir, lang);
    // A JavaScript plugin without a lockfile of its own is built with JS_TOOLCHAIN's
    // toolchain, from plugins/ (so that it may import JS_TOOLCHAIN's json.js).
    let own_toolchain = lang == Lang::Python || dir.join("package-lock.json").is_file();
    let tool_dir = if own_toolchain {
        dir.clone()
    } else {
        plugins.join(JS_TOOLCHAIN)
    };
    if lang == Lang::Python {
        // Modules the Python plugins share (exact_json.py), on their path with `-p`.
        sources.extend(self::sources(&plugins.join(PY_COMMON), lang));
    } else if !own_toolchain {
        sources.push(tool_dir.join("src").join("json.js"));
    }
    for path in sources.iter().chain([&wit]) {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let tool = toolchain(root, &tool_dir, name, lang)?;
    println!("cargo:rerun-if-changed={}", tool.stamp.display());

    let mut hasher = DefaultHasher::new();
    (name, &tool.version).hash(&mut hasher);
    for path in sources.iter().chain([&wit]) {
        path.strip_prefix(root).unwrap_or(path).hash(&mut hasher);
        fs::read(path)
            .map_err(|e| BuildError::line(format!("cannot read {}: {e}", path.display())))?
            .hash(&mut hasher);
    }
    let cached = cache.join(format!("{name}-{:016x}.wasm", hasher.finish()));
    let out = out_dir.join(format!("{name}.wasm"));
    if !cached.is_file() {
        // Another cargo (release, clippy) may be building the same plugin right now.
        let partial = cache.join(format!("{name}.{}.partial", std::process::id()));
        let mut cmd = match lang {
            Lang::JavaScript => {
                // The same command as the plugin's `npm run build`: jco's QuickJS
                // backend (componentize-qjs), without the component-model async ABI
                // (wasmtime's component model here has none), every WASI import
                // replaced by a trap. `--cwd` makes jco resolve the source from the
                // plugin's folder (it runs from the source's own folder otherwise).
                // A plugin on JS_TOOLCHAIN's toolchain is built from plugins/ (its
                // package.json's `npm run build` does the same).
                let entry = format!("src/{}.js", world.entry());
                let (cwd, entry) = if own_toolchain {
                    (dir.clone(), entry)
                } else {
                    (plugins.clone(), format!("{name}/{entry}"))
                };
                let mut cmd = Command::new(&tool.program);
                cmd.current_dir(cwd)
                    .args(["componentize", &entry, "--cwd", "."])
                    .arg("--wit")
                    .arg(&wit)
                    .args(["--world-name", world.name(), "--backend", "qjs"])
                    .args(["--backend-qjs-disable-async", "--backend-qjs-stub-wasi"])
                    .arg("--out")
                    .arg(&partial);
                cmd
            }
            Lang::Python => {
                // componentize-py writes __pycache__ next to the sources it reads:
                // build from a copy (of the plugin and the shared modules, side by
                // side as in plugins/), so the source tree stays clean (and
                // unchanged, which would make cargo run this script again).
                let copy = out_dir.join(format!("{name}-src"));
                let _ = fs::remove_dir_all(&copy);
                fs::create_dir_all(&copy).map_err(|e| {
                    BuildError::line(format!("cannot create {}: {e}", copy.display()))
                })?;
                for path in &sources {
                    let to = copy.join(
                        path.strip_prefix(&plugins)
                            .expect("sources are in plugins/"),
                    );
                    fs::create_dir_all(to.parent().expect("a file has a folder"))
                        .and_then(|()| fs::copy(path, &to))
                        .map_err(|e| {
                            BuildError::line(format!("cannot copy {}: {e}", path.display()))
                        })?;
                }
                // The same command as the plugin README's, with the WIT in place.
                let mut cmd = Command::new(&tool.program);
                cmd.current_dir(copy.join(name))
                    .arg("--wit-path")
                    .arg(&wit)
                    .args([
                        "--world",
                        world.name(),
                        "componentize",
                        "-p",
                        ".",
                        "-p",
                        &format!("../{PY_COMMON}"),
                        "--stub-wasi",
                        world.entry(),
                    ])
                    .arg("--output")
                    .arg(&partial);
                cmd
            }
        };
        let output = cmd.output().map_err(|e| {
            BuildError::line(format!(
                "cannot run {}: {e}; {SETUP}",
                tool.program.display()
            ))
        })?;
        if !output.status.success() {
            let _ = fs::remove_file(&partial);
            return Err(BuildError {
                line: format!(
                    "building plugins/{name} failed: the {lang:?} toolchain's output is above"
                ),
                detail: format!(
                    "--- plugins/{name}: {cmd:?} ---\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
            });
        }
        fs::rename(&partial, &cached)
            .map_err(|e| BuildError::line(format!("cannot write {}: {e}", cached.display())))?;
        // Older builds of this plugin are of no more use.
        let prefix = format!("{name}-");
        for entry in fs::read_dir(cache).into_iter().flatten().flatten() {
            let file = entry.file_name();
            let file = file.to_string_lossy();
            let hash = file
                .strip_prefix(&prefix)
                .and_then(|f| f.strip_suffix(".wasm"));
            if hash.is_some_and(|h| h.len() == 16 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                && entry.path() != cached
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    fs::copy(&cached, &out)
        .map_err(|e| BuildError::line(format!("cannot write {}: {e}", out.display())))?;
    Ok(())
}

/// The files a plugin is built from: everything in its folder but what tools
/// install or write there (node_modules, __pycache__, built components).
fn sources(dir: &Path, lang: Lang) -> Vec<PathBuf> {
    fn walk(dir: &Path, lang: Lang, files: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if path.is_dir() {
                if !matches!(name.as_ref(), "node_modules" | "__pycache__" | ".venv") {
                    walk(&path, lang, files);
                }
            } else if !name.ends_with(".wasm") && !name.ends_with(".pyc") && !name.ends_with(".md")
            {
                let wanted = match lang {
                    Lang::JavaScript => true,
                    Lang::Python => name.ends_with(".py") || name == "requirements.txt",
                };
                if wanted {
                    files.push(path);
                }
            }
        }
    }
    if !dir.is_dir() {
        fail(&format!("{} is missing", dir.display()));
    }
    let mut files = Vec::new();
    walk(dir, lang, &mut files);
    files.sort();
    files
}

/// An installed toolchain: what to run, its version, and a file whose change means
/// it was reinstalled.
struct Toolchain {
    program: PathBuf,
    version: String,
    stamp: PathBuf,
}

fn toolchain(root: &Path, dir: &Path, name: &str, lang: Lang) -> Result<Toolchain, BuildError> {
    match lang {
        Lang::JavaScript => {
            // The folder whose toolchain it is (another plugin's, for some).
            let name = dir.file_name().map_or(name.into(), |n| n.to_string_lossy());
            let node = Command::new("node").arg("--version").output();
            if !node.is_ok_and(|o| o.status.success()) {
                return Err(BuildError::line(format!(
                    "Node.js, which builds the JavaScript reducers, is missing ('node' is not on PATH): {SETUP}"
                )));
            }
            // jco runs the build; componentize-qjs (a native binary in an npm
            // package) makes the component. Both as package-lock.json pins them.
            let program = dir.join("node_modules/.bin/jco");
            let mut versions = Vec::new();
            for package in ["@bytecodealliance/jco", "componentize-qjs"] {
                let path = format!("node_modules/{package}");
                let installed = fs::read_to_string(dir.join(&path).join("package.json"))
                    .ok()
                    .and_then(|t| json_version(&t));
                let locked = fs::read_to_string(dir.join("package-lock.json"))
                    .ok()
                    .and_then(|t| locked_version(&t, &path));
                match (installed, locked) {
                    (Some(installed), Some(locked)) if installed == locked => {
                        versions.push(format!("{package} {installed}"));
                    }
                    (installed, locked) => {
                        return Err(BuildError::line(format!(
                            "the JavaScript toolchain of plugins/{name} is not installed (its node_modules has {package} {}, package-lock.json wants {}): {SETUP}",
                            installed.as_deref().unwrap_or("missing"),
                            locked.as_deref().unwrap_or("?"),
                        )));
                    }
                }
            }
            if !program.exists() {
                return Err(BuildError::line(format!(
                    "the JavaScript toolchain of plugins/{name} is not installed (node_modules/.bin/jco is missing): {SETUP}"
                )));
            }
            Ok(Toolchain {
                program,
                version: versions.join(", "),
                stamp: dir.join("node_modules/.package-lock.json"),
            })
        }
        Lang::Python => {
            let venv = root.join("target").join("py-venv");
            let program = venv.join("bin").join("componentize-py");
            let pinned = fs::read_to_string(dir.join("requirements.txt"))
                .ok()
                .and_then(|t| {
                    t.lines().find_map(|l| {
                        l.trim()
                            .strip_prefix("componentize-py==")
                            .map(|v| v.trim().to_string())
                    })
                })
                .unwrap_or_else(|| {
                    fail(&format!(
                        "plugins/{name}/requirements.txt must pin componentize-py==VERSION"
                    ))
                });
            let version = Command::new(&program)
                .arg("--version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
            match version {
                Some(v) if v == format!("componentize-py {pinned}") => Ok(Toolchain {
                    program,
                    version: v,
                    stamp: venv.join("bin").join("componentize-py"),
                }),
                v => Err(BuildError::line(format!(
                    "componentize-py {pinned}, which builds the Python reducers, is not installed in target/py-venv (found: {}): {SETUP}",
                    v.unwrap_or_else(|| "nothing".into())
                ))),
            }
        }
    }
}

/// The top-level `"version"` of a package.json.
fn json_version(text: &str) -> Option<String> {
    let at = text.find("\"version\"")?;
    quoted_after_colon(&text[at + "\"version\"".len()..])
}

/// The `"version"` of `package` in a package-lock.json's `packages`.
fn locked_version(text: &str, package: &str) -> Option<String> {
    let at = text.find(&format!("\"{package}\": {{"))?;
    json_version(&text[at..])
}

fn quoted_after_colon(text: &str) -> Option<String> {
    let rest = text
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    Some(rest[..rest.find('"')?].to_string())
}

/// Ends the build script with `message` as cargo's one error line.
fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    exit(1)
}
