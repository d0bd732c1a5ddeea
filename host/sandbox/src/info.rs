//! `info` is untrusted text that the registry keeps and every error shows, whatever
//! the kind of plugin: the checks on its fields, shared by reducers and
//! projections. What is too long, or holds characters that could repaint a
//! terminal, is refused instead of stored; messages quote the offending value
//! bounded and escaped.

use crate::error::Error;
use crate::text;

/// Longest `info.name`, aggregate type and event type, in bytes.
pub const MAX_INFO_NAME: usize = 128;
/// Longest `info.version`, in bytes.
pub const MAX_INFO_VERSION: usize = 64;
/// Most entries in `info.handles` (and in a projection's `info.sources`).
pub const MAX_HANDLES: usize = 1024;

/// Checks the fields of one plugin's `info`, refusing with an error that names the
/// plugin when its name is presentable.
pub(crate) struct InfoCheck<'a> {
    name: Option<&'a str>,
}

fn quoted(s: &str) -> String {
    format!("\"{}\"", text::shown(s, 64))
}

fn sane(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !text::has_controls(s)
}

impl<'a> InfoCheck<'a> {
    /// Starts checking the `info` whose name is `name`.
    pub(crate) fn new(name: &'a str) -> Self {
        InfoCheck {
            name: Some(name).filter(|n| !n.is_empty() && !text::has_controls(n)),
        }
    }

    fn bad(&self, reason: String) -> Error {
        Error::plugin(self.name, reason)
    }

    /// `info.name`: 1 to [`MAX_INFO_NAME`] bytes, not blank, no control characters.
    pub(crate) fn name(&self, name: &str) -> Result<(), Error> {
        if !sane(name, MAX_INFO_NAME) || name.trim().is_empty() {
            return Err(self.bad(format!(
                "info.name {} ({} bytes) must be 1 to {MAX_INFO_NAME} bytes with no control characters",
                quoted(name),
                name.len()
            )));
        }
        Ok(())
    }

    /// `info.version`: a semantic version of at most [`MAX_INFO_VERSION`] bytes.
    pub(crate) fn version(&self, version: &str) -> Result<(), Error> {
        if version.len() > MAX_INFO_VERSION || !is_semver(version) {
            return Err(self.bad(format!(
                "info.version {} is not a semantic version like 1.2.3 of at most {MAX_INFO_VERSION} bytes",
                quoted(version)
            )));
        }
        Ok(())
    }

    /// An aggregate type (`field` names it in the message): 1 to [`MAX_INFO_NAME`]
    /// bytes with no whitespace, control characters, braces or colons (it becomes
    /// part of Redis keys and hash tags).
    pub(crate) fn aggregate_type(&self, field: &str, t: &str) -> Result<(), Error> {
        if !sane(t, MAX_INFO_NAME)
            || t.chars()
                .any(|c| c.is_whitespace() || matches!(c, '{' | '}' | ':'))
        {
            return Err(self.bad(format!(
                "{field} {} must be 1 to {MAX_INFO_NAME} bytes with no whitespace, control characters, braces or colons",
                quoted(t)
            )));
        }
        Ok(())
    }

    /// `info.handles`: at most [`MAX_HANDLES`] event types of 1 to
    /// [`MAX_INFO_NAME`] bytes, not blank, no control characters.
    pub(crate) fn handles(&self, handles: &[String]) -> Result<(), Error> {
        if handles.len() > MAX_HANDLES {
            return Err(self.bad(format!(
                "info.handles lists {} event types; at most {MAX_HANDLES} are accepted",
                handles.len()
            )));
        }
        if let Some(h) = handles
            .iter()
            .find(|h| !sane(h, MAX_INFO_NAME) || h.trim().is_empty())
        {
            return Err(self.bad(format!(
                "info.handles contains the event type {} ({} bytes): each must be 1 to {MAX_INFO_NAME} bytes with no control characters",
                quoted(h),
                h.len()
            )));
        }
        Ok(())
    }

    /// A list of aggregate types (`field` names it): 1 to [`MAX_HANDLES`] of them,
    /// each as [`aggregate_type`](Self::aggregate_type) says, none twice.
    pub(crate) fn aggregate_types(&self, field: &str, types: &[String]) -> Result<(), Error> {
        if types.is_empty() || types.len() > MAX_HANDLES {
            return Err(self.bad(format!(
                "{field} lists {} aggregate types; 1 to {MAX_HANDLES} are accepted",
                types.len()
            )));
        }
        for (i, t) in types.iter().enumerate() {
            self.aggregate_type(field, t)?;
            if types[..i].contains(t) {
                return Err(self.bad(format!("{field} lists {} twice", quoted(t))));
            }
        }
        Ok(())
    }
}

/// `MAJOR.MINOR.PATCH`, optionally followed by `-pre` and/or `+build` made of ASCII
/// letters, digits, `-` and `.` (as semver.org says).
pub(crate) fn is_semver(v: &str) -> bool {
    let (core, rest) = match v.find(['-', '+']) {
        Some(i) => v.split_at(i),
        None => (v, ""),
    };
    if !rest
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'+'))
    {
        return false;
    }
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semver() {
        assert!(is_semver("0.1.0"));
        assert!(is_semver("1.20.3-beta.1+build5"));
        assert!(!is_semver("1.2"));
        assert!(!is_semver("01.2.3"));
        assert!(!is_semver("v1.2.3"));
        assert!(!is_semver(""));
        assert!(!is_semver("1.0.0-\u{1b}[2J"));
        assert!(!is_semver("1.0.0+build 5"));
    }

    #[test]
    fn lists_of_aggregate_types() {
        let check = InfoCheck::new("p");
        assert!(
            check
                .aggregate_types("info.sources", &["user".into(), "cart".into()])
                .is_ok()
        );
        let err = check.aggregate_types("info.sources", &[]).unwrap_err();
        assert!(err.to_string().contains("lists 0 aggregate types"), "{err}");
        let err = check
            .aggregate_types("info.sources", &["user".into(), "user".into()])
            .unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
        let err = check
            .aggregate_types("info.sources", &["us{er}".into()])
            .unwrap_err();
        assert!(err.to_string().contains("info.sources \"us{er}\""), "{err}");
    }
}
