//! Users by e-mail domain: a projection of the `user` category. It keeps
//! `user/<id>` as `{"domain": …}` and `domain/<domain>` as
//! `{"domain": …, "users": N, "user_ids": [ids, sorted]}`; a domain left with no
//! users has no document. An `EmailChanged` of a user it never saw created (an
//! early part of the category trimmed away, say) counts that user all the same.

use serde::{Deserialize, Serialize};
use streamfold_guest::{Projection, ProjectionEvent, ReadModel, Rejection};

/// The `email-domains` projection.
#[derive(Debug)]
pub struct EmailDomains;

#[derive(Serialize, Deserialize)]
struct User {
    domain: String,
}

#[derive(Serialize, Deserialize)]
struct Domain {
    domain: String,
    users: usize,
    user_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Email {
    email: String,
}

impl Projection for EmailDomains {
    const SOURCES: &'static [&'static str] = &["user"];
    const HANDLES: &'static [&'static str] = &["UserCreated", "EmailChanged"];

    fn apply(event: &ProjectionEvent, model: &mut ReadModel<'_>) -> Result<(), Rejection> {
        let domain = domain_of(&event.data::<Email>()?.email)?;
        let id = event.aggregate_id();
        let user_key = format!("user/{id}");
        let old = model.view(&user_key, |u: Option<&User>| u.map(|u| u.domain.clone()))?;
        if old.as_deref() == Some(domain.as_str()) {
            return Ok(());
        }
        // Domain documents are held parsed for the batch (`update`): an event changes
        // a list of thousands of ids without parsing or printing it.
        if let Some(old) = old {
            model.update(&format!("domain/{old}"), |d: &mut Option<Domain>| {
                if let Some(doc) = d {
                    doc.user_ids.retain(|u| u != id);
                    doc.users = doc.user_ids.len();
                    if doc.users == 0 {
                        *d = None;
                    }
                }
            })?;
        }
        let key = format!("domain/{domain}");
        model.update(&key, |d: &mut Option<Domain>| {
            let doc = d.get_or_insert_with(|| Domain {
                domain: domain.clone(),
                users: 0,
                user_ids: Vec::new(),
            });
            if let Err(at) = doc.user_ids.binary_search_by(|u| u.as_str().cmp(id)) {
                doc.user_ids.insert(at, id.to_owned());
            }
            doc.users = doc.user_ids.len();
        })?;
        model.update(&user_key, |u: &mut Option<User>| *u = Some(User { domain }))
    }
}

/// The lowercased part of `email` after its last `@`: not empty, no whitespace.
pub fn domain_of(email: &str) -> Result<String, Rejection> {
    match email.rsplit_once('@') {
        Some((_, d))
            if !d.is_empty() && !d.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(d.to_lowercase())
        }
        _ => Err(Rejection::invalid_data(format!(
            "email {email:?} has no domain after an @"
        ))),
    }
}

streamfold_guest::export_projection!(EmailDomains);

#[cfg(test)]
mod tests;
