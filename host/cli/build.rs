//! Builds the bundled reducers (`plugins/user`, `plugins/cart`) into components, so
//! the host can `include_bytes!(env!("STREAMFOLD_BUNDLED_USER_WASM"))`.

#[path = "build_plugins.rs"]
mod build_plugins;

fn main() {
    for plugin in build_plugins::build(&["user", "cart"]) {
        let var = format!("STREAMFOLD_BUNDLED_{}_WASM", plugin.name.to_uppercase());
        println!("cargo:rustc-env={var}={}", plugin.component.display());
    }
}
