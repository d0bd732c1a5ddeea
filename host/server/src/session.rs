//! Browser sessions: a bearer token exchanged for a cookie that grants reads only.
//!
//! A browser cannot send a bearer token on an `EventSource`, so a page exchanges one
//! (`POST /v1/session`) for a cookie, `HttpOnly` and `SameSite=Strict`, that names
//! the token by its hash, expires, and is signed (HMAC-SHA256) with a key every host
//! of the store shares (kept in Redis, made by the first host that needs it). The
//! cookie stands for the token's types with the `read` role, on `GET` (and `HEAD`)
//! requests only: no request that changes anything is ever authorised by a cookie.
//! A session ends at its expiry, when its token leaves the tokens file, or when the
//! key is deleted (every session at once).

use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The cookie's name.
pub(crate) const COOKIE: &str = "sf_session";

/// A signed session: the token's hash and an expiry.
#[derive(Debug, Clone)]
pub(crate) struct Sessions {
    key: [u8; 32],
}

impl Sessions {
    /// The store's session key (shared by its hosts, made by the first).
    pub(crate) async fn load(runtime: &streamfold::Runtime) -> streamfold::Result<Sessions> {
        Ok(Sessions {
            key: runtime.shared_secret("session").await?,
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length")
    }

    /// A cookie value for the token with this hash, valid for `lifetime` from `now`.
    pub(crate) fn issue(
        &self,
        token_hash: &[u8; 32],
        now: DateTime<Utc>,
        lifetime: Duration,
    ) -> (String, DateTime<Utc>) {
        let expires =
            now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::hours(8));
        let payload = format!("v1.{}.{}", expires.timestamp(), hex::encode(token_hash));
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{payload}.{sig}"), expires)
    }

    /// The token hash a cookie value names, if its signature holds and it has not
    /// expired at `now`.
    pub(crate) fn verify(&self, value: &str, now: DateTime<Utc>) -> Option<[u8; 32]> {
        let (payload, sig) = value.rsplit_once('.')?;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig)
            .ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig).ok()?;
        let mut parts = payload.split('.');
        let (version, expires, hash) = (parts.next()?, parts.next()?, parts.next()?);
        if version != "v1" || parts.next().is_some() {
            return None;
        }
        if expires.parse::<i64>().ok()? <= now.timestamp() {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(hash, &mut out).ok()?;
        Some(out)
    }
}

/// The session cookie of a request, if it has one.
pub(crate) fn cookie(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_only_with_its_signature_before_its_expiry() {
        let s = Sessions { key: [7; 32] };
        let now = Utc::now();
        let (value, expires) = s.issue(&[1; 32], now, Duration::from_secs(60));
        assert!(expires > now);
        assert_eq!(s.verify(&value, now), Some([1; 32]));
        assert_eq!(
            s.verify(&value, now + chrono::Duration::seconds(61)),
            None,
            "expired"
        );
        let other = Sessions { key: [8; 32] };
        assert_eq!(other.verify(&value, now), None, "another key");
        // Any change to the payload breaks the signature.
        let (payload, sig) = value.rsplit_once('.').unwrap();
        let later = payload.replace(
            &expires.timestamp().to_string(),
            &(expires.timestamp() + 9999).to_string(),
        );
        assert_eq!(s.verify(&format!("{later}.{sig}"), now), None);
        for junk in ["", ".", "v1", "v1.1.2.3", "x.y"] {
            assert_eq!(s.verify(junk, now), None, "{junk:?}");
        }
    }
}
