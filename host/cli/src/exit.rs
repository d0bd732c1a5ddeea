//! Exit statuses, as documented in the README, and how a failed command is told on
//! stderr: one `error: ...` line, sometimes a `hint: ...` line after it.

use std::process::ExitCode;

use crate::output;

pub(crate) const OK: u8 = 0;
pub(crate) const FAILURE: u8 = 1;
/// Usage errors and invalid input.
pub(crate) const USAGE: u8 = 2;
pub(crate) const CONFLICT: u8 = 3;
pub(crate) const NOT_FOUND: u8 = 4;
pub(crate) const VERIFY_FAILED: u8 = 5;

/// An error the command line itself decided on: `message` is printed as it is, and
/// the process exits with `status`.
#[derive(Debug)]
pub(crate) struct Explained {
    pub status: u8,
    pub message: String,
}

impl Explained {
    /// Invalid input the command line found (exit status 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Explained {
            status: USAGE,
            message: message.into(),
        }
    }

    /// Something asked for is not there (exit status 4).
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Explained {
            status: NOT_FOUND,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Explained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Explained {}

/// Tells the error on stderr and returns the exit status for it. A closed stdout
/// (`streamfold history ... | head`) is not an error: the reader has all it wanted.
pub(crate) fn report(e: &anyhow::Error) -> ExitCode {
    if output::is_closed_stdout(e) {
        return ExitCode::from(OK);
    }
    eprintln!("error: {e:#}");
    if let Some(hint) = hint(e) {
        eprintln!("hint: {hint}");
    }
    ExitCode::from(status(e))
}

/// Maps the error (the first of ours, the library's or the store's in the chain)
/// to an exit status.
pub(crate) fn status(e: &anyhow::Error) -> u8 {
    use streamfold::ErrorKind as Lib;
    use streamfold_store::ErrorKind as Store;
    for cause in e.chain() {
        if let Some(x) = cause.downcast_ref::<Explained>() {
            return x.status;
        }
        if let Some(e) = cause.downcast_ref::<streamfold::Error>() {
            return match e.kind() {
                Lib::Conflict => CONFLICT,
                Lib::NotFound => NOT_FOUND,
                Lib::InvalidInput => USAGE,
                _ => FAILURE,
            };
        }
        if let Some(e) = cause.downcast_ref::<streamfold_store::Error>() {
            return match e.kind() {
                Store::Conflict => CONFLICT,
                Store::InvalidInput => USAGE,
                Store::NotFound => NOT_FOUND,
                _ => FAILURE,
            };
        }
    }
    FAILURE
}

/// What to do about a missing reducer: the library says what is missing, the
/// command line knows which command helps.
fn hint(e: &anyhow::Error) -> Option<String> {
    let missing = e
        .chain()
        .find_map(|c| c.downcast_ref::<streamfold::Error>())
        .filter(|e| e.is_not_found())?
        .to_string();
    if missing.starts_with("an active reducer for aggregate type ") {
        return Some("register one with `streamfold plugin add FILE.wasm`".to_owned());
    }
    let (aggregate_type, _) = missing
        .strip_prefix("a registered ")?
        .split_once(" reducer matching ")?;
    Some(format!(
        "`streamfold plugin list {aggregate_type}` shows the registered versions"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_error_anywhere_in_the_chain() {
        let not_found = anyhow::Error::new(streamfold::Error::not_found("aggregate user/1"))
            .context("replaying");
        assert_eq!(status(&not_found), NOT_FOUND);
        let usage = anyhow::Error::new(Explained::usage("line 3: bad")).context("importing");
        assert_eq!(status(&usage), USAGE);
        let bad_revision = "three"
            .parse::<streamfold::ExpectedRevision>()
            .map_err(anyhow::Error::new)
            .unwrap_err()
            .context("--expect");
        assert_eq!(status(&bad_revision), USAGE);
        let bad_json = streamfold::NewEvent::from_json_text("E", "{nope")
            .map_err(anyhow::Error::new)
            .unwrap_err();
        assert_eq!(status(&bad_json), USAGE);
        assert_eq!(status(&anyhow::anyhow!("something else")), FAILURE);
    }

    #[test]
    fn missing_reducers_come_with_a_hint() {
        let none_active = anyhow::Error::new(streamfold::Error::not_found(
            "an active reducer for aggregate type \"user\"",
        ));
        assert_eq!(
            hint(&none_active).as_deref(),
            Some("register one with `streamfold plugin add FILE.wasm`")
        );
        let no_match = anyhow::Error::new(streamfold::Error::not_found(
            "a registered user reducer matching \"0.9.9\"",
        ));
        assert_eq!(
            hint(&no_match).as_deref(),
            Some("`streamfold plugin list user` shows the registered versions")
        );
        let no_events = anyhow::Error::new(streamfold::Error::not_found("aggregate user/1"));
        assert_eq!(hint(&no_events), None);
    }
}
