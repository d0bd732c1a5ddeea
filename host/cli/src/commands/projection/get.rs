//! `streamfold projection get`: one projection's status, or one of its documents.

use anyhow::Result;
use streamfold::Runtime;

use crate::exit::Explained;
use crate::output::{self, outln};

/// Show a projection's status, or with KEY the document at that key of its serving
/// version (the document as JSON).
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    name: String,
    /// A document key, e.g. `domain/example.com`.
    key: Option<String>,
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(rt: &Runtime, args: Args) -> Result<()> {
    let Some(key) = &args.key else {
        let p = rt.projection_status(&args.name).await?;
        if args.json {
            output::json(&p)?;
        } else {
            super::list::print(&p)?;
        }
        return Ok(());
    };
    match rt.projection_doc(&args.name, key).await? {
        // The document is JSON the sandbox checked: printed as is (one line).
        Some(d) => outln!("{}", d.doc)?,
        None => {
            return Err(Explained::not_found(format!(
                "projection {:?} has no document {:?}",
                args.name,
                super::shown(key)
            ))
            .into());
        }
    }
    Ok(())
}
