//! The HTTP side of the Lever simulator: the API routes and the gate (log, failure injection,
//! auth, rate limit) in front of them.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    oauth, permissions, push_unique, webhooks, LoggedRequest, Note, OppRecord, Shared, StageError,
    State as SimState,
};
use crate::http_util;

type Shr = State<Arc<Shared>>;
type Params = Query<Vec<(String, String)>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/opportunities/{id}", get(get_opportunity))
        .route("/v1/opportunities/{id}/addTags", post(add_tags))
        .route("/v1/opportunities/{id}/removeTags", post(remove_tags))
        .route("/v1/opportunities/{id}/addLinks", post(add_links))
        .route("/v1/opportunities/{id}/removeLinks", post(remove_links))
        .route(
            "/v1/opportunities/{id}/notes",
            get(list_notes).post(create_note),
        )
        .route("/v1/opportunities/{id}/stage", put(put_stage))
        .route("/v1/postings", get(list_postings))
        .route("/v1/postings/{id}", get(get_posting))
        .route("/v1/stages", get(list_stages))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        // Added after the layer, so the gate (API auth, log, failure injection) does not apply.
        .merge(oauth::routes())
        .with_state(shared)
}

/// A Lever-shaped error response.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let code = match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "ResourceNotFound",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        500 => "InternalServerError",
        503 => "ServiceUnavailable",
        _ => "Error",
    };
    let body = json!({ "code": code, "message": message.into() });
    let mut resp = (status, Json(body)).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    resp
}

fn opp_not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        format!("Opportunity {id} was not found"),
    )
}

/// Logs the request, then applies injected failures, auth and the rate limit, in that order.
async fn gate(State(shared): Shr, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, http_util::MAX_BODY).await {
        Ok(b) => b,
        Err(_) => return error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large"),
    };
    let index = {
        let mut st = shared.lock();
        st.log.push(LoggedRequest {
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            body: http_util::body_for_log(&bytes),
            status: 0,
        });
        st.log.len() - 1
    };
    tracing::debug!(method = %parts.method, uri = %parts.uri, "lever sim request");
    let early = precheck(
        &shared,
        &parts.headers,
        permissions::required(parts.method.as_str(), parts.uri.path()),
    );
    let resp = match early {
        Some(resp) => resp,
        None => {
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
    };
    let mut st = shared.lock();
    if let Some(entry) = st.log.get_mut(index) {
        entry.status = resp.status().as_u16();
    }
    match resp.status() {
        StatusCode::UNAUTHORIZED => st.unauthorized += 1,
        StatusCode::FORBIDDEN => st.forbidden += 1,
        _ => {}
    }
    drop(st);
    resp
}

/// Injected failures, then authentication (401), then the credential's permission for this route
/// (403), then the rate limit (429).
fn precheck(shared: &Shared, headers: &HeaderMap, needs: Option<&str>) -> Option<Response> {
    let mut st = shared.lock();
    if st.fail_next.0 > 0 {
        st.fail_next.0 -= 1;
        let status =
            StatusCode::from_u16(st.fail_next.1).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Some(error(status, "Injected failure"));
    }
    let Some(granted) = credential_permissions(shared, &st, headers) else {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "Invalid credentials: use HTTP Basic auth with the API key as username and an empty \
             password, or a valid (unexpired, unrevoked) OAuth access token as Bearer",
        ));
    };
    if let Some(needs) = needs.filter(|n| !granted.iter().any(|g| g == n)) {
        return Some(error(
            StatusCode::FORBIDDEN,
            permissions::forbidden_message(needs),
        ));
    }
    if let Some(bucket) = st.rate.as_mut() {
        if !bucket.take() {
            return Some(error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded"));
        }
    }
    None
}

/// The permissions of the credential in `headers`: an API key's (HTTP Basic, empty password), an
/// OAuth access token's scopes, or the fixed token's; `None` when it is no valid credential.
fn credential_permissions(
    shared: &Shared,
    st: &SimState,
    headers: &HeaderMap,
) -> Option<Vec<String>> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        let token = encoded.trim();
        if token == shared.oauth_token {
            return Some(st.oauth_token_permissions.clone());
        }
        return st
            .oauth
            .access_token_scope(token)
            .map(permissions::from_scope);
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    match text.split_once(':') {
        Some((user, "")) => st.api_keys.get(user).cloned(),
        _ => None,
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Resource not found")
}

/// Parses a JSON body into `T`; the error is the message of the 400 to answer.
fn parse<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("Invalid request body: {e}"))
}

fn has_param(params: &[(String, String)], key: &str, value: &str) -> bool {
    params.iter().any(|(k, v)| k == key && v == value)
}

fn param<'a>(params: &'a [(String, String)], key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The opportunity as Lever's API serves it.
fn opportunity_json(st: &SimState, rec: &OppRecord, expand_applications: bool) -> Value {
    let o = &rec.opp;
    let applications: Vec<Value> = match &o.posting_id {
        None => Vec::new(),
        Some(posting) if expand_applications => vec![json!({
            "id": rec.application_id,
            "opportunityId": o.id,
            "candidateId": o.id,
            "createdAt": rec.created_at,
            "type": "posting",
            "posting": posting,
            "postingOwner": null,
            "postingHiringManager": null,
            "name": o.name,
            "email": o.emails.first(),
        })],
        Some(_) => vec![json!(rec.application_id)],
    };
    let stage_changes: Vec<Value> = rec
        .stage_changes
        .iter()
        .map(|(stage, at)| {
            let index = st.stages.iter().position(|s| &s.id == stage);
            json!({ "toStageId": stage, "toStageIndex": index, "updatedAt": at, "userId": null })
        })
        .collect();
    json!({
        "id": o.id,
        "name": o.name,
        "contact": rec.contact_id,
        "headline": "",
        "stage": o.stage,
        "confidentiality": "non-confidential",
        "location": "",
        "phones": o.phones.iter().map(|p| json!({"type": "mobile", "value": p})).collect::<Vec<_>>(),
        "emails": o.emails,
        "links": o.links,
        "archived": null,
        "archivedAt": null,
        "tags": o.tags,
        "sources": [],
        "stageChanges": stage_changes,
        "origin": "applied",
        "sourcedBy": null,
        "owner": null,
        "followers": [],
        "applications": applications,
        "createdAt": rec.created_at,
        "updatedAt": rec.updated_at,
        "lastInteractionAt": rec.updated_at,
        "lastAdvancedAt": rec.stage_changes.last().map(|(_, at)| *at),
        "snoozedUntil": null,
        "isAnonymized": false,
        "dataProtection": null,
    })
}

fn data(status: StatusCode, value: Value) -> Response {
    (status, Json(json!({ "data": value }))).into_response()
}

async fn get_opportunity(State(shared): Shr, Path(id): Path<String>, Query(q): Params) -> Response {
    let st = shared.lock();
    match st.opps.get(&id) {
        Some(rec) => data(
            StatusCode::OK,
            opportunity_json(&st, rec, has_param(&q, "expand", "applications")),
        ),
        None => opp_not_found(&id),
    }
}

#[derive(Deserialize)]
struct TagsBody {
    tags: Vec<String>,
}

#[derive(Deserialize)]
struct LinksBody {
    links: Vec<String>,
}

/// Applies `change` to the opportunity and answers with the updated opportunity.
fn update_opportunity(shared: &Shared, id: &str, change: impl FnOnce(&mut OppRecord)) -> Response {
    let mut st = shared.lock();
    let Some(rec) = st.opps.get_mut(id) else {
        return opp_not_found(id);
    };
    change(rec);
    rec.updated_at = http_util::now_ms();
    let rec = rec.clone();
    data(StatusCode::OK, opportunity_json(&st, &rec, false))
}

async fn add_tags(State(shared): Shr, Path(id): Path<String>, body: Bytes) -> Response {
    let TagsBody { tags } = match parse(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    update_opportunity(&shared, &id, |rec| {
        for t in tags {
            push_unique(&mut rec.opp.tags, t);
        }
    })
}

async fn remove_tags(State(shared): Shr, Path(id): Path<String>, body: Bytes) -> Response {
    let TagsBody { tags } = match parse(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    update_opportunity(&shared, &id, |rec| {
        rec.opp.tags.retain(|t| !tags.contains(t))
    })
}

async fn add_links(State(shared): Shr, Path(id): Path<String>, body: Bytes) -> Response {
    let LinksBody { links } = match parse(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    update_opportunity(&shared, &id, |rec| {
        for l in links {
            push_unique(&mut rec.opp.links, l);
        }
    })
}

async fn remove_links(State(shared): Shr, Path(id): Path<String>, body: Bytes) -> Response {
    let LinksBody { links } = match parse(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    update_opportunity(&shared, &id, |rec| {
        rec.opp.links.retain(|l| !links.contains(l))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NoteBody {
    value: String,
    #[serde(default)]
    secret: bool,
    #[serde(default)]
    score: Option<i64>,
    #[serde(default)]
    #[allow(dead_code)]
    notify_followers: Option<bool>,
}

async fn create_note(State(shared): Shr, Path(id): Path<String>, body: Bytes) -> Response {
    let note: NoteBody = match parse(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    if note.value.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "value must not be empty");
    }
    let score = match note.score {
        None => None,
        Some(s @ 1..=4) => u8::try_from(s).ok(),
        Some(_) => return error(StatusCode::BAD_REQUEST, "score must be between 1 and 4"),
    };
    let mut st = shared.lock();
    let Some(rec) = st.opps.get_mut(&id) else {
        return opp_not_found(&id);
    };
    let note_id = http_util::new_id();
    rec.opp.notes.push(Note {
        id: note_id.clone(),
        value: note.value,
        secret: note.secret,
        score,
        created_at: http_util::now_ms(),
    });
    rec.updated_at = http_util::now_ms();
    if st.lose_note_answers > 0 {
        st.lose_note_answers -= 1;
        return error(StatusCode::GATEWAY_TIMEOUT, "Injected lost answer");
    }
    data(StatusCode::CREATED, json!({ "noteId": note_id }))
}

async fn list_notes(State(shared): Shr, Path(id): Path<String>) -> Response {
    let st = shared.lock();
    let Some(rec) = st.opps.get(&id) else {
        return opp_not_found(&id);
    };
    let notes: Vec<Value> = rec
        .opp
        .notes
        .iter()
        .map(|n| {
            json!({
                "id": n.id,
                "value": n.value,
                "secret": n.secret,
                "score": n.score,
                "createdAt": n.created_at,
            })
        })
        .collect();
    Json(json!({ "data": notes, "hasNext": false })).into_response()
}

#[derive(Deserialize)]
struct StageBody {
    stage: String,
}

async fn put_stage(State(shared): Shr, Path(id): Path<String>, body: Bytes) -> Response {
    let StageBody { stage } = match parse(&body) {
        Ok(b) => b,
        Err(msg) => return error(StatusCode::BAD_REQUEST, msg),
    };
    let (from, opp) = {
        let mut st = shared.lock();
        let from = match st.set_stage(&id, &stage) {
            Ok(from) => from,
            Err(StageError::UnknownOpportunity) => return opp_not_found(&id),
            Err(StageError::UnknownStage) => {
                return error(StatusCode::BAD_REQUEST, format!("Unknown stage {stage}"))
            }
        };
        let Some(rec) = st.opps.get(&id).cloned() else {
            return opp_not_found(&id);
        };
        (from, opportunity_json(&st, &rec, false))
    };
    let hook_shared = shared.clone();
    tokio::spawn(async move {
        webhooks::fire_stage_change(&hook_shared, &id, &from, &stage).await;
    });
    data(StatusCode::OK, opp)
}

/// A posting as Lever shows it (only `published` ones are simulated).
fn posting_json(p: &super::Posting) -> Value {
    json!({
        "id": p.id,
        "text": p.text,
        "state": "published",
        "distributionChannels": ["public"],
        "confidentiality": "non-confidential",
        "categories": {
            "team": null, "department": null, "location": null,
            "commitment": null, "level": null, "allLocations": [],
        },
        "tags": p.tags,
        "createdAt": p.created_at,
        "updatedAt": p.created_at,
        "user": null,
        "owner": null,
        "hiringManager": null,
        "followers": [],
        "reqCode": null,
        "requisitionCodes": [],
        "workplaceType": "unspecified",
    })
}

async fn get_posting(State(shared): Shr, Path(id): Path<String>) -> Response {
    let st = shared.lock();
    let Some(p) = st.postings.get(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Posting {id} was not found"));
    };
    data(StatusCode::OK, posting_json(p))
}

/// `limit` (1–100, default 100) and `offset` (a previous page's `next`) of a list route, or
/// the 400 message.
fn page_params(q: &[(String, String)]) -> Result<(usize, usize), &'static str> {
    let limit = match param(q, "limit").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n @ 1..=100)) => n,
        Some(_) => return Err("limit must be between 1 and 100"),
    };
    let offset = match param(q, "offset").map(str::parse::<usize>) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return Err("Invalid offset token"),
    };
    Ok((limit, offset))
}

/// One page of `items`, in Lever's list shape (`data`, `hasNext`, `next` while there is more).
fn list_page(items: Vec<Value>, limit: usize, offset: usize) -> Response {
    let total = items.len();
    let page: Vec<Value> = items.into_iter().skip(offset).take(limit).collect();
    let end = offset.saturating_add(limit);
    let mut body = json!({ "data": page, "hasNext": end < total });
    if end < total {
        body["next"] = json!(end.to_string());
    }
    Json(body).into_response()
}

/// The states `GET /postings?state=` accepts.
const POSTING_STATES: [&str; 6] = [
    "published",
    "internal",
    "closed",
    "draft",
    "pending",
    "rejected",
];

/// `GET /postings[?state&limit&offset]`: oldest first; every simulated posting is `published`.
async fn list_postings(State(shared): Shr, Query(q): Params) -> Response {
    let (limit, offset) = match page_params(&q) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let mut states = Vec::new();
    for (k, v) in q.iter().filter(|(k, _)| k == "state") {
        if !POSTING_STATES.contains(&v.as_str()) {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "Invalid {k} \"{v}\": must be one of {}",
                    POSTING_STATES.join(", ")
                ),
            );
        }
        states.push(v.as_str());
    }
    let st = shared.lock();
    let mut postings: Vec<&super::Posting> = st
        .postings
        .values()
        .filter(|_| states.is_empty() || states.contains(&"published"))
        .collect();
    postings.sort_by_key(|p| p.seq);
    list_page(
        postings.into_iter().map(posting_json).collect(),
        limit,
        offset,
    )
}

async fn list_stages(State(shared): Shr, Query(q): Params) -> Response {
    let (limit, offset) = match page_params(&q) {
        Ok(p) => p,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let st = shared.lock();
    let stages = st
        .stages
        .iter()
        .map(|s| json!({ "id": s.id, "text": s.text }))
        .collect();
    list_page(stages, limit, offset)
}
