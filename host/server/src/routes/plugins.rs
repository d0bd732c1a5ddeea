//! The plugin registry over HTTP: the same operations and checks as the CLI.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use streamfold::{Plugin, RegisterOptions, RegisteredPlugin, VerifyOptions, VerifyReport};

use streamfold::Activation;
use utoipa::{IntoParams, ToSchema};

use super::{Body, Json, Path, Query, TypePath, replay_slot};
use crate::AppState;
use crate::auth::{Caller, Role};
use crate::problem::{Problem, ProblemType};

/// `none`, `all` or `sample:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verify {
    None,
    Sample(usize),
    All,
}

impl Verify {
    fn parse(s: Option<&str>) -> Result<Self, Problem> {
        match s {
            None | Some("none") => Ok(Verify::None),
            Some("all") => Ok(Verify::All),
            Some(s) => s
                .strip_prefix("sample:")
                .and_then(|n| n.parse().ok())
                .map(Verify::Sample)
                .ok_or_else(|| {
                    Problem::invalid(format!("verify={s:?} is not none, all or sample:N"))
                }),
        }
    }

    fn options(self) -> Option<VerifyOptions> {
        match self {
            Verify::None => None,
            Verify::Sample(n) => Some(VerifyOptions::default().sample(n)),
            Verify::All => Some(VerifyOptions::default().all()),
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct UploadQuery {
    /// Make it the active reducer of its type (default true).
    activate: Option<bool>,
    /// Replay existing aggregates through it first and compare with the active
    /// reducer: `none` (default), `sample:N` or `all`.
    #[param(pattern = "^(none|all|sample:[0-9]{1,18})$")]
    verify: Option<String>,
    /// Register even when the verify finds differences or failures.
    force: Option<bool>,
}

/// A registered plugin and, if it was verified, the report.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Uploaded {
    /// The registration.
    plugin: RegisteredPlugin,
    /// The replay-diff report (`null` without `verify`).
    verify: Option<VerifyReport>,
}

async fn candidate(
    state: &AppState,
    caller: &Caller,
    bytes: &axum::body::Bytes,
) -> Result<Arc<Plugin>, Problem> {
    let (plugin, _) = state.runtime.load_async(bytes.to_vec().into()).await?;
    caller.require(Role::Admin, Some(&plugin.info().aggregate_type))?;
    Ok(plugin)
}

async fn run_verify(
    state: &AppState,
    plugin: Arc<Plugin>,
    options: VerifyOptions,
) -> Result<VerifyReport, Problem> {
    let _slot = replay_slot(state).await?;
    Ok(state.runtime.verify(plugin, options, |_, _| {}).await?)
}

/// `POST /v1/plugins?activate=&verify=none|sample:N|all&force=`: the `.wasm` is the
/// body. 201 with the registration and the verify report; 422 when the verify finds
/// differences or failures and `force` is not set (nothing is registered then).
#[utoipa::path(
    post,
    path = "/v1/plugins",
    tag = "plugins",
    operation_id = "upload_plugin",
    summary = "Register (and by default activate) a reducer component",
    params(UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component's bytes"),
    responses(
        (status = 201, description = "Registered", body = Uploaded),
        (status = 400, description = "Not a usable reducer component (`invalid-plugin`), or a bad parameter"),
        (status = 403, description = "Not an admin token, or not for this type"),
        (status = 413, description = "Over the upload limit"),
        (status = 415, description = "Not `application/wasm`"),
        (status = 422, description = "The verify found differences or failures (`verification-failed`, with the report in `verify`); nothing was registered"),
    ),
)]
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<UploadQuery>,
    Body(bytes): Body,
) -> Result<Response, Problem> {
    let verify = Verify::parse(q.verify.as_deref())?;
    let plugin = candidate(&state, &caller, &bytes).await?;
    let mut report = None;
    if let Some(options) = verify.options() {
        let r = run_verify(&state, plugin, options).await?;
        if !r.passed() && !q.force.unwrap_or(false) {
            return Err(Problem::new(
                ProblemType::VerificationFailed,
                format!(
                    "{} of {} aggregates differ, {} fail in the candidate and {} show it keeps state across aggregates; nothing was registered (force=true registers anyway)",
                    r.differed.len(),
                    r.checked,
                    r.failed.len(),
                    r.keeps_state_across_aggregates.len()
                ),
            )
            .with("verify", &r));
        }
        report = Some(r);
    }
    let activate = q.activate.unwrap_or(true);
    let reg = state
        .runtime
        .register(
            bytes.to_vec(),
            RegisterOptions::default().activate(activate),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(Uploaded {
            plugin: reg,
            verify: report,
        }),
    )
        .into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only this aggregate type's versions.
    #[serde(rename = "type")]
    aggregate_type: Option<String>,
}

/// `GET /v1/plugins?type=`: every registered version, the active ones marked.
#[utoipa::path(
    get,
    path = "/v1/plugins",
    tag = "plugins",
    operation_id = "list_plugins",
    summary = "Every registered reducer version, the active ones marked",
    params(ListQuery),
    responses((status = 200, description = "The registered versions", body = Vec<RegisteredPlugin>)),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Vec<RegisteredPlugin>>, Problem> {
    let mut plugins = state.runtime.plugins(q.aggregate_type.as_deref()).await?;
    plugins.retain(|p| caller.may_see(&p.info.aggregate_type));
    Ok(axum::Json(plugins))
}

/// Which registered version to activate: `{"digest": …}` or `{"version": …}`.
#[derive(Debug)]
pub(crate) enum ActivateBody {
    /// Its digest (`sha256:HEX` or `HEX`).
    Digest(String),
    /// Its version.
    Version(String),
}

impl<'de> Deserialize<'de> for ActivateBody {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let mut fields = map.into_iter();
        match (fields.next(), fields.next()) {
            (Some((key, serde_json::Value::String(v))), None) if !v.is_empty() => {
                match key.as_str() {
                    "digest" => Ok(ActivateBody::Digest(v)),
                    "version" => Ok(ActivateBody::Version(v)),
                    other => Err(D::Error::custom(format!(
                        "unknown field {other:?}: give digest or version"
                    ))),
                }
            }
            _ => Err(D::Error::custom(
                "give exactly one of digest and version, as a non-empty string",
            )),
        }
    }
}

impl utoipa::PartialSchema for ActivateBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, OneOfBuilder, Type};
        let one = |name: &str, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property(
                    name,
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1))
                        .description(Some(description)),
                )
                .required(name)
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        OneOfBuilder::new()
            .description(Some(
                "Which registered version to activate: exactly one of its digest and its version.",
            ))
            .item(one("digest", "Its digest (`sha256:HEX` or `HEX`)"))
            .item(one("version", "Its version"))
            .into()
    }
}

impl ToSchema for ActivateBody {
    fn name() -> std::borrow::Cow<'static, str> {
        "ActivateRequest".into()
    }
}

/// `PUT /v1/plugins/{type}/active` with `{"digest"}` or `{"version"}`: also the rollback.
#[utoipa::path(
    put,
    path = "/v1/plugins/{type}/active",
    tag = "plugins",
    operation_id = "activate_plugin",
    summary = "Activate a registered version (also the rollback)",
    params(TypePath),
    request_body = ActivateBody,
    responses(
        (status = 200, description = "Now active: the next request is served by it", body = RegisteredPlugin),
        (status = 404, description = "No such version of this type"),
    ),
)]
pub(crate) async fn activate(
    State(state): State<AppState>,
    Path(aggregate_type): Path<String>,
    Json(body): Json<ActivateBody>,
) -> Result<axum::Json<RegisteredPlugin>, Problem> {
    let wanted = match body {
        ActivateBody::Digest(d) => d.trim_start_matches("sha256:").to_owned(),
        ActivateBody::Version(v) => v,
    };
    Ok(axum::Json(
        state.runtime.activate(&aggregate_type, &wanted).await?,
    ))
}

/// `GET /v1/plugins/{type}/history`: what was active when, newest first.
#[utoipa::path(
    get,
    path = "/v1/plugins/{type}/history",
    tag = "plugins",
    operation_id = "plugin_history",
    summary = "What was active when, newest first",
    params(TypePath),
    responses((status = 200, description = "The activations", body = Vec<Activation>)),
)]
pub(crate) async fn history(
    State(state): State<AppState>,
    Path(aggregate_type): Path<String>,
) -> Result<axum::Json<Vec<Activation>>, Problem> {
    Ok(axum::Json(
        state.runtime.activation_history(&aggregate_type).await?,
    ))
}

/// `DELETE /v1/plugins/{type}/{digest_or_version}`: refuses the active version (409).
#[utoipa::path(
    delete,
    path = "/v1/plugins/{type}/{digest_or_version}",
    tag = "plugins",
    operation_id = "remove_plugin",
    summary = "Remove a registered version (never the active one)",
    params(
        ("type" = String, Path, description = "The aggregate type"),
        ("digest_or_version" = String, Path, description = "A digest (`sha256:HEX` or `HEX`) or a version", example = "0.1.0"),
    ),
    responses(
        (status = 200, description = "Removed", body = RegisteredPlugin),
        (status = 404, description = "No such version"),
        (status = 409, description = "It is the active version (`active-plugin`): activate another first"),
    ),
)]
pub(crate) async fn remove(
    State(state): State<AppState>,
    Path((aggregate_type, wanted)): Path<(String, String)>,
) -> Result<axum::Json<RegisteredPlugin>, Problem> {
    let wanted = wanted.trim_start_matches("sha256:");
    let reg = state.runtime.registered(&aggregate_type, wanted).await?;
    if reg.active {
        return Err(Problem::new(
            ProblemType::ActivePlugin,
            format!(
                "{} is the active reducer for {aggregate_type:?}: activate another version first",
                reg.info.label()
            ),
        )
        .with("digest", &reg.info.digest));
    }
    Ok(axum::Json(
        state
            .runtime
            .remove(&aggregate_type, &reg.info.digest)
            .await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct VerifyQuery {
    /// The type the component must fold (checked against its `info`: 409
    /// `wrong-type` when it folds another).
    #[serde(rename = "type")]
    aggregate_type: Option<String>,
    /// How many aggregates to compare: a number, or `all`.
    #[param(pattern = "^([0-9]{1,18}|all)$")]
    sample: Option<String>,
}

/// `POST /v1/plugins/verify?type=&sample=N|all`: the replay-diff report; activates
/// nothing.
#[utoipa::path(
    post,
    path = "/v1/plugins/verify",
    tag = "plugins",
    operation_id = "verify_plugin",
    summary = "Replay existing aggregates through a candidate and compare; activates nothing",
    params(VerifyQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The candidate component's bytes"),
    responses(
        (status = 200, description = "The replay-diff report (`differed` and `failed` empty: it may be activated)", body = VerifyReport),
        (status = 400, description = "Not a usable reducer component, or a bad parameter"),
        (status = 503, description = "Too many replays are running (`busy`)"),
    ),
)]
pub(crate) async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<VerifyQuery>,
    Body(bytes): Body,
) -> Result<axum::Json<VerifyReport>, Problem> {
    let (plugin, _) = state.runtime.load_async(bytes.to_vec().into()).await?;
    let declared = &plugin.info().aggregate_type;
    caller.require(Role::Read, Some(declared))?;
    if let Some(t) = q.aggregate_type.as_ref().filter(|t| *t != declared) {
        return Err(Problem::new(
            ProblemType::WrongType,
            format!(
                "{} folds {declared:?} aggregates, not {t:?}",
                plugin.info().label()
            ),
        ));
    }
    let options = match q.sample.as_deref() {
        None => VerifyOptions::default(),
        Some("all") => VerifyOptions::default().all(),
        Some(n) => VerifyOptions::default().sample(
            n.parse()
                .map_err(|_| Problem::invalid(format!("sample={n:?} is not a number or all")))?,
        ),
    };
    Ok(axum::Json(run_verify(&state, plugin, options).await?))
}
