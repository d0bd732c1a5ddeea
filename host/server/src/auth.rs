//! Bearer tokens with roles.
//!
//! A token is `sft_` and 43 characters of URL-safe base64 (32 random bytes). The
//! tokens file holds only their SHA-256 hashes, one per line, with a role and
//! optionally the aggregate types the token is limited to:
//!
//! ```text
//! # role: read (GET), write (append + read), admin (plugins + everything)
//! sha256:3b1f…9c0e write user,cart
//! sha256:77aa…01f2 admin
//! ```
//!
//! `streamfold token new --role write --types user,cart` prints a new token and the
//! line to add. A presented token is hashed and compared with every line in constant
//! time, so neither the comparison nor the file reveals a token.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::problem::Problem;

/// What a token may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads: histories, states, category feeds, subscriptions, plugin lists.
    Read,
    /// Reads and appends.
    Write,
    /// Everything, plugins included.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        })
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("{s:?} is not a role (read, write or admin)")),
        }
    }
}

/// Who is calling: a role, and the aggregate types it is limited to (`None`: all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's role.
    pub role: Role,
    /// The types the token is limited to, if it is.
    pub types: Option<BTreeSet<String>>,
}

impl Caller {
    /// Anyone on a server without tokens (loopback only, or `--insecure`).
    pub fn unrestricted() -> Self {
        Caller {
            role: Role::Admin,
            types: None,
        }
    }

    /// Whether the caller may do what `role` allows, on `aggregate_type` when given.
    pub fn require(&self, role: Role, aggregate_type: Option<&str>) -> Result<(), Problem> {
        if self.role < role {
            return Err(Problem::forbidden(format!(
                "this needs the {role} role; the token has {}",
                self.role
            )));
        }
        if let (Some(types), Some(t)) = (&self.types, aggregate_type)
            && !types.contains(t)
        {
            return Err(Problem::forbidden(format!(
                "the token is limited to the aggregate types {}",
                types.iter().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// Whether the token is limited to some types (and so may not use routes that
    /// span types, like listing every plugin).
    pub fn may_see(&self, aggregate_type: &str) -> bool {
        self.types
            .as_ref()
            .is_none_or(|t| t.contains(aggregate_type))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            Problem::new(
                crate::problem::ProblemType::Internal,
                "this route declares no role, so it has no caller",
            )
        })
    }
}

#[derive(Debug, Clone)]
struct Entry {
    hash: [u8; 32],
    caller: Caller,
}

/// The tokens a server accepts (their hashes).
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl Tokens {
    /// Parses a tokens file's text. Errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let bad = |why: String| format!("line {}: {why}", n + 1);
            let mut words = line.split_whitespace();
            let hash = words.next().unwrap_or("");
            let hex = hash
                .strip_prefix("sha256:")
                .ok_or_else(|| bad("expected sha256:HEX ROLE [TYPES]".into()))?;
            let mut bytes = [0u8; 32];
            hex::decode_to_slice(hex, &mut bytes)
                .map_err(|_| bad("the hash is not 64 hex digits".into()))?;
            let role: Role = words
                .next()
                .ok_or_else(|| bad("no role".into()))?
                .parse()
                .map_err(bad)?;
            let types = words.next().map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(str::to_owned)
                    .collect::<BTreeSet<_>>()
            });
            if words.next().is_some() {
                return Err(bad("too many fields".into()));
            }
            entries.push(Entry {
                hash: bytes,
                caller: Caller { role, types },
            });
        }
        if entries.is_empty() {
            return Err("the tokens file holds no token".into());
        }
        Ok(Tokens { entries })
    }

    /// Reads and parses a tokens file.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The caller a presented token stands for. Compares against every entry in
    /// constant time, whichever matches.
    pub fn check(&self, token: &str) -> Option<Caller> {
        self.by_hash(&Tokens::hash(token))
    }

    /// The SHA-256 hash of a token, as the tokens file holds it.
    pub fn hash(token: &str) -> [u8; 32] {
        Sha256::digest(token.as_bytes()).into()
    }

    /// The caller of the token with this hash (a session names its token so).
    pub(crate) fn by_hash(&self, hash: &[u8; 32]) -> Option<Caller> {
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(hash)) && found.is_none() {
                found = Some(e.caller.clone());
            }
        }
        found
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none (never true for a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A new random token, and the tokens-file line that accepts it.
pub fn new_token(role: Role, types: &[String]) -> Result<(String, String), String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness for a token: {e}"))?;
    let token = format!(
        "sft_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hex::encode(Tokens::hash(&token));
    let mut line = format!("sha256:{hash} {role}");
    if !types.is_empty() {
        line.push(' ');
        line.push_str(&types.join(","));
    }
    Ok((token, line))
}

/// The bearer token a request presents (`Authorization: Bearer …`), if any.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// The caller a request stands for, or 401 (403 for a session cookie on what a
/// session may not do). Every caller is unrestricted on a server without tokens.
///
/// A bearer token stands for its role and types. Without one, a browser session
/// cookie ([`crate::session`]) stands for its token's types with the `read` role, on
/// `GET` and `HEAD` requests only: a cookie never authorises a change.
pub(crate) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    role: Role,
) -> Result<Caller, Problem> {
    let Some(tokens) = &state.tokens else {
        return Ok(Caller::unrestricted());
    };
    if let Some(token) = bearer(headers) {
        return tokens
            .check(token)
            .ok_or_else(|| Problem::unauthorized("the bearer token is not known to this server"));
    }
    let Some(cookie) = crate::session::cookie(headers) else {
        return Err(Problem::unauthorized(
            "this server needs a bearer token (Authorization: Bearer sft_…)",
        ));
    };
    let caller = state
        .sessions
        .as_ref()
        .and_then(|s| s.verify(cookie, chrono::Utc::now()))
        .and_then(|hash| tokens.by_hash(&hash))
        .ok_or_else(|| {
            Problem::unauthorized(
                "the session has ended or is not valid: sign in again with a bearer token (POST /v1/session)",
            )
        })?;
    if role > Role::Read || !(method == Method::GET || method == Method::HEAD) {
        return Err(Problem::forbidden(
            "a browser session grants reads (GET) only: send a bearer token for this",
        ));
    }
    Ok(Caller {
        role: Role::Read,
        types: caller.types,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_their_line() {
        let (token, line) = new_token(Role::Write, &["user".into(), "cart".into()]).unwrap();
        assert!(token.starts_with("sft_") && token.len() == 47, "{token}");
        assert!(!line.contains(&token), "the line holds only a hash");
        let tokens = Tokens::parse(&format!("# comment\n\n{line}\n")).unwrap();
        let caller = tokens.check(&token).expect("accepted");
        assert_eq!(caller.role, Role::Write);
        assert!(caller.require(Role::Write, Some("user")).is_ok());
        assert!(caller.require(Role::Write, Some("order")).is_err());
        assert!(caller.require(Role::Admin, None).is_err());
        assert!(tokens.check("sft_wrong").is_none());
        assert!(tokens.check(&token[..token.len() - 1]).is_none());
    }

    #[test]
    fn bad_lines_are_named() {
        for (text, why) in [
            ("", "no token"),
            ("sha256:zz read", "line 1"),
            ("md5:00 read", "line 1"),
            (&format!("sha256:{} boss", "0".repeat(64)), "not a role"),
            (&format!("sha256:{} read a b", "0".repeat(64)), "too many"),
        ] {
            let e = Tokens::parse(text).unwrap_err();
            assert!(e.contains(why), "{text:?}: {e}");
        }
    }
}
