//! Builds every reducer the integration tests load, from source, into `OUT_DIR`:
//! the example plugins, the misbehaving fixtures of `tests/plugins/`, and two files
//! the host must refuse (a core module, a component of another world).
//! `src/plugins.rs` names them.

use std::fs;

#[path = "../host/build_plugins.rs"]
mod build_plugins;

fn main() {
    let plugins = build_plugins::build(&[
        "user",
        "cart",
        "fixture-spin",
        "fixture-bomb",
        "fixture-trap",
        "fixture-other-world",
        "fixture-user-v2",
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
}
