//! Builds the demo's reducer (`plugins/user`) into a component, so the binary can
//! `include_bytes!(env!("STREAMFOLD_BUNDLED_USER_WASM"))`. The only build script of
//! the host that compiles WebAssembly: applications that embed the `streamfold`
//! library build none.

#[path = "../../plugins/build_plugins.rs"]
mod build_plugins;

fn main() {
    for plugin in build_plugins::build(&["user"]) {
        let var = format!("STREAMFOLD_BUNDLED_{}_WASM", plugin.name.to_uppercase());
        println!("cargo:rustc-env={var}={}", plugin.component.display());
    }
}
