//! Compiles the explorer's files (`ui/`) into the binary: writes `ui_files.rs` into
//! `OUT_DIR`, one `(path, bytes)` entry per file under `ui/`, in path order, so a
//! file added to `ui/` is served with no change to the code.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::{env, fs};

fn main() {
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it")).join("ui");
    // Cargo scans a directory named here for any change below it.
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    if root.is_dir() {
        walk(&root, &root, &mut files);
    }
    files.sort();
    let mut out = String::from("/// The explorer's files: (path under `ui/`, contents).\n");
    out.push_str("pub(crate) static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        writeln!(out, "    ({rel:?}, include_bytes!({abs:?})),").expect("a String takes writes");
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it")).join("ui_files.rs");
    fs::write(dest, out).expect("OUT_DIR is writable");
}

/// Every regular file under `dir`, as (path relative to `root` with `/`, absolute path).
fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).expect("ui/ is readable") {
        let path = entry.expect("ui/ is readable").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Editors' swap and backup files, and dotfiles, are not the page.
        if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") {
            continue;
        }
        if path.is_dir() {
            walk(root, &path, files);
        } else if path.is_file() {
            let rel = path.strip_prefix(root).expect("below root");
            let rel: Vec<_> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((rel.join("/"), path.display().to_string()));
        }
    }
}
