//! Builds plugins (reducers and projections) from source into WebAssembly
//! components, for build scripts.
//!
//! Shared by `host/cli/build.rs` and `tests/build.rs` (`#[path]`-included). Modelled on
//! wasmtime's `crates/test-programs/artifacts/build.rs`: a nested
//! `cargo build --profile plugin --target wasm32-unknown-unknown -p <crate>...` into
//! `<workspace>/target/plugins` (its own target dir, so it never waits on the lock of
//! the build that runs this script), then `wit-component` turns each core module into
//! a component, written to `OUT_DIR/<crate>.wasm`.
//!
//! `wasm32-unknown-unknown` plus `wit-component` gives components whose only imports
//! are their world's own interfaces (`types`, and `host` if the plugin logs; a
//! projection's `read-model` too); `wasm32-wasip2` would add 14 WASI interfaces the
//! plugins never call. wit-component needs no world named here: each core module
//! carries the world it was built against (the reducer's `plugin` or the
//! projection's `projection-plugin`) in the custom sections wit-bindgen wrote.

#![allow(dead_code)] // each build script uses part of this file

use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, exit};

/// The target plugins are compiled for.
pub const TARGET: &str = "wasm32-unknown-unknown";

/// One plugin crate, built.
#[derive(Debug)]
pub struct Plugin {
    /// The crate's name, e.g. `user` or `fixture-spin`.
    pub name: String,
    /// The core module cargo produced, in `target/plugins` (not a component).
    pub core: PathBuf,
    /// The component, `OUT_DIR/<name>.wasm`.
    pub component: PathBuf,
}

/// Builds the plugin crates `crates` (workspace members) into components in `OUT_DIR`.
///
/// Exits the build script with one clear error if the compilation target is missing or
/// a plugin does not build.
pub fn build(crates: &[&str]) -> Vec<Plugin> {
    let root = workspace_root();
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    for path in [
        "Cargo.toml",
        "Cargo.lock",
        "wit",
        "guest-sdk",
        // The Rust plugins only: the JavaScript and Python folders (node_modules,
        // build outputs) must not rebuild the host.
        "plugins/user",
        "plugins/cart",
        "plugins/email-domains",
        "tests/plugins",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    check_target();

    let target_dir = root.join("target").join("plugins");
    let mut cargo = Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--profile", "plugin", "--target", TARGET])
        .arg("--target-dir")
        .arg(&target_dir);
    for name in crates {
        cargo.args(["-p", name]);
    }
    // What the outer build sets for its own compilation must not leak into this one:
    // flags meant for the host's target, another target dir, clippy or coverage
    // wrappers (which would also change fingerprints and force rebuilds).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ] {
        cargo.env_remove(var);
    }
    let output = cargo
        .output()
        .unwrap_or_else(|err| fail(&format!("cannot run cargo to build the plugins: {err}")));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("may not be installed") || stderr.contains("can't find crate for `core`")
        {
            missing_target();
        }
        // cargo shows a build script's stderr only when the script fails.
        eprintln!("{stderr}");
        println!(
            "cargo::error=building the plugins {crates:?} for {TARGET} failed: cargo's output follows"
        );
        exit(1);
    }

    let artifacts = target_dir.join(TARGET).join("plugin");
    crates
        .iter()
        .map(|name| {
            let core = artifacts.join(format!("{}.wasm", name.replace('-', "_")));
            let module = fs::read(&core)
                .unwrap_or_else(|err| fail(&format!("cannot read {}: {err}", core.display())));
            let component = componentize(&module)
                .unwrap_or_else(|err| fail(&format!("cannot make a component of {name}: {err}")));
            let path = out_dir.join(format!("{name}.wasm"));
            fs::write(&path, component)
                .unwrap_or_else(|err| fail(&format!("cannot write {}: {err}", path.display())));
            Plugin {
                name: name.to_string(),
                core,
                component: path,
            }
        })
        .collect()
}

/// Turns a core module carrying wit-bindgen's component-type section into a component.
pub fn componentize(module: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(module)
        .and_then(|encoder| encoder.validate(true).encode())
        .map_err(|err| format!("{err:#}"))
}

/// The workspace root: the nearest folder above the crate whose build script runs
/// this that holds `wit/reducer.wit`.
fn workspace_root() -> PathBuf {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR is set"));
    match manifest_dir
        .ancestors()
        .skip(1)
        .find(|dir| dir.join("wit").join("reducer.wit").is_file())
    {
        Some(root) => root.to_path_buf(),
        None => fail(&format!(
            "cannot find the workspace (with wit/reducer.wit) above {}: plugins are built from the source tree",
            manifest_dir.display()
        )),
    }
}

/// Fails with one clear line unless the standard library for [`TARGET`] is installed.
fn check_target() {
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let Ok(output) = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", TARGET])
        .output()
    else {
        return; // let cargo report it
    };
    let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let has_core = fs::read_dir(&libdir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|entry| entry.file_name().to_string_lossy().starts_with("libcore-"))
    });
    if !output.status.success() || !has_core {
        missing_target();
    }
}

fn missing_target() -> ! {
    fail(&format!(
        "the {TARGET} target is missing: run 'rustup target add {TARGET}'"
    ))
}

/// Ends the build script with `message` as cargo's one error line.
fn fail(message: &str) -> ! {
    println!("cargo::error={message}");
    exit(0)
}
