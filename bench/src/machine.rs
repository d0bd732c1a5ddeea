//! The machine a run was made on, so figures can be read against it.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Cores this process may use.
    pub nproc: usize,
    /// `model name` of /proc/cpuinfo.
    pub cpu_model: String,
    /// `MemTotal` of /proc/meminfo.
    pub memory: String,
    /// /proc/loadavg's 1, 5 and 15 minute averages when the run started.
    pub loadavg_start: String,
    /// ... and when it ended.
    pub loadavg_end: String,
    pub kernel: String,
    pub redis_version: String,
    /// `git rev-parse --short HEAD`, `+dirty` if the tree has changes.
    pub commit: String,
    /// Python, redis-py and hiredis versions of the seed reference (if it ran).
    pub python: Option<serde_json::Value>,
}

impl Machine {
    pub fn now() -> Machine {
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model: cpu_model(),
            memory: proc_field("/proc/meminfo", "MemTotal").unwrap_or_default(),
            loadavg_start: loadavg(),
            loadavg_end: String::new(),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_default(),
            redis_version: String::new(),
            commit: commit(),
            python: None,
        }
    }
}

/// The 1, 5 and 15 minute load averages, e.g. `1.02 0.87 0.60`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn cpu_model() -> String {
    proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown CPU".to_owned())
}

fn proc_field(path: &str, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let Some(head) = git(&["rev-parse", "--short", "HEAD"]) else {
        return "unknown".to_owned();
    };
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    if dirty { format!("{head}+dirty") } else { head }
}
