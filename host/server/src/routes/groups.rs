//! Durable subscriptions: named consumer groups over a type's category, served to
//! workers in any language. Creating, deleting and replaying parked events are an
//! operator's actions (`admin`); fetching, acking, nacking and reading a group's
//! status and parked events need `read` on the type.
//!
//! A fetch is a long poll bounded by the request timeout: it waits at most
//! `wait_ms` (at most [`MAX_WAIT_MS`]), and never past the server's request timeout
//! less a margin, then answers with an empty list. So the route keeps the request
//! timeout like every other, and a fetch never ends in a 503 for waiting.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use streamfold::{
    GroupInfo, GroupSettings, GroupStart, MAX_ACK_TIMEOUT_MS, MAX_FETCH, MAX_REASON_CHARS,
    MAX_SETTLE, NackAction, ParkReason, RecordedEvent,
};
use utoipa::{IntoParams, ToSchema};

use super::{Json, Path, Positions, Query};
use crate::AppState;
use crate::auth::Caller;
use crate::problem::{Problem, ProblemType};

/// The longest a fetch waits for events, in ms.
pub(crate) const MAX_WAIT_MS: u64 = 30_000;
/// How many events a fetch asks for without `max`.
const DEFAULT_FETCH: usize = 100;
/// A delivery token as a fetch gives it: `partition/ms-seq`.
const DELIVERY_PATTERN: &str = "^[0-9]{1,10}/[0-9]{1,19}-[0-9]{1,19}$";
/// The longest delivery token.
const MAX_DELIVERY_CHARS: usize = 50;

/// A delivery token as a client gives it back: its schema is what the store accepts
/// (the partition must also be one of the type's).
#[derive(Debug, Clone, Deserialize)]
#[serde(transparent)]
pub(crate) struct Token(String);

impl AsRef<str> for Token {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Token {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(DELIVERY_PATTERN))
            .max_length(Some(MAX_DELIVERY_CHARS))
            .description(Some(
                "A delivery token, `partition/position`, as a fetch gave it",
            ))
            .examples([serde_json::json!("0/1700000000000-0")])
            .into()
    }
}

impl utoipa::ToSchema for Token {}

/// The path of a group (for the OpenAPI document; handlers take `Path<(String, String)>`).
#[derive(IntoParams)]
#[into_params(names("type", "group"), parameter_in = Path)]
#[allow(dead_code)] // a description only
pub(crate) struct GroupPath(
    /// The aggregate type whose category the group follows, e.g. `user`.
    String,
    /// The group's name, e.g. `mailer`: 1 to 128 characters, no whitespace, control
    /// characters or braces (its schema is the store's rule, see `declare::Names`).
    String,
);

/// A whole number as JSON Schema counts one: `5` and `5.0` alike (a client's JSON
/// library may write either); a fraction, a negative or a number past `u64` is
/// refused.
fn whole<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(n) = n.as_u64() {
        return Ok(Some(n));
    }
    match n.as_f64() {
        Some(f) if f >= 0.0 && f.fract() == 0.0 && f < u64::MAX as f64 => Ok(Some(f as u64)),
        _ => Err(serde::de::Error::custom(format!(
            "{n} is not a whole number of 0 or more"
        ))),
    }
}

/// A JSON object body as `T`: like [`Json`], and also 400 for a body that is not an
/// object (serde would take an array for a struct, field by field).
fn object<T: serde::de::DeserializeOwned>(
    Json(body): Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<T, Problem> {
    serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| {
        Problem::invalid(format!(
            "Failed to deserialize the JSON body into the target type: {e}"
        ))
    })
}

/// 400 unless `name` is a usable group or consumer name.
fn check_name(what: &str, name: &str) -> Result<(), Problem> {
    streamfold::validate_group_name(what, name).map_err(|e| Problem::invalid(e.to_string()))
}

/// A group's settings as a client gives them: every one optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = GroupSettingsRequest)]
pub(crate) struct CreateBody {
    /// Where the group starts: `"beginning"` (every event still in the category, the
    /// default), `"end"` (only events appended from now on) or a category position
    /// (as a category read or subscription gives it: one stream position per
    /// partition, comma-separated) to start after.
    #[schema(value_type = Option<String>, pattern = "^(beginning|end|([0-9]{1,19}(-[0-9]{1,19})?)?(,([0-9]{1,19}(-[0-9]{1,19})?)?)*)$", example = "beginning")]
    start: Option<String>,
    /// How long a delivery may stay unacknowledged before its event is delivered
    /// again, in ms (default 30,000).
    #[schema(minimum = 1, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "whole")]
    ack_timeout_ms: Option<u64>,
    /// How often an event is delivered at most before it is parked (default 10).
    #[serde(default, deserialize_with = "whole")]
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 1_000)]
    max_deliveries: Option<u64>,
}

/// A group's settings.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettingsView {
    /// Where it started: `beginning`, `end` or a category position.
    start: String,
    /// The ack timeout, ms.
    ack_timeout_ms: u64,
    /// How often an event is delivered at most before it is parked.
    max_deliveries: u32,
}

/// A durable subscription group.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Group {
    /// The aggregate type whose category it follows.
    #[serde(rename = "type")]
    aggregate_type: String,
    /// Its name.
    group: String,
    /// Its settings.
    settings: SettingsView,
    /// When it was created, Unix ms.
    created_at_ms: u64,
}

impl From<GroupInfo> for Group {
    fn from(i: GroupInfo) -> Self {
        Group {
            aggregate_type: i.aggregate_type,
            group: i.group,
            settings: SettingsView {
                start: i.settings.start.to_string(),
                ack_timeout_ms: i.settings.ack_timeout_ms,
                max_deliveries: i.settings.max_deliveries,
            },
            created_at_ms: i.created_at_ms,
        }
    }
}

/// What a created group says: the group, and whether this call created it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Created {
    /// The group (the existing one's creation time when it was there already).
    #[serde(flatten)]
    group: Group,
    /// False when the group existed already with these settings: nothing changed.
    created: bool,
}

/// `PUT /v1/groups/{type}/{group}`: creates a group; idempotent.
#[utoipa::path(
    put,
    path = "/v1/groups/{type}/{group}",
    tag = "groups",
    operation_id = "create_group",
    summary = "Create a durable subscription group on a type's category (idempotent)",
    description = "The group follows every partition of the type. Creating it again with the same settings changes nothing (200); with other settings it is refused (409 `group-exists`).",
    params(GroupPath),
    request_body = CreateBody,
    responses(
        (status = 201, description = "Created", body = Created),
        (status = 200, description = "It existed already with these settings: nothing changed", body = Created),
        (status = 400, description = "A bad name, start, ack timeout or max deliveries"),
        (status = 409, description = "The group exists with other settings"),
    ),
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
    body: Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<Response, Problem> {
    let body: CreateBody = object(body)?;
    check_name("group", &group)?;
    let mut settings = GroupSettings::new();
    if let Some(start) = body.start {
        let start: GroupStart = start
            .parse()
            .map_err(|e: <GroupStart as std::str::FromStr>::Err| Problem::invalid(e.to_string()))?;
        if let GroupStart::After(p) = &start {
            super::category_after(
                state.runtime.store(),
                &aggregate_type,
                Some(Positions(p.clone())),
                None,
            )?;
        }
        settings = settings.start(start);
    }
    if let Some(ms) = body.ack_timeout_ms {
        settings.ack_timeout_ms = ms;
    }
    if let Some(n) = body.max_deliveries {
        settings = settings.max_deliveries(u32::try_from(n).unwrap_or(u32::MAX));
    }
    let made = state
        .runtime
        .store()
        .create_group(&aggregate_type, &group, settings)
        .await
        .map_err(|e| {
            if e.is_conflict() {
                Problem::new(ProblemType::GroupExists, e.to_string())
            } else {
                Problem::of(&streamfold::Error::from(e))
            }
        })?;
    let status = if made.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let body = Created {
        group: made.info.into(),
        created: made.created,
    };
    Ok((status, axum::Json(body)).into_response())
}

/// A group with its health.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupStatus {
    /// The group.
    #[serde(flatten)]
    group: Group,
    /// Events not delivered yet (the lag), all partitions; `null` when Redis cannot
    /// tell yet (a group started at a position, until it catches up).
    undelivered: Option<u64>,
    /// Events delivered and not acknowledged.
    pending: u64,
    /// How long the oldest unacknowledged delivery has waited, ms (`null`: none).
    oldest_pending_ms: Option<u64>,
    /// Parked events.
    parked: u64,
    /// Replayed parked events waiting to be delivered again.
    replaying: u64,
    /// Category entries kept beyond the type's configured length because this group
    /// has not acknowledged them: the trim waits for it, and the category grows until
    /// it catches up. 0 when the group holds nothing back.
    trim_held_back: u64,
    /// The same per partition.
    partitions: Vec<PartitionStatus>,
    /// The consumers that have fetched, most recent first.
    consumers: Vec<ConsumerStatus>,
}

/// One partition of a group's status.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GroupPartitionStatus)]
pub(crate) struct PartitionStatus {
    /// The partition.
    partition: u32,
    /// Events not delivered yet (`null`: Redis cannot tell yet).
    undelivered: Option<u64>,
    /// Delivered, not acknowledged.
    pending: u64,
    /// Age of the oldest unacknowledged delivery, ms.
    oldest_pending_ms: Option<u64>,
    /// Parked events.
    parked: u64,
    /// Replayed events waiting.
    replaying: u64,
    /// Category entries the trim kept on this partition for this group.
    trim_held_back: u64,
    /// The stream id of the last new entry handed out.
    last_delivered: String,
}

/// A consumer of a group.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GroupConsumer)]
pub(crate) struct ConsumerStatus {
    /// Its name.
    name: String,
    /// When it last fetched, Unix ms (Redis' clock).
    last_poll_ms: u64,
    /// How long ago that was, ms.
    idle_ms: u64,
    /// Deliveries it holds unacknowledged.
    pending: u64,
}

impl From<streamfold::GroupStatus> for GroupStatus {
    fn from(s: streamfold::GroupStatus) -> Self {
        GroupStatus {
            group: s.info.into(),
            undelivered: s.undelivered,
            pending: s.pending,
            oldest_pending_ms: s.oldest_pending_ms,
            parked: s.parked,
            replaying: s.replaying,
            trim_held_back: s.trim_held_back,
            partitions: s
                .partitions
                .into_iter()
                .map(|p| PartitionStatus {
                    partition: p.partition,
                    undelivered: p.undelivered,
                    pending: p.pending,
                    oldest_pending_ms: p.oldest_pending_ms,
                    parked: p.parked,
                    replaying: p.replaying,
                    trim_held_back: p.trim_held_back,
                    last_delivered: p.last_delivered,
                })
                .collect(),
            consumers: s
                .consumers
                .into_iter()
                .map(|c| ConsumerStatus {
                    name: c.name,
                    last_poll_ms: c.last_poll_ms,
                    idle_ms: c.idle_ms,
                    pending: c.pending,
                })
                .collect(),
        }
    }
}

/// Every group.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct GroupList {
    /// The groups of the types the token may see, by type and name, with their health.
    groups: Vec<GroupStatus>,
}

/// `GET /v1/groups`: every group the token may see, with its health.
#[utoipa::path(
    get,
    path = "/v1/groups",
    tag = "groups",
    operation_id = "list_groups",
    summary = "Every durable subscription group, with its settings, lag and consumers",
    responses((status = 200, description = "The groups of the types the token may see", body = GroupList)),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<axum::Json<GroupList>, Problem> {
    let store = state.runtime.store();
    let mut infos = store
        .list_groups(None)
        .await
        .map_err(streamfold::Error::from)?;
    infos.retain(|i| caller.may_see(&i.aggregate_type));
    let statuses = futures::future::join_all(
        infos
            .iter()
            .map(|i| store.group_status(&i.aggregate_type, &i.group)),
    )
    .await;
    let mut groups = Vec::with_capacity(statuses.len());
    for s in statuses {
        match s {
            Ok(s) => groups.push(s.into()),
            // Deleted since it was listed.
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(streamfold::Error::from(e).into()),
        }
    }
    Ok(axum::Json(GroupList { groups }))
}

/// `GET /v1/groups/{type}/{group}`: a group's settings and health.
#[utoipa::path(
    get,
    path = "/v1/groups/{type}/{group}",
    tag = "groups",
    operation_id = "group",
    summary = "A group's settings, lag (undelivered, pending, oldest pending, parked) and consumers",
    params(GroupPath),
    responses(
        (status = 200, description = "The group", body = GroupStatus),
        (status = 404, description = "No such group"),
    ),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
) -> Result<axum::Json<GroupStatus>, Problem> {
    check_name("group", &group)?;
    let status = state
        .runtime
        .store()
        .group_status(&aggregate_type, &group)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(axum::Json(status.into()))
}

/// `DELETE /v1/groups/{type}/{group}`: deletes a group and all it holds.
#[utoipa::path(
    delete,
    path = "/v1/groups/{type}/{group}",
    tag = "groups",
    operation_id = "delete_group",
    summary = "Delete a group, with its pending and parked events",
    description = "Frees everything the group holds in Redis; the category's events stay.",
    params(GroupPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No such group"),
    ),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
) -> Result<StatusCode, Problem> {
    check_name("group", &group)?;
    state
        .runtime
        .store()
        .delete_group(&aggregate_type, &group)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A fetch: who asks, for how many events, and how long to wait for some.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = FetchRequest)]
pub(crate) struct FetchBody {
    /// The consumer's name, e.g. `worker-1`: 1 to 128 characters, no whitespace,
    /// control characters or braces. Each worker should have its own.
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "^[^\\t-\\r \\x00-\\x1f\\x7f-\\x9f\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000{}]+$",
        example = "worker-1"
    )]
    consumer: String,
    /// The most events to hand out (default 100).
    #[schema(minimum = 1, maximum = 1_000)]
    #[serde(default, deserialize_with = "whole")]
    max: Option<u64>,
    /// How long to wait for events when none is there, ms (default 0: answer at
    /// once). The server never waits past its request timeout (less a margin).
    #[schema(minimum = 0, maximum = 30_000)]
    #[serde(default, deserialize_with = "whole")]
    wait_ms: Option<u64>,
}

/// One event handed to a consumer.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Delivery {
    /// The token to ack or nack it with (`partition/position`).
    delivery: String,
    /// The category partition it came from.
    partition: u32,
    /// How often it has been delivered, this time included (1 the first time).
    delivery_count: u64,
    /// The event; its `position` is its place in the category partition.
    event: RecordedEvent,
}

/// What a fetch handed out.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Deliveries {
    /// The events, at most one per aggregate and each aggregate's in order; empty when
    /// the wait passed without any.
    deliveries: Vec<Delivery>,
}

/// `POST /v1/groups/{type}/{group}/fetch`: a long poll for events.
#[utoipa::path(
    post,
    path = "/v1/groups/{type}/{group}/fetch",
    tag = "groups",
    operation_id = "fetch",
    summary = "Fetch events for a consumer of the group (a long poll)",
    description = "Hands out up to `max` events, waiting up to `wait_ms` for some; an empty list when none came. An aggregate's next event is never handed out while an earlier one is unacknowledged. An event not acknowledged within the group's ack timeout is delivered again, to whichever consumer fetches its partition next, with its `delivery_count` raised; after `max_deliveries` it is parked.",
    params(GroupPath),
    request_body = FetchBody,
    responses(
        (status = 200, description = "The deliveries (maybe none)", body = Deliveries),
        (status = 400, description = "A bad consumer name, `max` or `wait_ms`"),
        (status = 404, description = "No such group"),
    ),
)]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
    body: Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<axum::Json<Deliveries>, Problem> {
    let body: FetchBody = object(body)?;
    check_name("group", &group)?;
    check_name("consumer", &body.consumer)?;
    let max = match body.max {
        None => DEFAULT_FETCH,
        Some(n) if (1..=MAX_FETCH as u64).contains(&n) => n as usize,
        Some(n) => {
            return Err(Problem::invalid(format!(
                "max must be 1 to {MAX_FETCH}, not {n}"
            )));
        }
    };
    let wait_ms = body.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(Problem::invalid(format!(
            "wait_ms must be 0 to {MAX_WAIT_MS}, not {wait_ms}"
        )));
    }
    // Answer before the request timeout does: a waiting fetch ends empty, not in 503.
    let timeout = state.config.request_timeout;
    let bound = timeout.saturating_sub(Duration::from_secs(1).min(timeout / 4));
    let wait = Duration::from_millis(wait_ms).min(bound);
    let got = state
        .runtime
        .store()
        .fetch_wait(&aggregate_type, &group, &body.consumer, max, wait)
        .await
        .map_err(streamfold::Error::from)?;
    state.metrics.delivered(
        &aggregate_type,
        &group,
        got.iter().map(|d| d.delivery_count),
    );
    Ok(axum::Json(Deliveries {
        deliveries: got
            .into_iter()
            .map(|d| Delivery {
                delivery: d.delivery,
                partition: d.partition,
                delivery_count: d.delivery_count,
                event: d.event,
            })
            .collect(),
    }))
}

/// Deliveries to acknowledge.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AckRequest)]
pub(crate) struct AckBody {
    /// The `delivery` tokens of fetched events (at most 10,000).
    #[schema(max_items = 10_000)]
    deliveries: Vec<Token>,
}

/// What to do with deliveries a worker could not handle.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Action {
    /// Deliver again, now or after `delay_ms`.
    Retry,
    /// Move to the group's parked events.
    Park,
    /// Drop: acknowledge without handling.
    Skip,
}

/// Deliveries given back, with what to do with them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NackRequest)]
pub(crate) struct NackBody {
    /// The `delivery` tokens of fetched events (at most 10,000).
    #[schema(max_items = 10_000)]
    deliveries: Vec<Token>,
    /// `retry` (deliver again; the aggregate's later events wait), `park` or `skip`.
    action: Action,
    /// For `retry`: deliver again after this many ms (default 0: at the next fetch);
    /// at most the group's ack timeout. Ignored for `park` and `skip`.
    #[schema(minimum = 0, maximum = 86_400_000)]
    #[serde(default, deserialize_with = "whole")]
    delay_ms: Option<u64>,
    /// Why, kept as the event's last error (shown when it is parked).
    #[schema(max_length = 4096)]
    reason: Option<String>,
}

/// What an ack or nack did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Settled {
    /// How many deliveries it applied to.
    done: usize,
    /// Tokens of deliveries that are not pending (already acknowledged, parked,
    /// never delivered, or of a partition the type does not have): harmless, nothing
    /// was done for them.
    unknown: Vec<String>,
}

/// 404 for an unknown group, even when there is no token to settle (the store then
/// asks Redis nothing). Also makes sure the type's partition count is the one
/// recorded.
async fn known_group(state: &AppState, aggregate_type: &str, group: &str) -> Result<(), Problem> {
    state
        .runtime
        .store()
        .group(aggregate_type, group)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(())
}

/// The tokens to hand the store, and those that cannot be pending because they
/// name a partition the type does not have (a token made for another partition
/// count): those are answered as `unknown`, like any other token not pending. 400
/// for too many tokens. The store checks the rest; see [`known_group`] for the 404.
fn sort_tokens(
    state: &AppState,
    aggregate_type: &str,
    group: &str,
    tokens: Vec<Token>,
) -> Result<(Vec<Token>, Vec<String>), Problem> {
    check_name("group", group)?;
    if tokens.len() > MAX_SETTLE {
        return Err(Problem::invalid(format!(
            "{} delivery tokens in one call; at most {MAX_SETTLE} are allowed",
            tokens.len()
        )));
    }
    let store = state.runtime.store();
    let partitions = u64::from(store.config().partitions_of(aggregate_type));
    let elsewhere = |t: &Token| {
        t.0.split_once('/').is_some_and(|(p, _)| {
            !p.is_empty()
                && p.len() <= 10
                && p.bytes().all(|b| b.is_ascii_digit())
                && p.parse::<u64>().is_ok_and(|p| p >= partitions)
        })
    };
    let (unknown, settle): (Vec<Token>, Vec<Token>) = tokens.into_iter().partition(elsewhere);
    Ok((settle, unknown.into_iter().map(|t| t.0).collect()))
}

/// `POST /v1/groups/{type}/{group}/ack`: acknowledges deliveries.
#[utoipa::path(
    post,
    path = "/v1/groups/{type}/{group}/ack",
    tag = "groups",
    operation_id = "ack",
    summary = "Acknowledge deliveries: their events are handled",
    description = "Tokens of deliveries no longer pending (acknowledged already, parked) are harmless: they are listed in `unknown`. A token that is not one is refused (400) and then nothing is acknowledged.",
    params(GroupPath),
    request_body = AckBody,
    responses(
        (status = 200, description = "Acknowledged", body = Settled),
        (status = 400, description = "A bad delivery token"),
        (status = 404, description = "No such group"),
    ),
)]
pub(crate) async fn ack(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
    body: Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<axum::Json<Settled>, Problem> {
    let body: AckBody = object(body)?;
    let (tokens, elsewhere) = sort_tokens(&state, &aggregate_type, &group, body.deliveries)?;
    // The group's 404 and the ack at once (one round trip less to wait for): an
    // unknown group has nothing to acknowledge, and its 404 comes first.
    let store = state.runtime.store();
    let (known, acked) = futures::future::join(
        known_group(&state, &aggregate_type, &group),
        store.ack(&aggregate_type, &group, &tokens),
    )
    .await;
    known?;
    let s = acked.map_err(streamfold::Error::from)?;
    state
        .metrics
        .settled(&aggregate_type, &group, "ack", s.done);
    Ok(axum::Json(Settled {
        done: s.done,
        unknown: s.unknown.into_iter().chain(elsewhere).collect(),
    }))
}

/// `POST /v1/groups/{type}/{group}/nack`: gives deliveries back with an action.
#[utoipa::path(
    post,
    path = "/v1/groups/{type}/{group}/nack",
    tag = "groups",
    operation_id = "nack",
    summary = "Give deliveries back: retry (now or after a delay), park or skip",
    description = "Tokens as for an ack. A bad token, action or delay is refused (400) and then nothing changes.",
    params(GroupPath),
    request_body = NackBody,
    responses(
        (status = 200, description = "Done", body = Settled),
        (status = 400, description = "A bad delivery token, action, delay or reason"),
        (status = 404, description = "No such group"),
    ),
)]
pub(crate) async fn nack(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
    body: Json<serde_json::Map<String, serde_json::Value>>,
) -> Result<axum::Json<Settled>, Problem> {
    let body: NackBody = object(body)?;
    let (tokens, elsewhere) = sort_tokens(&state, &aggregate_type, &group, body.deliveries)?;
    known_group(&state, &aggregate_type, &group).await?;
    let label = match body.action {
        Action::Retry => "retry",
        Action::Park => "park",
        Action::Skip => "skip",
    };
    let action = match body.action {
        Action::Retry => {
            let delay = body.delay_ms.unwrap_or(0);
            if delay > MAX_ACK_TIMEOUT_MS {
                return Err(Problem::invalid(format!(
                    "delay_ms must be 0 to {MAX_ACK_TIMEOUT_MS}, not {delay}"
                )));
            }
            NackAction::Retry(Duration::from_millis(delay))
        }
        Action::Park => NackAction::Park,
        Action::Skip => NackAction::Skip,
    };
    if let Some(r) = &body.reason {
        let n = r.chars().count();
        if n > MAX_REASON_CHARS {
            return Err(Problem::invalid(format!(
                "the reason is {n} characters long; at most {MAX_REASON_CHARS} are allowed"
            )));
        }
    }
    let s = state
        .runtime
        .store()
        .nack(
            &aggregate_type,
            &group,
            &tokens,
            action,
            body.reason.as_deref(),
        )
        .await
        .map_err(streamfold::Error::from)?;
    state
        .metrics
        .settled(&aggregate_type, &group, label, s.done);
    Ok(axum::Json(Settled {
        done: s.done,
        unknown: s.unknown.into_iter().chain(elsewhere).collect(),
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ParkedQuery {
    /// Go on from here: the `next` of the previous page.
    #[param(value_type = Option<Positions>, inline)]
    after: Option<Positions>,
    /// How many parked events (default and most: 1,000).
    limit: Option<usize>,
}

/// A parked event.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ParkedEvent {
    /// The category partition.
    partition: u32,
    /// Its id in the partition's parked stream.
    parked_id: String,
    /// Its position in the category partition.
    position: String,
    /// Why it was parked: `max_deliveries` (delivered that often unacknowledged),
    /// `nacked` (a worker parked it) or `trimmed` (the category trim removed it
    /// before it was acknowledged).
    reason: String,
    /// The last reason a worker gave when it nacked it.
    last_error: Option<String>,
    /// How often it had been delivered.
    delivery_count: u64,
    /// The event; `null` when it was parked because the trim had removed it.
    event: Option<RecordedEvent>,
}

/// A page of parked events, oldest parked first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ParkedPage {
    /// The events.
    events: Vec<ParkedEvent>,
    /// Pass it as `after` for the next page; `null` after the last.
    next: Option<String>,
}

/// `GET /v1/groups/{type}/{group}/parked?after=&limit=`: a page of parked events.
#[utoipa::path(
    get,
    path = "/v1/groups/{type}/{group}/parked",
    tag = "groups",
    operation_id = "parked",
    summary = "A page of the group's parked events, with why and the last error",
    params(GroupPath, ParkedQuery),
    responses(
        (status = 200, description = "A page of parked events", body = ParkedPage),
        (status = 404, description = "No such group"),
        (status = 409, description = "`after` was made for another partition count"),
    ),
)]
pub(crate) async fn parked(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
    Query(q): Query<ParkedQuery>,
) -> Result<axum::Json<ParkedPage>, Problem> {
    check_name("group", &group)?;
    let limit = super::page_limit(&state, q.limit)?.min(streamfold::MAX_PARKED_PAGE);
    let store = state.runtime.store();
    let after = super::category_after(store, &aggregate_type, q.after, None)?;
    let page = store
        .parked(&aggregate_type, &group, after.as_deref(), limit)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(axum::Json(ParkedPage {
        events: page
            .events
            .into_iter()
            .map(|e| ParkedEvent {
                partition: e.partition,
                parked_id: e.parked_id,
                position: e.position,
                reason: match e.reason {
                    ParkReason::Nacked => "nacked",
                    ParkReason::Trimmed => "trimmed",
                    _ => "max_deliveries",
                }
                .to_owned(),
                last_error: e.last_error,
                delivery_count: e.delivery_count,
                event: e.event,
            })
            .collect(),
        next: page.next,
    }))
}

/// What a replay did.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Replayed {
    /// Parked events put back in front of the group (delivered again before new
    /// ones, with a fresh delivery count).
    replayed: u64,
    /// Parked events left parked: the category trim removed them.
    kept: u64,
}

/// `POST /v1/groups/{type}/{group}/parked/replay`: puts parked events back.
#[utoipa::path(
    post,
    path = "/v1/groups/{type}/{group}/parked/replay",
    tag = "groups",
    operation_id = "replay_parked",
    summary = "Put every parked event back in front of the group",
    description = "An operator's action, so it needs `admin`. Each partition delivers its replayed events (again in order per aggregate) before new ones.",
    params(GroupPath),
    responses(
        (status = 200, description = "Replayed", body = Replayed),
        (status = 404, description = "No such group"),
    ),
)]
pub(crate) async fn replay(
    State(state): State<AppState>,
    Path((aggregate_type, group)): Path<(String, String)>,
) -> Result<axum::Json<Replayed>, Problem> {
    check_name("group", &group)?;
    let r = state
        .runtime
        .store()
        .replay_parked(&aggregate_type, &group)
        .await
        .map_err(streamfold::Error::from)?;
    Ok(axum::Json(Replayed {
        replayed: r.replayed,
        kept: r.kept,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use streamfold::{MAX_GROUP_NAME_CHARS, MAX_MAX_DELIVERIES};

    /// The bounds the schemas state (literals in the attributes) are the store's.
    #[test]
    fn the_documented_bounds_are_the_stores() {
        assert_eq!(MAX_GROUP_NAME_CHARS, 128);
        assert_eq!(MAX_FETCH, 1_000);
        assert_eq!(MAX_SETTLE, 10_000);
        assert_eq!(MAX_REASON_CHARS, 4_096);
        assert_eq!(MAX_ACK_TIMEOUT_MS, 86_400_000);
        assert_eq!(MAX_MAX_DELIVERIES, 1_000);
        assert!(DELIVERY_PATTERN.starts_with('^'));
    }
}
