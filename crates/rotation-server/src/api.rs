//! The routes: `/v1` JSON API, `/healthz`, `/readyz`, `/metrics`,
//! `/openapi.json`.

use std::future::Future;
use std::time::{Duration, Instant};

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rotation_core::engine::{
    IssueRequest, KeyringRotateRequest, MigrateOptions, NewAuthority, RevokeOptions, RotateRequest,
};
use rotation_core::ids::{AgentId, AuthorityId, KeyId, KeyringName, RotationId, Target, ValueId};
use rotation_core::policy::{Policy, PolicySpec, Procedure, Trigger, invalid_field, parse_duration};
use rotation_core::ports::RecordQuery;
use rotation_core::{Engine, Error, Reason};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_http::LatencyUnit;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::AppState;
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::metrics;
use crate::secrets;
use crate::views::{AuthorityView, KeyView, KeyringView, RecordView, ValueView, VersionView};

/// Longest `Cache-Control: max-age` of a JWKS, in seconds.
const JWKS_MAX_AGE: i64 = 300;
/// Largest `prepublish_hours` of an authority (the engine's bound, one year).
const MAX_PREPUBLISH_HOURS: u32 = rotation_core::engine::MAX_GRACE_PERIOD_HOURS;
/// Most audit events one request returns.
const AUDIT_LIMIT: usize = 1000;

/// The application's routes with their middleware.
pub(crate) fn router(state: AppState, body_limit: usize, timeout: Duration) -> Router {
    let v1 = Router::new()
        .route("/authorities", get(list_authorities).post(create_authority))
        .route("/authorities/{id}", get(show_authority))
        .route("/authorities/{id}/rotate", post(rotate_authority))
        .route("/authorities/{id}/schedule", post(schedule_authority))
        .route("/authorities/{id}/status", get(authority_status))
        .route("/authorities/{id}/keys/{key_id}/revoke", post(revoke_key))
        .route("/authorities/{id}/jwks.json", get(jwks))
        .route("/chains", get(list_chains).post(issue_chain))
        .route("/chains/verify", get(verify_all_chains))
        .route("/chains/{agent}/verify", get(verify_chain))
        .route("/keyrings", get(list_keyrings).post(create_keyring))
        .route("/keyrings/{name}", get(keyring_info))
        .route("/keyrings/{name}/rotate", post(rotate_keyring))
        .route("/keyrings/{name}/migrate", post(migrate_keyring))
        .route("/keyrings/{name}/report", get(keyring_report))
        .route("/keyrings/{name}/values", post(encrypt_value))
        .route("/keyrings/{name}/values/{id}/decrypt", post(decrypt_value))
        .route("/policies", get(list_policies))
        .route(
            "/policies/{name}",
            get(show_policy).put(set_policy).delete(remove_policy),
        )
        .route("/schedules", get(list_schedules).post(add_schedule))
        .route("/schedules/run-due", post(run_due))
        .route("/schedules/plan", get(schedule_plan))
        .route("/schedules/{id}/resume", post(resume_schedule))
        .route("/secrets", get(secrets::list_secrets))
        .route(
            "/secrets/{*path}",
            get(secrets::get_dispatch)
                .put(secrets::put_secret)
                .post(secrets::post_dispatch),
        )
        .route("/stats", get(secrets::stats))
        .route("/stats/reset", post(secrets::reset_stats))
        .route("/outbox", get(secrets::outbox))
        .route("/audit", get(audit_list))
        .route("/audit/verify", get(audit_verify))
        .route("/audit/checkpoint", get(audit_checkpoint))
        .route("/audit/proof", get(audit_proof))
        .route("/audit/consistency", get(audit_consistency))
        .route("/report", get(report))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token));
    Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(crate::openapi::serve))
        .fallback(not_found)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, timeout))
        .layer(axum::middleware::map_response(move |response: Response| async move {
            json_error_response(response, body_limit, timeout)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http().make_span_with(request_span).on_response(
                DefaultOnResponse::new()
                    .level(Level::INFO)
                    .latency_unit(LatencyUnit::Millis),
            ),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
}

/// The span of a request: its id (`x-request-id`, set or propagated by
/// `SetRequestIdLayer`), method and path; never headers, query or body.
fn request_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// The errors the middleware answers itself (413 from the body limit, 408
/// from the timeout; 405 from the router), which carry plain text or
/// nothing, as the JSON errors every handler answers.
fn json_error_response(response: Response, body_limit: usize, timeout: Duration) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            Error::invalid_input(format!("the request body is larger than {body_limit} bytes"))
        }
        StatusCode::REQUEST_TIMEOUT => Error::backend(format!(
            "the request took longer than {} s (work it started goes on in the background)",
            timeout.as_secs_f64()
        )),
        StatusCode::METHOD_NOT_ALLOWED => Error::invalid_input("the route does not take this method"),
        StatusCode::UNAUTHORIZED => Error::new(Reason::Unauthorized, "authentication required"),
        StatusCode::FORBIDDEN => Error::new(Reason::Forbidden, "forbidden"),
        StatusCode::NOT_FOUND => Error::not_found("not found"),
        StatusCode::SERVICE_UNAVAILABLE => Error::backend("service unavailable"),
        s if s.is_client_error() => Error::invalid_input(s.canonical_reason().unwrap_or("invalid request")),
        s => Error::new(Reason::RotationFailed, s.canonical_reason().unwrap_or("internal error")),
    };
    let (mut parts, _) = response.into_parts();
    let json = ApiError::with_status(error, status).into_response();
    // Keep the original headers (e.g. `allow` of a 405), but not its body's.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    let (json_parts, body) = json.into_parts();
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, body)
}

// ---------------------------------------------------------------- extractors

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_credentials)
            .unwrap_or("");
        let caller = state.tokens.authenticate(presented).await?;
        state.limits.check_token(&caller.token_id)?;
        Ok(caller)
    }
}

/// The credentials of an `Authorization: Bearer ...` header; the scheme
/// is case-insensitive (RFC 9110, section 11.1).
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, credentials) = value.trim_start().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim())
}

/// Path parameters; a rejection (e.g. invalid UTF-8) is a JSON error with
/// reason `invalid_input` (422, as every invalid input).
pub(crate) struct Path<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Path(value))
            .map_err(|e| {
                let error = Error::invalid_input(e.body_text());
                if e.status().is_server_error() {
                    // A route without the parameters its handler reads: our fault.
                    ApiError::with_status(error, e.status())
                } else {
                    error.into()
                }
            })
    }
}

/// A query string; a rejection (e.g. a number out of range) is a JSON
/// error with reason `invalid_input` (422, as every invalid input).
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|e| Error::invalid_input(e.body_text()).into())
    }
}

/// A JSON body; an empty body reads as `{}` (so bodies whose fields are
/// all optional may be left out). Oversized bodies are 413, malformed 422.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                let status = e.status();
                let error = Error::invalid_input(format!("cannot read the request body: {}", e.body_text()));
                ApiError::with_status(error, status)
            })?;
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        // The error names the field and what was expected, never the input.
        crate::error::from_json(bytes).map(JsonBody).map_err(ApiError::from)
    }
}

/// Runs engine work in its own task: a dropped request (client gone,
/// timeout) does not cancel it halfway.
pub(crate) async fn detached<T, F>(state: &AppState, work: F) -> ApiResult<T>
where
    T: Send + 'static,
    F: Future<Output = rotation_core::Result<T>> + Send + 'static,
{
    state
        .background
        .spawn(work)
        .await
        .map_err(|e| Error::new(Reason::RotationFailed, format!("the operation's task failed: {e}")))?
        .map_err(ApiError::from)
}

pub(crate) fn engine(state: &AppState, caller: &Caller) -> Engine {
    state.engine(caller.actor())
}

pub(crate) fn created<T: Serialize>(value: T) -> Response {
    (StatusCode::CREATED, Json(value)).into_response()
}

async fn not_found() -> ApiError {
    Error::not_found("no such route").into()
}

// ---------------------------------------------------------------- operations

#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "The process is up", body = crate::openapi::JsonObject)))]
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the store and the custody.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200, description = "Store reachable and initialised, custody usable (a probe data key wraps and unwraps)", body = crate::openapi::JsonObject), (status = 503, description = "Not ready (reason backend_unavailable)", body = crate::openapi::ErrorBody)))]
async fn readyz(State(state): State<AppState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, ready(&state)).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => {
            // Whatever failed, the answer is "not ready": 503 backend_unavailable.
            let e = Error::backend(format!("not ready: {}", e.message));
            ApiError::with_status(e, StatusCode::SERVICE_UNAVAILABLE).into_response()
        }
        Err(_) => ApiError::with_status(
            Error::backend(format!(
                "not ready: the store or the custody did not answer within {} s",
                READY_TIMEOUT.as_secs()
            )),
            StatusCode::SERVICE_UNAVAILABLE,
        )
        .into_response(),
    }
}

/// The readiness checks: the store answers and is initialised (on every
/// call: one indexed read); the custody wraps and unwraps a probe data key
/// (for the local custody this exercises the unlocked KEK; for Vault
/// transit, one encrypt and one decrypt call), at most once per
/// [`crate::cache::TTL`], since anyone may call `/readyz`.
async fn ready(state: &AppState) -> rotation_core::Result<()> {
    if state.store.get_meta(rotation_app::KEK_META).await?.is_none() {
        return Err(Error::backend("the store is not initialised"));
    }
    let failed = state
        .cached
        .custody
        .get_or_compute(0, state.clock.now(), async {
            Ok(probe_custody(state).await.err().map(|e| e.message))
        })
        .await?;
    match failed {
        None => Ok(()),
        Some(message) => Err(Error::backend(message)),
    }
}

/// Wraps and unwraps a probe data key with the custody.
async fn probe_custody(state: &AppState) -> rotation_core::Result<()> {
    let keyring = KeyringName::parse("readyz-probe")?;
    let probe = rotation_core::ports::DataKey::from_bytes([0x5A; 32]);
    let wrapped = state.custody.wrap_data_key(&keyring, 1, &probe).await?;
    let unwrapped = state.custody.unwrap_data_key(&keyring, 1, &wrapped).await?;
    if unwrapped.expose() != probe.expose() {
        return Err(Error::backend("the custody unwrapped the probe data key wrongly"));
    }
    Ok(())
}

#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
async fn metrics_text(State(state): State<AppState>) -> Response {
    metrics::refresh_gauges(&state.engine("metrics".into()), &state.gauges).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        metrics::render(),
    )
        .into_response()
}

// ---------------------------------------------------------------- authorities

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateAuthority {
    id: String,
    name: Option<String>,
    rotation_period_days: Option<u32>,
    grace_period_hours: Option<u32>,
    /// Hours before each rotation that the next key is generated and listed
    /// in the JWKS (0 to 8760; 0 or absent: not prepublished).
    prepublish_hours: Option<u32>,
}

#[utoipa::path(post, path = "/v1/authorities", tag = "authorities", request_body(content = CreateAuthority, content_type = "application/json"), responses((status = 201, description = "Created", body = AuthorityView)))]
async fn create_authority(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateAuthority>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let engine = engine(&state, &caller);
    let id = AuthorityId::parse(body.id)?;
    if let Some(hours) = body.prepublish_hours
        && hours > MAX_PREPUBLISH_HOURS
    {
        return Err(Error::invalid_input(format!(
            "prepublish_hours must be 0 to {MAX_PREPUBLISH_HOURS}, got {hours}"
        ))
        .into());
    }
    let prepublish = body.prepublish_hours.filter(|h| *h > 0);
    let new = NewAuthority {
        id: id.clone(),
        name: body.name,
        rotation_period_days: body.rotation_period_days,
        grace_period_hours: body.grace_period_hours,
    };
    let e = engine.clone();
    let created_id = id.clone();
    detached(&state, async move {
        e.create_authority(new).await?;
        if let Some(hours) = prepublish {
            e.set_prepublish_hours(&created_id, hours).await?;
        }
        Ok(())
    })
    .await?;
    Ok(created(authority_view(&engine, &id).await?))
}

async fn authority_view(engine: &Engine, id: &AuthorityId) -> ApiResult<AuthorityView> {
    let authority = engine.authority(id).await?;
    let now = engine.now();
    let keys = engine.keys(id).await?.iter().map(|k| KeyView::new(k, now)).collect();
    Ok(AuthorityView { authority, keys })
}

#[utoipa::path(get, path = "/v1/authorities", tag = "authorities", responses((status = 200, description = "Authorities", body = Vec<crate::openapi::JsonObject>)))]
async fn list_authorities(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).list_authorities().await?).into_response())
}

#[utoipa::path(get, path = "/v1/authorities/{id}", tag = "authorities", params(("id" = String, Path)), responses((status = 200, description = "The authority and its keys", body = AuthorityView)))]
async fn show_authority(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<AuthorityView>> {
    caller.require(Role::Viewer)?;
    let id = AuthorityId::parse(id)?;
    Ok(Json(authority_view(&engine(&state, &caller), &id).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    grace_period_hours: Option<u32>,
    /// Idempotency token: a retried request with the same id reports the same run.
    rotation_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/authorities/{id}/rotate", tag = "authorities", params(("id" = String, Path)), request_body(content = RotateBody, content_type = "application/json"), responses((status = 200, description = "The rotation result", body = crate::openapi::JsonObject)))]
async fn rotate_authority(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RotateBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let engine = engine(&state, &caller);
    let mut request = RotateRequest::new(AuthorityId::parse(id)?);
    request.grace_period_hours = body.grace_period_hours;
    request.rotation_id = body
        .rotation_id
        .map(|r| {
            r.parse::<RotationId>()
                .map_err(|_| Error::invalid_input(format!("rotation_id {r:?} is not a UUID")))
        })
        .transpose()?;
    let started = Instant::now();
    let result = detached(&state, async move { engine.rotate_key(request).await }).await;
    metrics::record_rotation("authority", &result, started.elapsed());
    Ok(Json(result?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleBody {
    at: String,
}

#[utoipa::path(post, path = "/v1/authorities/{id}/schedule", tag = "authorities", params(("id" = String, Path)), request_body(content = ScheduleBody, content_type = "application/json"), responses((status = 201, description = "Scheduled", body = crate::openapi::JsonObject)))]
async fn schedule_authority(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ScheduleBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let authority = AuthorityId::parse(id)?;
    let at = chrono::DateTime::parse_from_rfc3339(&body.at)
        .map_err(|e| Error::invalid_input(format!("at {:?} is not an RFC 3339 time: {e}", body.at)))?
        .with_timezone(&chrono::Utc);
    let rotation_id = engine(&state, &caller).schedule_rotation(&authority, at).await?;
    Ok(created(json!({
        "rotation_id": rotation_id.to_string(),
        "authority_id": authority.to_string(),
        "due_at": rotation_core::time::rfc3339(rotation_core::time::truncate(at)),
    })))
}

#[utoipa::path(get, path = "/v1/authorities/{id}/status", tag = "authorities", params(("id" = String, Path)), responses((status = 200, description = "Rotation status", body = crate::openapi::JsonObject)))]
async fn authority_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let status = engine(&state, &caller)
        .get_rotation_status(&AuthorityId::parse(id)?)
        .await?;
    Ok(Json(status).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    force: bool,
    reason: Option<String>,
}

#[utoipa::path(post, path = "/v1/authorities/{id}/keys/{key_id}/revoke", tag = "authorities", params(("id" = String, Path), ("key_id" = String, Path)), request_body(content = RevokeBody, content_type = "application/json"), responses((status = 200, description = "The revoked key", body = KeyView)))]
async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, key_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RevokeBody>,
) -> ApiResult<Json<KeyView>> {
    caller.require(if body.force { Role::Admin } else { Role::Operator })?;
    let engine = engine(&state, &caller);
    let key = engine
        .revoke_old_key(
            &AuthorityId::parse(id)?,
            &KeyId::parse(key_id)?,
            RevokeOptions {
                force: body.force,
                reason: body.reason,
            },
        )
        .await?;
    Ok(Json(KeyView::new(&key, engine.now())))
}

#[utoipa::path(get, path = "/v1/authorities/{id}/jwks.json", tag = "authorities", params(("id" = String, Path)), responses((status = 200, description = "Active, grace and prepublished public keys", body = crate::openapi::JsonObject)))]
/// The public keys, without authentication. `max-age` never outlasts the
/// soonest grace period end, so a cache drops a key no later than
/// verification stops accepting it.
async fn jwks(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let engine = state.engine("jwks".into());
    let id = AuthorityId::parse(id)?;
    let jwks = engine.jwks(&id).await?;
    let now = engine.now();
    let soonest_grace_end = engine
        .keys(&id)
        .await?
        .iter()
        .filter_map(|k| k.grace_until)
        .filter(|until| *until > now)
        .min();
    let max_age = soonest_grace_end
        .map(|until| (until - now).num_seconds().clamp(0, JWKS_MAX_AGE))
        .unwrap_or(JWKS_MAX_AGE);
    let cache = HeaderValue::from_str(&format!("public, max-age={max_age}"))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"));
    Ok(([(header::CACHE_CONTROL, cache)], Json(jwks)).into_response())
}

// ---------------------------------------------------------------- chains

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct IssueBody {
    agent_id: String,
    authority_id: String,
    #[serde(default)]
    capabilities: Vec<String>,
    delegate_to: Option<String>,
}

#[utoipa::path(post, path = "/v1/chains", tag = "chains", request_body(content = IssueBody, content_type = "application/json"), responses((status = 201, description = "Issued records", body = Vec<RecordView>)))]
async fn issue_chain(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<IssueBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let request = IssueRequest {
        agent_id: AgentId::parse(body.agent_id)?,
        authority_id: AuthorityId::parse(body.authority_id)?,
        capabilities: body.capabilities,
        delegate_to: body.delegate_to.map(AgentId::parse).transpose()?,
    };
    let engine = engine(&state, &caller);
    let records = detached(&state, async move { engine.issue_chain(request).await }).await?;
    Ok(created(records.iter().map(RecordView::from).collect::<Vec<_>>()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ChainQuery {
    /// Only records this authority signed.
    authority: Option<String>,
    /// Only this agent's records.
    agent: Option<String>,
    /// Most records (1 to 1000, default 1000).
    limit: Option<usize>,
    /// Continue after this record: `AGENT_ID/RECORD_ID`, the `X-Next-After` of the previous page.
    after: Option<String>,
}

/// Most trust records one request returns.
const CHAIN_PAGE_LIMIT: usize = 1000;
/// The header carrying the cursor of the next page of `/v1/chains`.
const NEXT_AFTER: &str = "x-next-after";

/// `AGENT_ID/RECORD_ID` (a `/` never appears in an agent id).
fn chain_cursor(after: &str) -> ApiResult<(AgentId, uuid::Uuid)> {
    let invalid = || Error::invalid_input("after must be AGENT_ID/RECORD_ID, as the X-Next-After header gives it");
    let (agent, id) = after.rsplit_once('/').ok_or_else(invalid)?;
    Ok((
        AgentId::parse(agent).map_err(|_| invalid())?,
        id.parse().map_err(|_| invalid())?,
    ))
}

#[utoipa::path(get, path = "/v1/chains", tag = "chains", params(ChainQuery), responses((status = 200,
    description = "Trust records ordered by agent and id. When the page is full, the `X-Next-After` header holds the \
        `after` of the next page; without it this is the last page.",
    body = Vec<RecordView>,
    headers(("X-Next-After" = String, description = "Cursor of the next page (absent on the last page)")))))]
async fn list_chains(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ChainQuery>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let engine = engine(&state, &caller);
    let limit = q.limit.unwrap_or(CHAIN_PAGE_LIMIT);
    if limit == 0 || limit > CHAIN_PAGE_LIMIT {
        return Err(Error::invalid_input(format!("limit must be 1 to {CHAIN_PAGE_LIMIT}")).into());
    }
    let query = RecordQuery {
        agent: q.agent.map(AgentId::parse).transpose()?,
        authority: q.authority.map(AuthorityId::parse).transpose()?,
        after: q.after.as_deref().map(chain_cursor).transpose()?,
        limit,
        ..RecordQuery::default()
    };
    if let Some(a) = &query.authority {
        engine.authority(a).await?;
    }
    let records = engine.list_records(&query).await?;
    let next = (records.len() == limit)
        .then(|| records.last().map(|r| format!("{}/{}", r.agent_id, r.id)))
        .flatten();
    let mut response = Json(records.iter().map(RecordView::from).collect::<Vec<_>>()).into_response();
    if let Some(cursor) = next.and_then(|c| HeaderValue::from_str(&c).ok()) {
        response.headers_mut().insert(NEXT_AFTER, cursor);
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/chains/{agent}/verify", tag = "chains", params(("agent" = String, Path)), responses((status = 200, description = "The agent chain verdict", body = crate::openapi::JsonObject)))]
async fn verify_chain(State(state): State<AppState>, caller: Caller, Path(agent): Path<String>) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let verdict = engine(&state, &caller)
        .verify_agent_chain(&AgentId::parse(agent)?)
        .await?;
    Ok(Json(verdict).into_response())
}

#[utoipa::path(get, path = "/v1/chains/verify", tag = "chains", responses((status = 200, description = "Verdicts for every chain", body = crate::openapi::JsonObject)))]
async fn verify_all_chains(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let engine = engine(&state, &caller);
    let head = audit_head(&engine).await?;
    let verdict = state
        .cached
        .chains
        .get_or_compute(head, engine.now(), async {
            let verdicts = engine.verify_all_chains().await?;
            let invalid = verdicts.iter().filter(|v| !v.valid).count();
            Ok(json!({"valid": invalid == 0, "invalid": invalid, "chains": verdicts}))
        })
        .await?;
    Ok(Json(verdict).into_response())
}

/// The newest audit sequence number (0 for an empty log): it changes with
/// every committed change, so it keys cached verdicts ([`crate::cache`]).
async fn audit_head(engine: &Engine) -> rotation_core::Result<i64> {
    Ok(engine.audit_events(1).await?.first().map_or(0, |e| e.seq))
}

// ---------------------------------------------------------------- keyrings and values

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateKeyring {
    name: String,
}

#[utoipa::path(post, path = "/v1/keyrings", tag = "keyrings", request_body(content = CreateKeyring, content_type = "application/json"), responses((status = 201, description = "Created", body = KeyringView)))]
async fn create_keyring(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateKeyring>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let engine = engine(&state, &caller);
    let name = user_keyring(body.name)?;
    let (e, n) = (engine.clone(), name.clone());
    detached(&state, async move { e.create_keyring(&n).await }).await?;
    Ok(created(keyring_view(&engine, &name).await?))
}

/// A keyring named in a request: a valid name, and not one of the
/// reserved `rotation.*` keyrings only the secret backend touches
/// (`invalid_input`).
fn user_keyring(name: String) -> ApiResult<KeyringName> {
    let name = KeyringName::parse(name)?;
    rotation_core::keyring::check_user_keyring(&name)?;
    Ok(name)
}

async fn keyring_view(engine: &Engine, name: &KeyringName) -> ApiResult<KeyringView> {
    let keyring = engine.keyring(name).await?;
    let versions = engine.key_versions(name).await?.iter().map(VersionView::from).collect();
    Ok(KeyringView {
        keyring: keyring.name.to_string(),
        current_version: keyring.current_version,
        created_at: keyring.created_at,
        rotated_at: keyring.rotated_at,
        versions,
    })
}

#[utoipa::path(get, path = "/v1/keyrings", tag = "keyrings", responses((status = 200, description = "Keyrings", body = Vec<crate::openapi::JsonObject>)))]
async fn list_keyrings(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).list_keyrings().await?).into_response())
}

#[utoipa::path(get, path = "/v1/keyrings/{name}", tag = "keyrings", params(("name" = String, Path)), responses((status = 200, description = "The keyring and its versions", body = KeyringView)))]
async fn keyring_info(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<KeyringView>> {
    caller.require(Role::Viewer)?;
    let name = user_keyring(name)?;
    Ok(Json(keyring_view(&engine(&state, &caller), &name).await?))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateKeyringBody {
    #[serde(default)]
    dry_run: bool,
    new_version: Option<u32>,
}

#[utoipa::path(post, path = "/v1/keyrings/{name}/rotate", tag = "keyrings", params(("name" = String, Path)), request_body(content = RotateKeyringBody, content_type = "application/json"), responses((status = 200, description = "The rotation result", body = crate::openapi::JsonObject)))]
async fn rotate_keyring(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<RotateKeyringBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let name = user_keyring(name)?;
    let request = KeyringRotateRequest {
        dry_run: body.dry_run,
        new_version: body.new_version,
        ..KeyringRotateRequest::default()
    };
    let engine = engine(&state, &caller);
    let started = Instant::now();
    let result = detached(&state, async move { engine.rotate_keyring_with(&name, request).await }).await;
    if !body.dry_run {
        metrics::record_rotation("keyring", &result, started.elapsed());
    }
    Ok(Json(result?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MigrateBody {
    target_version: Option<u32>,
    batch_size: Option<usize>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    retire_old: bool,
}

#[utoipa::path(post, path = "/v1/keyrings/{name}/migrate", tag = "keyrings", params(("name" = String, Path)), request_body(content = MigrateBody, content_type = "application/json"), responses((status = 200, description = "The migration report", body = crate::openapi::JsonObject)))]
async fn migrate_keyring(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<MigrateBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let name = user_keyring(name)?;
    let options = MigrateOptions {
        target_version: body.target_version,
        batch_size: body.batch_size.unwrap_or(MigrateOptions::default().batch_size),
        dry_run: body.dry_run,
        force: body.force,
        retire_old: body.retire_old,
    };
    let engine = engine(&state, &caller);
    let report = detached(
        &state,
        async move { engine.migrate_keyring(&name, &options, &|_| {}).await },
    )
    .await?;
    Ok(Json(report).into_response())
}

#[utoipa::path(get, path = "/v1/keyrings/{name}/report", tag = "keyrings", params(("name" = String, Path)), responses((status = 200, description = "Values per key version", body = crate::openapi::JsonObject)))]
async fn keyring_report(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let report = engine(&state, &caller).keyring_report(&user_keyring(name)?).await?;
    Ok(Json(report).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EncryptBody {
    id: String,
    /// UTF-8 plaintext; or `value_base64` for bytes.
    value: Option<String>,
    value_base64: Option<String>,
}

#[utoipa::path(post, path = "/v1/keyrings/{name}/values", tag = "keyrings", params(("name" = String, Path)), request_body(content = EncryptBody, content_type = "application/json"), responses((status = 201, description = "The sealed value", body = ValueView)))]
async fn encrypt_value(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<EncryptBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let name = user_keyring(name)?;
    let id = ValueId::parse(body.id)?;
    let plaintext = zeroize::Zeroizing::new(match (body.value, body.value_base64) {
        (Some(v), None) => v.into_bytes(),
        (None, Some(b)) => STANDARD
            .decode(b.as_bytes())
            .map_err(|_| Error::invalid_input("value_base64 is not standard base64"))?,
        _ => return Err(Error::invalid_input("give exactly one of value and value_base64").into()),
    });
    let stored = engine(&state, &caller).encrypt_value(&name, &id, &plaintext).await?;
    Ok(created(ValueView::from(&stored)))
}

/// A decrypted value. `Debug` shows no plaintext.
#[derive(Serialize, utoipa::ToSchema)]
struct Plaintext {
    id: String,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_text")]
    #[schema(value_type = Option<String>)]
    value: Option<zeroize::Zeroizing<String>>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "secret_text")]
    #[schema(value_type = Option<String>)]
    value_base64: Option<zeroize::Zeroizing<String>>,
}

fn secret_text<S: serde::Serializer>(text: &Option<zeroize::Zeroizing<String>>, s: S) -> Result<S::Ok, S::Error> {
    match text {
        Some(t) => s.serialize_str(t.as_str()),
        None => s.serialize_none(),
    }
}

#[utoipa::path(post, path = "/v1/keyrings/{name}/values/{id}/decrypt", tag = "keyrings", params(("name" = String, Path), ("id" = String, Path)), responses((status = 200, description = "The plaintext", body = Plaintext)))]
async fn decrypt_value(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let name = user_keyring(name)?;
    let id = ValueId::parse(id)?;
    let plaintext = engine(&state, &caller).decrypt_value(&name, &id).await?;
    let (value, value_base64) = match std::str::from_utf8(&plaintext) {
        Ok(text) => (Some(zeroize::Zeroizing::new(text.to_owned())), None),
        Err(_) => (
            None,
            Some(zeroize::Zeroizing::new(STANDARD.encode(plaintext.as_slice()))),
        ),
    };
    let mut response = Json(Plaintext {
        id: id.to_string(),
        value,
        value_base64,
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

// ---------------------------------------------------------------- policies and schedules

#[utoipa::path(get, path = "/v1/policies", tag = "policies", responses((status = 200, description = "Policies (for non-admins, webhook and http: verification URLs show only their scheme and host)", body = Vec<crate::openapi::JsonObject>)))]
async fn list_policies(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let mut policies = engine(&state, &caller).list_policies().await?;
    if caller.require(Role::Admin).is_err() {
        policies.iter_mut().for_each(crate::views::hide_policy_urls);
    }
    Ok(Json(policies).into_response())
}

#[utoipa::path(get, path = "/v1/policies/{name}", tag = "policies", params(("name" = String, Path)), responses((status = 200, description = "The policy (for non-admins, webhook and http: verification URLs show only their scheme and host)", body = crate::openapi::JsonObject)))]
async fn show_policy(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let mut policy = engine(&state, &caller).policy(&name).await?;
    if caller.require(Role::Admin).is_err() {
        crate::views::hide_policy_urls(&mut policy);
    }
    Ok(Json(policy).into_response())
}

/// The engine's form of a policy: a `trigger` as in `GET /v1/policies/{name}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[schema(value_type = Object)]
    trigger: Trigger,
    #[serde(default)]
    migrate: bool,
    #[serde(default)]
    retire_old: bool,
    /// How rotations under the policy run (strategy, generator, verification, retries, notifications), as stored.
    #[schema(value_type = Option<Object>)]
    procedure: Option<Procedure>,
}

/// A policy body: the operator's form, `{interval_days?, max_age_days?,
/// max_uses?, cron?, timezone?, monthly?, all?, window?, rotation_type?,
/// strategy?, generator?, verify?, require_verification?, no_rollback?,
/// max_retries?, retry_backoff_seconds?, grace_period_hours?, notify?,
/// notify_on_failure?, notify_before?, active?, migrate?, retire_old?,
/// auto_revoke?}` (the flags of `rotation policy set`, checked field by
/// field, unknown fields refused: `invalid_policy` naming the field); or,
/// when it has a `trigger`, the engine's form `{trigger, migrate?,
/// retire_old?, procedure?}` as `GET /v1/policies/{name}` shows it.
pub(crate) struct PolicyInput;

impl utoipa::PartialSchema for PolicyInput {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Object)
            .description(Some(
                "The operator's form {interval_days?, max_age_days?, max_uses?, cron?, timezone?, monthly?, all?, \
                 window?, rotation_type?, strategy?, generator?, verify?, require_verification?, no_rollback?, \
                 max_retries?, retry_backoff_seconds?, grace_period_hours?, notify?, notify_on_failure?, \
                 notify_before?, active?, migrate?, retire_old?, auto_revoke?} (unknown fields refused; errors are \
                 invalid_policy naming the field), or, with a `trigger`, the engine's form {trigger, migrate?, \
                 retire_old?, procedure?}.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for PolicyInput {}

/// The operator's form into a policy; every error is `invalid_policy`
/// naming the field.
fn policy_from_spec(name: &str, body: serde_json::Value, now: rotation_core::time::Timestamp) -> ApiResult<Policy> {
    let serde_json::Value::Object(fields) = body else {
        return Err(Error::new(Reason::InvalidPolicy, "a policy body is a JSON object").into());
    };
    let spec: PolicySpec = match serde_json::from_value(serde_json::Value::Object(fields.clone())) {
        Ok(spec) => spec,
        Err(e) => {
            // Find the field serde refused, one at a time, so the error names it.
            for (field, value) in &fields {
                let mut one = serde_json::Map::new();
                one.insert(field.clone(), value.clone());
                if let Err(e) = serde_json::from_value::<PolicySpec>(serde_json::Value::Object(one)) {
                    let message = e.to_string();
                    let message = if message.starts_with("unknown field") {
                        "is not a policy field".to_owned()
                    } else {
                        // serde's text may quote the value (a URL with credentials, say).
                        crate::error::describe_json_error(&e, None)
                    };
                    return Err(invalid_field(field, message).into());
                }
            }
            let described = crate::error::describe_json_error(&e, None);
            return Err(Error::new(Reason::InvalidPolicy, format!("invalid policy: {described}")).into());
        }
    };
    Ok(spec.into_policy(name, now)?)
}

#[utoipa::path(put, path = "/v1/policies/{name}", tag = "policies", params(("name" = String, Path)), request_body(content = PolicyInput, content_type = "application/json"), responses((status = 200, description = "The stored policy", body = crate::openapi::JsonObject)))]
async fn set_policy(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let engine = engine(&state, &caller);
    let policy = if body.get("trigger").is_some() {
        let body: PolicyBody = crate::error::from_json_value(body)?;
        Policy {
            name,
            trigger: body.trigger,
            migrate: body.migrate,
            retire_old: body.retire_old,
            updated_at: engine.now(),
            procedure: body.procedure.unwrap_or_default(),
        }
    } else {
        policy_from_spec(&name, body, engine.now())?
    };
    // Webhooks and http: tests never reach internal addresses unless allow-listed.
    rotation_app::check_policy_urls(&policy, &state.url_allowlist).await?;
    let policy = engine.set_policy(policy).await?;
    Ok(Json(policy).into_response())
}

#[utoipa::path(delete, path = "/v1/policies/{name}", tag = "policies", params(("name" = String, Path)), responses((status = 200, description = "Removed", body = crate::openapi::JsonObject)))]
async fn remove_policy(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    engine(&state, &caller).remove_policy(&name).await?;
    Ok(Json(json!({"removed": name})).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ScheduleQuery {
    #[serde(default)]
    all: bool,
}

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules", params(ScheduleQuery), responses((status = 200, description = "Schedules", body = Vec<crate::openapi::JsonObject>)))]
async fn list_schedules(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ScheduleQuery>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).list_schedules(None, !q.all).await?).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct AddSchedule {
    /// `authority:ID`, `keyring:NAME` or `secret:PATH`.
    target: String,
    policy: String,
    /// Shift of every occurrence, as a duration (`15m`, `1h`, `2d`); or `offset_seconds`.
    offset: Option<String>,
    /// Shift of every occurrence in seconds; or `offset`.
    offset_seconds: Option<i64>,
}

#[utoipa::path(post, path = "/v1/schedules", tag = "schedules", request_body(content = AddSchedule, content_type = "application/json"), responses((status = 201, description = "The schedule", body = crate::openapi::JsonObject)))]
async fn add_schedule(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<AddSchedule>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let target: Target = body.target.parse()?;
    let offset_seconds = match (&body.offset, body.offset_seconds) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid_input("give at most one of offset and offset_seconds").into());
        }
        (Some(o), None) => parse_duration("offset", o)
            .map_err(|e| Error::invalid_input(e.message))?
            .num_seconds(),
        (None, Some(s)) => s,
        (None, None) => 0,
    };
    let engine = engine(&state, &caller);
    if let Target::Secret(path) = &target
        && caller.require(Role::Admin).is_err()
    {
        // Scheduled rotations send new values to the policy's http: tests.
        let secret = engine.secret(path).await?;
        secrets::require_admin_for_policy_tests(&caller, &engine, &secret, &body.policy, "scheduling").await?;
    }
    let schedule = engine.add_policy_schedule(target, &body.policy, offset_seconds).await?;
    Ok(created(schedule))
}

#[utoipa::path(post, path = "/v1/schedules/{id}/resume", tag = "schedules", params(("id" = String, Path, description = "Schedule id")), responses((status = 200, description = "The schedule, back in service and due now", body = crate::openapi::JsonObject)))]
/// Puts an orphaned or failed schedule back in service (an active or
/// completed one is `invalid_input`).
async fn resume_schedule(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let id: RotationId = id.parse().map_err(|_| {
        Error::invalid_input(format!(
            "schedule id {:?} is not a UUID",
            id.chars().take(64).collect::<String>()
        ))
    })?;
    Ok(Json(engine(&state, &caller).resume_schedule(id).await?).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct PlanQuery {
    /// How far ahead, as a duration (`30d` by default, at most 3660 days).
    within: Option<String>,
}

#[utoipa::path(get, path = "/v1/schedules/plan", tag = "schedules", params(PlanQuery), responses((status = 200, description = "What would rotate, when, how and what it touches (changes nothing)", body = Vec<crate::openapi::JsonObject>)))]
async fn schedule_plan(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<PlanQuery>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let within =
        parse_duration("within", q.within.as_deref().unwrap_or("30d")).map_err(|e| Error::invalid_input(e.message))?;
    Ok(Json(engine(&state, &caller).schedule_plan(within).await?).into_response())
}

#[utoipa::path(post, path = "/v1/schedules/run-due", tag = "schedules", responses((status = 200, description = "Outcomes of the due runs", body = Vec<crate::openapi::JsonObject>)))]
async fn run_due(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let engine = engine(&state, &caller);
    let e = engine.clone();
    let outcomes = detached(&state, async move { e.process_scheduled_rotations().await }).await?;
    metrics::record_outcomes(&outcomes);
    // Deliver what these runs queued, as `rotation schedule run-due` does
    // (in the background: the client does not wait for receivers).
    state
        .background
        .spawn(async move { crate::worker::dispatch(&engine).await });
    Ok(Json(outcomes).into_response())
}

// ---------------------------------------------------------------- audit and report

/// Filters and cursor of `GET /v1/audit` (every filter optional).
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    /// Only this target, as `kind:name` (e.g. `authority:payments`).
    target: Option<String>,
    /// Only this event type (e.g. `rotation_completed`).
    event: Option<String>,
    /// Only events of this rotation run (a UUID).
    rotation_id: Option<String>,
    /// Only events by this actor (e.g. `token:<id>`, `scheduler:<worker>`).
    actor: Option<String>,
    /// Only events at or after this instant (RFC 3339).
    since: Option<String>,
    /// Only events before this instant (RFC 3339).
    until: Option<String>,
    /// Only events with `seq` below this: the `X-Next-Before-Seq` header of the previous page.
    before_seq: Option<i64>,
    /// Page size, 1 to 1000 (default 100).
    limit: Option<usize>,
}

/// Response header carrying the cursor of the next (older) page of `GET /v1/audit`.
const NEXT_BEFORE_SEQ: &str = "x-next-before-seq";

fn rfc3339_param(name: &str, value: Option<String>) -> ApiResult<Option<rotation_core::time::Timestamp>> {
    value
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(&v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| {
                    Error::invalid_input(format!(
                        "{name} {:?} is not an RFC 3339 time: {e}",
                        v.chars().take(64).collect::<String>()
                    ))
                    .into()
                })
        })
        .transpose()
}

#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "Matching audit events, newest first. When the page is full, the \
            `X-Next-Before-Seq` header holds the `before_seq` of the next (older) page; without it this is the last page.",
            body = Vec<crate::openapi::JsonObject>,
            headers(("X-Next-Before-Seq" = i64, description = "Cursor of the next page (absent on the last page)"))),
        (status = 422, description = "Malformed, unknown or invalid parameter (reason invalid_input)", body = crate::openapi::ErrorBody),
    )
)]
async fn audit_list(State(state): State<AppState>, caller: Caller, Query(q): Query<AuditQuery>) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > AUDIT_LIMIT {
        return Err(Error::invalid_input(format!("limit must be 1 to {AUDIT_LIMIT}")).into());
    }
    if q.before_seq.is_some_and(|s| s < 1) {
        return Err(Error::invalid_input("before_seq must be at least 1").into());
    }
    let rotation_id = q
        .rotation_id
        .map(|r| {
            r.parse::<RotationId>().map_err(|_| {
                Error::invalid_input(format!(
                    "rotation_id {:?} is not a UUID",
                    r.chars().take(64).collect::<String>()
                ))
            })
        })
        .transpose()?;
    let since = rfc3339_param("since", q.since)?;
    let until = rfc3339_param("until", q.until)?;
    if let (Some(s), Some(u)) = (since, until)
        && s > u
    {
        return Err(Error::invalid_input("since is after until").into());
    }
    let query = rotation_core::ports::AuditQuery {
        target: q.target,
        event: q.event,
        rotation_id,
        actor: q.actor,
        since,
        until,
        before_seq: q.before_seq,
        limit,
    };
    let mut events = engine(&state, &caller).query_audit(query).await?;
    if caller.require(Role::Admin).is_err() {
        // A script's kept stdout (`script_log`) is for admins only.
        for details in events.iter_mut().filter_map(|e| e.details.as_object_mut()) {
            details.remove("stdout");
        }
    }
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten()
        .filter(|seq| *seq > 1);
    let mut response = Json(events).into_response();
    if let Some(seq) = next {
        response.headers_mut().insert(NEXT_BEFORE_SEQ, HeaderValue::from(seq));
    }
    Ok(response)
}

#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit", responses((status = 200, description = "Hash chain verdict", body = crate::openapi::JsonObject)))]
async fn audit_verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let engine = engine(&state, &caller);
    let head = audit_head(&engine).await?;
    let verdict = state
        .cached
        .audit
        .get_or_compute(head, engine.now(), async {
            serde_json::to_value(engine.verify_audit().await?)
                .map_err(|e| Error::new(Reason::RotationFailed, format!("cannot encode the verdict: {e}")))
        })
        .await?;
    Ok(Json(verdict).into_response())
}

/// `GET /v1/audit/checkpoint`: the newest signed checkpoint, signed
/// afresh first when the log grew since (any role). JSON with the note in
/// `checkpoint`; with `Accept: text/plain`, exactly the note text.
#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit", responses((status = 200, description = "The newest signed checkpoint: `{size, root_hash, checkpoint, verifier_key}` where `checkpoint` is the C2SP signed note (text/plain with `Accept: text/plain`)", body = crate::openapi::JsonObject)))]
async fn audit_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
    headers: axum::http::HeaderMap,
) -> ApiResult<Response> {
    let engine = engine(&state, &caller);
    let cp = if engine.audit_checkpoint_is_current().await? {
        match engine.latest_audit_checkpoint().await? {
            Some(cp) => cp,
            None => engine.sign_audit_checkpoint().await?,
        }
    } else {
        engine.sign_audit_checkpoint().await?
    };
    let wants_text = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.starts_with("text/plain"));
    if wants_text {
        return Ok((
            [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            cp.checkpoint,
        )
            .into_response());
    }
    let verifier_key = engine.audit_verifier_key().await?.map(|k| k.to_string());
    Ok(Json(serde_json::json!({
        "size": cp.size,
        "root_hash": cp.root_hash,
        "checkpoint": cp.checkpoint,
        "verifier_key": verifier_key,
    }))
    .into_response())
}

/// Query of `GET /v1/audit/proof`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ProofQuery {
    /// Entry index (`seq - 1`).
    index: u64,
    /// Tree size (at most the log's size).
    size: u64,
}

/// `GET /v1/audit/proof?index=N&size=M`: RFC 9162 inclusion proof of
/// entry `N` in the tree of `M` entries (any role).
#[utoipa::path(get, path = "/v1/audit/proof", tag = "audit", params(ProofQuery), responses((status = 200, description = "Inclusion proof `{index, size, leaf_hash, root_hash, proof: [base64]}`", body = crate::openapi::JsonObject)))]
async fn audit_proof(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ProofQuery>,
) -> ApiResult<Response> {
    let proof = engine(&state, &caller).audit_inclusion_proof(q.index, q.size).await?;
    Ok(Json(proof).into_response())
}

/// Query of `GET /v1/audit/consistency`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct ConsistencyQuery {
    /// The older tree size (at least 1).
    from: u64,
    /// The newer tree size (at most the log's size).
    to: u64,
}

/// `GET /v1/audit/consistency?from=N&to=M`: RFC 9162 consistency proof
/// between the trees of `N` and `M` entries (any role).
#[utoipa::path(get, path = "/v1/audit/consistency", tag = "audit", params(ConsistencyQuery), responses((status = 200, description = "Consistency proof `{from, to, from_root, to_root, proof: [base64]}`", body = crate::openapi::JsonObject)))]
async fn audit_consistency(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ConsistencyQuery>,
) -> ApiResult<Response> {
    let proof = engine(&state, &caller).audit_consistency_proof(q.from, q.to).await?;
    Ok(Json(proof).into_response())
}

#[utoipa::path(get, path = "/v1/report", tag = "audit", responses((status = 200, description = "Compliance report", body = crate::openapi::JsonObject)))]
async fn report(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).compliance_report().await?).into_response())
}

// ---------------------------------------------------------------- tokens

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    role: Role,
    expires_in_days: Option<u32>,
    description: Option<String>,
}

#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body(content = CreateToken, content_type = "application/json"), responses((status = 201, description = "The token secret (shown once) and its info", body = crate::openapi::JsonObject)))]
async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateToken>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let (info, token) = state
        .tokens
        .create_as(&caller.actor(), body.role, body.expires_in_days, body.description)
        .await?;
    use secrecy::ExposeSecret as _;
    let mut response = created(json!({"token": token.expose_secret(), "info": info}));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[utoipa::path(get, path = "/v1/tokens", tag = "tokens", responses((status = 200, description = "Tokens", body = Vec<crate::auth::TokenInfo>)))]
async fn list_tokens(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    Ok(Json(state.tokens.list().await?).into_response())
}

#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens", params(("id" = String, Path)), responses((status = 200, description = "The revoked token", body = crate::auth::TokenInfo)))]
async fn revoke_token(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    Ok(Json(state.tokens.revoke_as(&caller.actor(), &id).await?).into_response())
}
