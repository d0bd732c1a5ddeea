//! Reducer components built from source by `tests/build.rs` (never committed):
//! paths to give the host, and their bytes.
//!
//! | constant | what it is |
//! | --- | --- |
//! | [`USER`] | `plugins/user`: the seed's `user` aggregate |
//! | [`CART`] | `plugins/cart`: a shopping cart with rules |
//! | [`USER_JS`] | `plugins/user-js`: the `user` reducer in JavaScript (jco, QuickJS backend) |
//! | [`USER_PY`] | `plugins/user-py`: the `user` reducer in Python (componentize-py) |
//! | [`CART_PY`] | `plugins/cart-py`: the `cart` reducer in Python (componentize-py) |
//! | [`SPIN`] | `apply` loops forever (aggregate `user`, handles `UserCreated`) |
//! | [`BOMB`] | `apply` allocates without bound (same) |
//! | [`TRAP`] | `apply` logs one `error` line, then panics, i.e. traps (same) |
//! | [`USER_CORE`] | the `user` core module: WebAssembly, but not a component |
//! | [`OTHER_WORLD`] | a valid component of another world (`test:other/other`, exports `run: func()`) |
//! | [`HOSTILE`] | logs and rejects with terminal escapes, forged lines and 100 KB of text (aggregate `hostile`) |
//! | [`BAD_INFO`] | its `info.name` holds terminal escapes: must be refused |
//! | [`LEAKY`] | keeps a global counter across aggregates in its state: replays differ between fresh and warm instances (aggregate `user`) |
//! | [`NEXT_CONTRACT`] | a reducer built against `streamfold:reducer@0.2.0`, a contract version the host does not speak |

use std::path::{Path, PathBuf};

/// `plugins/user`: the seed's `user` aggregate.
pub const USER: &str = concat!(env!("OUT_DIR"), "/user.wasm");
/// `plugins/cart`: a shopping cart with rules.
pub const CART: &str = concat!(env!("OUT_DIR"), "/cart.wasm");
/// `plugins/user-js`: the `user` reducer in JavaScript (jco, QuickJS backend).
pub const USER_JS: &str = concat!(env!("OUT_DIR"), "/user-js.wasm");
/// `plugins/user-py`: the `user` reducer in Python (componentize-py).
pub const USER_PY: &str = concat!(env!("OUT_DIR"), "/user-py.wasm");
/// `plugins/cart-py`: the `cart` reducer in Python (componentize-py).
pub const CART_PY: &str = concat!(env!("OUT_DIR"), "/cart-py.wasm");
/// `tests/plugins/spin`: `apply` loops forever.
pub const SPIN: &str = concat!(env!("OUT_DIR"), "/spin.wasm");
/// `tests/plugins/bomb`: `apply` allocates without bound, 1 MiB at a time.
pub const BOMB: &str = concat!(env!("OUT_DIR"), "/bomb.wasm");
/// `tests/plugins/leaky`: its states count the aggregates its instance started
/// before (state kept across aggregates).
pub const LEAKY: &str = concat!(env!("OUT_DIR"), "/leaky.wasm");
/// `tests/plugins/forgetful`: counts events, and its `restore` refuses every state
/// (its own too).
pub const FORGETFUL: &str = concat!(env!("OUT_DIR"), "/forgetful.wasm");
/// `tests/plugins/trap`: `apply` logs one line at `error` level, then panics.
pub const TRAP: &str = concat!(env!("OUT_DIR"), "/trap.wasm");
/// The `user` plugin's core module, before it was made a component.
pub const USER_CORE: &str = concat!(env!("OUT_DIR"), "/user-core.wasm");
/// `tests/plugins/other`: a component of the world `test:other/other`.
pub const OTHER_WORLD: &str = concat!(env!("OUT_DIR"), "/other-world.wasm");
/// `tests/plugins/next-contract`: a reducer built against `streamfold:reducer@0.2.0`.
pub const NEXT_CONTRACT: &str = concat!(env!("OUT_DIR"), "/next-contract.wasm");

/// `tests/plugins/hostile`: hands the host hostile text (see its docs).
pub const HOSTILE: &str = concat!(env!("OUT_DIR"), "/hostile.wasm");
/// `tests/plugins/bad-info`: its `info.name` holds terminal escapes.
pub const BAD_INFO: &str = concat!(env!("OUT_DIR"), "/bad-info.wasm");

/// `tests/plugins/user-v2`: version 0.2.0 of a `user` reducer that upper-cases
/// names and counts its events in `v2_events` (for the live-update tests).
pub const USER_V2: &str = concat!(env!("OUT_DIR"), "/user-v2.wasm");

/// The path of the built plugin `name`: `user`, `cart`, `user-js`, `user-py`,
/// `cart-py`, `spin`, `bomb`, `trap`, `user-core`, `other-world`, `next-contract`,
/// `hostile`, `bad-info` or `user-v2`.
pub fn path(name: &str) -> PathBuf {
    let path = Path::new(env!("OUT_DIR")).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "no built plugin named {name:?} ({} is missing)",
        path.display()
    );
    path
}

/// The bytes of the built plugin at `path` (one of the constants).
pub fn read(path: impl AsRef<Path>) -> Vec<u8> {
    let path = path.as_ref();
    std::fs::read(path).unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()))
}

/// The compiled-code cache every test that loads the large JavaScript and Python
/// components shares: `target/test-code-cache`. They take seconds to compile,
/// milliseconds to load from here.
pub fn code_cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the workspace")
        .join("target")
        .join("test-code-cache")
}
