//! `streamfold projection query`: documents in key order, by prefix.

use anyhow::Result;
use streamfold::Runtime;

use crate::output::{self, outln};

/// List documents of a projection's serving version in key order: those whose key
/// starts with PREFIX, a page at a time (`--after` the last key shown).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    name: String,
    /// Only keys that start with this, e.g. `domain/`. (Not `prefix`: that is the
    /// global `--prefix` of every key in Redis.)
    #[arg(default_value = "", value_name = "PREFIX")]
    key_prefix: String,
    /// Start after this key.
    #[arg(long)]
    after: Option<String>,
    /// At most this many documents (1 to 1,000).
    #[arg(long, default_value_t = 100)]
    limit: usize,
    /// One JSON object: `{"docs": [{"key", "doc"}], "next_after"}`.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let page = rt
        .projection_docs(
            &args.name,
            &args.key_prefix,
            args.after.as_deref(),
            args.limit,
        )
        .await?;
    if args.json {
        let docs: Vec<serde_json::Value> = page
            .docs
            .iter()
            .map(|(key, doc)| {
                serde_json::json!({
                    "key": key,
                    "doc": serde_json::from_str::<serde_json::Value>(doc).unwrap_or_default(),
                })
            })
            .collect();
        output::json(&serde_json::json!({"docs": docs, "next_after": page.next_after}))?;
        return Ok(());
    }
    for (key, doc) in &page.docs {
        // Keys are the projection's text: shown escaped; documents are checked JSON.
        outln!("{}\t{doc}", super::shown(key))?;
    }
    if let Some(next) = &page.next_after {
        outln!("… more after {:?} (--after)", super::shown(next))?;
    }
    Ok(())
}
