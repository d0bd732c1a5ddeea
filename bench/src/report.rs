//! What a run found: rows of figures (each with its runs and, where it has one, its
//! ratio to a baseline measured in the same rounds), the goals of issue 7 held
//! against them, and the machine. Printed as a table and written as JSON.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::machine::Machine;
use crate::stats::Stat;

/// One figure.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Stable id, e.g. `replay.100000.wasm-rust`.
    pub key: String,
    /// The table's section, e.g. `Replay of one aggregate, 100,000 events`.
    pub section: String,
    /// What was measured.
    pub name: String,
    /// Unit of `value`: `events/s`, `ms`, `µs`, `bytes/event`, ...
    pub unit: String,
    /// Median, min, max over the measured runs.
    pub value: Stat,
    /// The measured runs, in round order.
    pub samples: Vec<f64>,
    /// Against baselines measured in the same rounds.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ratios: Vec<Ratio>,
    /// Anything a reader needs to read the figure right.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A ratio to another row, computed per round (same round, same conditions).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The baseline row's key.
    pub against: String,
    /// How to read it, e.g. `seed time / our time (x faster)`.
    pub meaning: String,
    /// Short form for the table, e.g. `faster than seed (hiredis)`.
    pub label: String,
    pub value: Stat,
}

/// One goal of issue 7.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub goal: String,
    pub target: String,
    pub measured: String,
    /// None: not measured in this run.
    pub met: Option<bool>,
}

/// A whole run.
#[derive(Debug, Serialize)]
pub struct Report {
    pub mode: String,
    pub machine: Machine,
    pub started_at: String,
    pub duration_s: f64,
    pub rounds: RoundsInfo,
    pub rows: Vec<Row>,
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoundsInfo {
    pub warmup: usize,
    pub measured: usize,
}

impl Report {
    pub fn row(&self, key: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.key == key)
    }

    pub fn write_json(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)? + "\n")?;
        Ok(())
    }

    /// The human table (markdown, so BENCHMARKS.md can hold it as printed).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "Streamfold benchmarks, {} mode: {}, {} cores, load average {} at start, {} at end; redis-server {}; {} warm-up + {} measured rounds (alternating); {:.0} s",
            self.mode,
            m.cpu_model,
            m.nproc,
            m.loadavg_start,
            m.loadavg_end,
            m.redis_version,
            self.rounds.warmup,
            self.rounds.measured,
            self.duration_s
        );
        let mut section = "";
        for r in &self.rows {
            if r.section != section {
                section = &r.section;
                let _ = writeln!(out, "\n### {section}\n");
                let _ = writeln!(
                    out,
                    "| what | median | min | max | unit | ratio (median [min-max]) |"
                );
                let _ = writeln!(out, "| --- | ---: | ---: | ---: | --- | --- |");
            }
            let ratio = r
                .ratios
                .iter()
                .map(|q| {
                    format!(
                        "**{}** [{}-{}] {}",
                        fmt_ratio(q.value.median),
                        fmt_ratio(q.value.min),
                        fmt_ratio(q.value.max),
                        q.label
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            let note = r
                .note
                .as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {} | {} | {} |",
                r.name,
                note,
                fmt_num(r.value.median),
                fmt_num(r.value.min),
                fmt_num(r.value.max),
                r.unit,
                ratio
            );
        }
        let _ = writeln!(out, "\n### Goals (issues 7, 12, 13, 20 and 21)\n");
        let _ = writeln!(out, "| goal | target | measured | met |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for g in &self.goals {
            let met = match g.met {
                Some(true) => "met",
                Some(false) => "**not met**",
                None => "not measured",
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {met} |",
                g.goal, g.target, g.measured
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(out, "\nNotes:");
            for n in &self.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
        out
    }
}

/// 3 significant digits, thousands separated.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_owned();
    }
    if x == 0.0 {
        return "0".to_owned();
    }
    let a = x.abs();
    // Rounded first: 999.6 is "1,000", not "1000".
    if a.round() >= 1000.0 {
        group(x.round() as i64)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

pub fn fmt_ratio(x: f64) -> String {
    if !x.is_finite() {
        return "-".to_owned();
    }
    if x >= 100.0 {
        format!("{x:.0}x")
    } else if x >= 10.0 {
        format!("{x:.1}x")
    } else {
        format!("{x:.2}x")
    }
}

fn group(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1234567.0), "1,234,567");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(0.1234), "0.123");
        assert_eq!(fmt_ratio(25.26), "25.3x");
        assert_eq!(fmt_ratio(1.234), "1.23x");
    }
}
