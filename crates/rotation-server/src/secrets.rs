//! Secrets (`/v1/secrets`), rotation statistics (`/v1/stats`) and the
//! notification outbox (`/v1/outbox`).
//!
//! **Routing.** Secret paths contain `/` (`db/prod/app`), so a secret is
//! addressed by one wildcard, `/v1/secrets/{*path}`, and an action on it is
//! a suffix after a colon, which a secret path can never contain:
//! `GET /v1/secrets/db/prod/app:history`, `POST .../db/prod/app:rotate`.
//! The handlers below split the suffix off themselves. A `/` in the path
//! may be sent as is or percent-encoded (`%2F`).
//!
//! Values leave the server only in the answer of `GET /v1/secrets/{path}`
//! (admin; audited `secret_read` by the engine; `Cache-Control:
//! no-store`). Every other answer carries metadata only.
//!
//! **Who chooses where values go.** The settings through which the server
//! sends a value somewhere or runs something are chosen by admins only
//! ([`admin_settings_changed`]): a `script` (a program the server runs
//! with each new value on stdin), an `http:URL` verification test (a URL
//! the verifier sends each new value to), `admin_secret` (the secret whose
//! value is the database connection a new password is sent over),
//! `ca_secret` (the secret whose private key signs certificates) and the
//! database `role` whose password rotates. An operator who could set any
//! of them could send the next value anywhere; an operator may resend the
//! stored ones unchanged. The same holds for:
//! - the shape of a certificate a CA secret issues (`ca`, `common_name`,
//!   `validity_days` of a secret with a `ca_secret`): an operator could
//!   otherwise have the admin's CA issue a sub-CA for any name;
//! - a secret that another secret names as its `ca_secret` or
//!   `admin_secret` ([`require_admin_if_referenced`]): whoever writes it
//!   chooses the CA key or the connection the others' values go through;
//! - rotating with, or attaching, a policy whose `http:URL` verification
//!   tests the secret does not carry yet ([`require_admin_for_policy_tests`]).

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rotation_core::engine::{PutSecret, SecretRotateRequest};
use rotation_core::secret::{Generator, Secret, SecretConfig, SecretType, SecretValue, Stage, VersionSelector};
use rotation_core::time::Timestamp;
use rotation_core::{Engine, Error, Reason};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::api::{JsonBody, Path, Query, created, detached, engine};
use crate::auth::{Caller, Role};
use crate::error::{ApiError, ApiResult};
use crate::metrics;

/// Most history entries and outbox messages one request returns.
const LIST_LIMIT: usize = 1000;

/// `path` and the action after its last `:`, if any.
fn split_action(raw: &str) -> (&str, Option<&str>) {
    match raw.rsplit_once(':') {
        Some((path, action)) => (path, Some(action)),
        None => (raw, None),
    }
}

/// `invalid_input` for an action the method does not have.
fn unknown_action(method: &str, action: Option<&str>, known: &str) -> ApiError {
    let what = match action {
        Some(a) => format!("unknown action {:?}", a.chars().take(32).collect::<String>()),
        None => "no action".to_owned(),
    };
    Error::invalid_input(format!(
        "{method} /v1/secrets/{{path}}: {what}; use {known} (a secret path never contains ':')"
    ))
    .into()
}

/// A body read as `T` (the dispatchers read it once as JSON); an error
/// never quotes the input.
fn body_as<T: DeserializeOwned>(body: serde_json::Value) -> ApiResult<T> {
    Ok(crate::error::from_json_value(body)?)
}

/// The URLs of the HTTP tests of a verification list (named `http:URL` or
/// by the URL itself, [`rotation_core::outbound::http_test_url`]), in order.
fn http_tests(verify: &[String]) -> Vec<&str> {
    verify
        .iter()
        .filter_map(|t| rotation_core::outbound::http_test_url(t))
        .collect()
}

/// The admin-only settings `body` sets or changes from `stored` (the
/// secret's stored settings; `None` for a new secret), by name. These are
/// the settings through which the server sends a value somewhere or runs
/// something: `script`, `admin_secret`, `ca_secret`, `role` and the
/// `http:URL` verification tests; and, for a certificate a CA secret
/// issues (`ca_secret` given or stored), what the CA signs: `ca`,
/// `common_name` and `validity_days`. A setting left out, or given equal
/// to the stored one, is not a change.
fn admin_settings_changed(body: &PutSecretBody, stored: Option<&SecretConfig>) -> Vec<&'static str> {
    let none = SecretConfig::default();
    let stored = stored.unwrap_or(&none);
    let changes = |given: &Option<String>, stored: &Option<String>| given.is_some() && given != stored;
    let mut changed = Vec::new();
    if changes(&body.script, &stored.script) {
        changed.push("script");
    }
    if changes(&body.admin_secret, &stored.admin_secret) {
        changed.push("admin_secret");
    }
    if changes(&body.ca_secret, &stored.ca_secret) {
        changed.push("ca_secret");
    }
    if changes(&body.role, &stored.role) {
        changed.push("role");
    }
    if body.script_log.is_some_and(|keep| keep != stored.script_log) {
        changed.push("script_log");
    }
    if body
        .verify
        .as_deref()
        .is_some_and(|verify| http_tests(verify) != http_tests(&stored.verify))
    {
        changed.push("http:URL verification tests");
    }
    if body.ca_secret.is_some() || stored.ca_secret.is_some() {
        if body.ca.is_some_and(|ca| ca != stored.ca) {
            changed.push("ca");
        }
        if changes(&body.common_name, &stored.common_name) {
            changed.push("common_name");
        }
        if body.validity_days.is_some() && body.validity_days != stored.validity_days {
            changed.push("validity_days");
        }
    }
    changed
}

/// `forbidden` unless `caller` is an admin or no other secret names `path`
/// as its `ca_secret` or `admin_secret`: writing such a secret chooses
/// the key that signs the others' certificates, or the connection their
/// new passwords are sent over. `doing` says what the caller tried.
pub(crate) async fn require_admin_if_referenced(
    caller: &Caller,
    engine: &Engine,
    path: &str,
    doing: &str,
) -> ApiResult<()> {
    if caller.require(Role::Admin).is_ok() {
        return Ok(());
    }
    let references = engine.secrets_referring_to(path).await?;
    let Some(first) = references.first() else {
        return Ok(());
    };
    let more = match references.len() {
        1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    Err(Error::new(
        Reason::Forbidden,
        format!(
            "{doing} secret {path} needs the admin role: secret {} names it as its {}{more}",
            first.path, first.setting
        ),
    )
    .into())
}

/// `forbidden` unless `caller` is an admin or every `http:URL`
/// verification test of policy `name` is one `secret` already carries (in
/// its own tests, or in its own policy's): the verifier sends each new
/// value to those URLs. `doing` says what the caller tried.
pub(crate) async fn require_admin_for_policy_tests(
    caller: &Caller,
    engine: &Engine,
    secret: &Secret,
    name: &str,
    doing: &str,
) -> ApiResult<()> {
    if caller.require(Role::Admin).is_ok() || secret.policy.as_deref() == Some(name) {
        return Ok(());
    }
    let named = engine.policy(name).await?;
    let mut carried: Vec<String> = http_tests(&secret.config.verify)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if let Some(own) = &secret.policy
        && let Some(own) = engine.store().get_policy(own).await?
    {
        carried.extend(
            http_tests(&own.procedure.verification_tests)
                .into_iter()
                .map(str::to_owned),
        );
    }
    let new = http_tests(&named.procedure.verification_tests)
        .into_iter()
        .filter(|t| !carried.iter().any(|c| c == t))
        .count();
    if new == 0 {
        return Ok(());
    }
    Err(Error::new(
        Reason::Forbidden,
        format!(
            "{doing} secret {} with policy {name} needs the admin role: the policy has {new} http:URL \
             verification test(s) the secret does not carry, and the verifier sends each new value there",
            secret.path
        ),
    )
    .into())
}

/// `forbidden` unless `caller` is an admin or `body` sets or changes no
/// admin-only setting ([`admin_settings_changed`]). The answer names the
/// settings, never their values.
fn require_admin_for_settings(caller: &Caller, body: &PutSecretBody, stored: Option<&SecretConfig>) -> ApiResult<()> {
    let changed = admin_settings_changed(body, stored);
    if changed.is_empty() || caller.require(Role::Admin).is_ok() {
        return Ok(());
    }
    Err(Error::new(
        rotation_core::Reason::Forbidden,
        format!(
            "setting or changing {} needs the admin role (through these settings the server \
             sends the secret's values somewhere or runs a program); an operator may resend \
             the stored ones unchanged",
            changed.join(", ")
        ),
    )
    .into())
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

// ---------------------------------------------------------------- dispatch

/// `GET /v1/secrets/{*path}`: the value, or `:history` / `:status`.
pub(crate) async fn get_dispatch(
    state: State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    query: Query<ReadQuery>,
) -> ApiResult<Response> {
    match split_action(&raw) {
        (path, None) => {
            if query.0.limit.is_some() {
                caller.require(Role::Admin)?;
                return Err(Error::invalid_input("limit applies to :history only").into());
            }
            read_secret(state, caller, Path(path.to_owned()), query).await
        }
        (path, Some("history")) => {
            let Query(q) = query;
            if q.version.is_some() || q.stage.is_some() {
                caller.require(Role::Viewer)?;
                return Err(Error::invalid_input("version and stage apply to reading a value, not :history").into());
            }
            secret_history(
                state,
                caller,
                Path(path.to_owned()),
                Query(HistoryQuery { limit: q.limit }),
            )
            .await
        }
        (path, Some("status")) => secret_status(state, caller, Path(path.to_owned())).await,
        (_, action) => {
            caller.require(Role::Viewer)?;
            Err(unknown_action(
                "GET",
                action,
                "no suffix (the value), :history or :status",
            ))
        }
    }
}

/// `POST /v1/secrets/{*path}`: `:rotate` or `:validate`.
pub(crate) async fn post_dispatch(
    state: State<AppState>,
    caller: Caller,
    Path(raw): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> ApiResult<Response> {
    match split_action(&raw) {
        (path, Some("rotate")) => {
            caller.require(Role::Operator)?;
            rotate_secret(state, caller, Path(path.to_owned()), JsonBody(body_as(body)?)).await
        }
        (path, Some("validate")) => {
            caller.require(Role::Operator)?;
            validate_secret(state, caller, Path(path.to_owned()), JsonBody(body_as(body)?)).await
        }
        (_, action) => {
            caller.require(Role::Viewer)?;
            Err(unknown_action("POST", action, ":rotate or :validate"))
        }
    }
}

// ---------------------------------------------------------------- secrets

/// `PUT /v1/secrets/{path}`: exactly one of `value` and `generate`, or
/// neither (a value is generated by the secret's generator, or issued for
/// certificates). Settings given replace the stored ones field by field.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PutSecretBody {
    /// `generic` (default for a new secret), `password`, `api_key`, `database` or `certificate`; a secret's type never changes.
    #[serde(rename = "type")]
    secret_type: Option<String>,
    /// The new value (never echoed back).
    value: Option<String>,
    /// Generate the value: `random:LEN[:CHARSET]`, `uuid` or `hex:LEN` (also kept as the secret's generator).
    generate: Option<String>,
    /// Policy attached to the secret (used by rotations and schedules when none is named).
    policy: Option<String>,
    /// Database: path of the secret holding the admin connection URL. Setting or changing it needs admin: the new password is sent over that connection.
    admin_secret: Option<String>,
    /// Database: the role whose password rotates. Setting or changing it needs admin.
    role: Option<String>,
    /// Executable on the server run for each rotation step, with the values on stdin. Setting or changing it needs admin: it runs a program on the server's host.
    script: Option<String>,
    /// Keep the script's stdout (redacted) in the history, shown to admins only (default: only its exit status and stderr tail). Setting or changing it needs admin.
    script_log: Option<bool>,
    /// Verification tests (`login`, `certificate`, `script`, `nonempty`, `http:URL`), replacing the stored ones. Adding, changing or removing an `http:URL` test needs admin: the verifier sends each new value to the URL.
    verify: Option<Vec<String>>,
    /// Certificate: path of the secret holding the issuing CA; self-signed without. Setting or changing it needs admin: that CA's private key signs the certificates.
    ca_secret: Option<String>,
    /// Certificate: issue a CA certificate.
    ca: Option<bool>,
    /// Certificate: subject common name and DNS name.
    common_name: Option<String>,
    /// Certificate: validity of new certificates in days.
    validity_days: Option<u32>,
    /// Certificate: renew when the certificate expires within this many days.
    renew_before_days: Option<u32>,
}

impl PutSecretBody {
    fn settings_given(&self) -> bool {
        self.admin_secret.is_some()
            || self.role.is_some()
            || self.script.is_some()
            || self.script_log.is_some()
            || self.verify.is_some()
            || self.ca.is_some()
            || self.ca_secret.is_some()
            || self.common_name.is_some()
            || self.validity_days.is_some()
            || self.renew_before_days.is_some()
    }

    /// The stored settings with the given ones replacing theirs.
    fn merged(self, mut c: SecretConfig) -> SecretConfig {
        let merge = |slot: &mut Option<String>, v: Option<String>| {
            if v.is_some() {
                *slot = v;
            }
        };
        merge(&mut c.admin_secret, self.admin_secret);
        merge(&mut c.role, self.role);
        merge(&mut c.script, self.script);
        merge(&mut c.ca_secret, self.ca_secret);
        merge(&mut c.common_name, self.common_name);
        if let Some(verify) = self.verify {
            c.verify = verify;
        }
        if let Some(ca) = self.ca {
            c.ca = ca;
        }
        if let Some(keep) = self.script_log {
            c.script_log = keep;
        }
        c.validity_days = self.validity_days.or(c.validity_days);
        c.renew_before_days = self.renew_before_days.or(c.renew_before_days);
        c
    }
}

#[utoipa::path(put, path = "/v1/secrets/{path}", tag = "secrets",
    params(("path" = String, Path, description = "Secret path, e.g. `db/prod/app` (`/` as is or `%2F`)")),
    request_body(content = PutSecretBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created: `{secret, version}` (metadata and the new version, never the value)", body = crate::openapi::JsonObject),
        (status = 200, description = "A new version of an existing secret: `{secret, version}`", body = crate::openapi::JsonObject)
    ))]
/// Writes a secret and a new CURRENT version (operator). Setting or
/// changing `script`, `admin_secret`, `ca_secret`, `role` or `http:URL`
/// verification tests (on a new secret too) needs admin (403
/// `forbidden`); resending the stored ones unchanged does not.
pub(crate) async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    JsonBody(mut body): JsonBody<PutSecretBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let engine = engine(&state, &caller);
    rotation_core::secret::check_path(&path)?;
    let secret_type = body.secret_type.as_deref().map(str::parse::<SecretType>).transpose()?;
    let generator = body
        .generate
        .as_deref()
        .map(Generator::parse)
        .transpose()
        .map_err(|e| Error::invalid_input(e.message))?;
    let value = match (body.value.take(), &generator) {
        (Some(_), Some(_)) => return Err(Error::invalid_input("give at most one of value and generate").into()),
        (Some(v), None) => Some(SecretValue::new(v)),
        (None, _) => None,
    };
    let existing = engine.store().get_secret(&path).await?;
    // Only admins choose where values go or what runs (module doc).
    require_admin_for_settings(&caller, &body, existing.as_ref().map(|s| &s.config))?;
    if existing.is_some() {
        require_admin_if_referenced(&caller, &engine, &path, "writing").await?;
    }
    if let Some(policy) = body.policy.as_deref() {
        let current = existing.clone().unwrap_or_else(|| Secret {
            path: path.clone(),
            secret_type: secret_type.unwrap_or(SecretType::Generic),
            policy: None,
            config: SecretConfig::default(),
            created_at: engine.now(),
            updated_at: engine.now(),
            last_rotated_at: None,
        });
        require_admin_for_policy_tests(&caller, &engine, &current, policy, "attaching to").await?;
    }
    if let Some(verify) = &body.verify {
        // http: tests never reach internal addresses unless allow-listed.
        rotation_app::check_verify_urls(verify, &state.url_allowlist).await?;
    }
    let policy = body.policy.take();
    let config = body
        .settings_given()
        .then(|| body.merged(existing.as_ref().map(|s| s.config.clone()).unwrap_or_default()));
    let request = PutSecret {
        path,
        secret_type,
        value,
        generator,
        policy,
        config,
    };
    let e = engine.clone();
    let (secret, version) = detached(&state, async move { e.put_secret(request).await }).await?;
    let body = json!({"secret": secret, "version": version});
    Ok(if existing.is_none() {
        created(body)
    } else {
        Json(body).into_response()
    })
}

/// `?version=N` or `?stage=current|pending|previous` (default: CURRENT);
/// `limit` is for `:history`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReadQuery {
    /// A version number.
    version: Option<u32>,
    /// A stage label: `current`, `pending` or `previous`.
    stage: Option<String>,
    /// `:history` only: most rotations listed (1 to 1000, default 20).
    limit: Option<usize>,
}

/// A secret's value: the only answer that carries one.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct SecretValueView {
    path: String,
    version: u32,
    #[schema(value_type = Vec<String>)]
    stages: Vec<Stage>,
    #[schema(value_type = String, format = DateTime)]
    created_at: Timestamp,
    #[schema(value_type = Object)]
    attributes: std::collections::BTreeMap<String, String>,
    #[serde(serialize_with = "expose")]
    #[schema(value_type = String)]
    value: SecretValue,
}

fn expose<S: serde::Serializer>(value: &SecretValue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.expose())
}

#[utoipa::path(get, path = "/v1/secrets/{path}", tag = "secrets",
    params(("path" = String, Path, description = "Secret path, e.g. `db/prod/app` (`/` as is or `%2F`)"), ("version" = Option<u32>, Query, description = "A version number"), ("stage" = Option<String>, Query, description = "`current` (default), `pending` or `previous`")),
    responses((status = 200, description = "The value (admin; audited `secret_read`; `Cache-Control: no-store`)", body = SecretValueView)))]
/// Reads a version's value.
pub(crate) async fn read_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Response> {
    // Reading a value is an admin's right (issue 7); it is audited as `secret_read`.
    caller.require(Role::Admin)?;
    let selector = match (q.version, q.stage.as_deref()) {
        (Some(_), Some(_)) => return Err(Error::invalid_input("give at most one of version and stage").into()),
        (Some(n), None) => VersionSelector::Version(n),
        (None, Some(s)) => VersionSelector::Stage(s.parse()?),
        (None, None) => VersionSelector::Stage(Stage::Current),
    };
    let (version, value) = engine(&state, &caller).get_secret(&path, selector).await?;
    Ok(no_store(
        Json(SecretValueView {
            path,
            version: version.version,
            stages: version.stages,
            created_at: version.created_at,
            attributes: version.attributes,
            value,
        })
        .into_response(),
    ))
}

#[utoipa::path(get, path = "/v1/secrets", tag = "secrets", responses((status = 200, description = "Secrets (never values)", body = Vec<crate::openapi::JsonObject>)))]
/// Lists secrets.
pub(crate) async fn list_secrets(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).list_secrets().await?).into_response())
}

/// `:history?limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Most rotations listed, newest first (1 to 1000, default 20).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/secrets/{path}:history", tag = "secrets",
    params(("path" = String, Path, description = "Secret path (`/` as is or `%2F`)"), HistoryQuery),
    responses((status = 200, description = "Rotations, newest first, with their status and steps (outputs redacted; a script's kept `stdout` for admins only)", body = Vec<crate::openapi::JsonObject>)))]
/// A secret's rotation history; a script's kept stdout (`script_log`) is
/// shown to admins only.
pub(crate) async fn secret_history(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    let limit = q.limit.unwrap_or(20);
    if limit == 0 || limit > LIST_LIMIT {
        return Err(Error::invalid_input(format!("limit must be 1 to {LIST_LIMIT}")).into());
    }
    let mut history = engine(&state, &caller).secret_history(&path, limit).await?;
    if caller.require(Role::Admin).is_err() {
        for step in history.iter_mut().flat_map(|entry| entry.steps.iter_mut()) {
            step.stdout = None;
        }
    }
    Ok(Json(history).into_response())
}

#[utoipa::path(get, path = "/v1/secrets/{path}:status", tag = "secrets",
    params(("path" = String, Path, description = "Secret path (`/` as is or `%2F`)")),
    responses((status = 200, description = "Versions and labels, schedule, last and next rotation", body = crate::openapi::JsonObject)))]
/// A secret's rotation status.
pub(crate) async fn secret_status(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).secret_status(&path).await?).into_response())
}

/// `:rotate`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RotateSecretBody {
    /// Rotate under this policy instead of the secret's own.
    policy: Option<String>,
    /// The new value; generated (or issued) when absent.
    value: Option<String>,
    /// Idempotency token (a UUID): a retried request with the same id reports the same run.
    rotation_id: Option<String>,
}

#[utoipa::path(post, path = "/v1/secrets/{path}:rotate", tag = "secrets",
    params(("path" = String, Path, description = "Secret path (`/` as is or `%2F`)")),
    request_body(content = RotateSecretBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The rotation result (no value)", body = crate::openapi::JsonObject),
        (status = 409, description = "`verification_failed` (rolled back), `concurrent_rotation`", body = crate::openapi::ErrorBody)
    ))]
/// Rotates a secret with its policy's strategy.
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    JsonBody(body): JsonBody<RotateSecretBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    let rotation_id = body
        .rotation_id
        .map(|r| {
            r.parse()
                .map_err(|_| Error::invalid_input(format!("rotation_id {r:?} is not a UUID")))
        })
        .transpose()?;
    let engine = engine(&state, &caller);
    require_admin_if_referenced(&caller, &engine, &path, "rotating").await?;
    if let Some(policy) = body.policy.as_deref()
        && caller.require(Role::Admin).is_err()
    {
        let secret = engine.secret(&path).await?;
        require_admin_for_policy_tests(&caller, &engine, &secret, policy, "rotating").await?;
    }
    let request = SecretRotateRequest {
        path,
        policy: body.policy,
        value: body.value.map(SecretValue::new),
        rotation_id,
        schedule_id: None,
    };
    let started = Instant::now();
    let e = engine.clone();
    let result = detached(&state, async move { e.rotate_secret(request).await }).await;
    metrics::record_rotation("secret", &result, started.elapsed());
    // Success and failure both queue notifications: deliver them now
    // rather than at the worker's next pass (not awaited by the client).
    state
        .background
        .spawn(async move { crate::worker::dispatch(&engine).await });
    Ok(Json(result?).into_response())
}

/// `:validate`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValidateBody {
    /// The presented value.
    value: String,
}

#[utoipa::path(post, path = "/v1/secrets/{path}:validate", tag = "secrets",
    params(("path" = String, Path, description = "Secret path (`/` as is or `%2F`)")),
    request_body(content = ValidateBody, content_type = "application/json"),
    responses((status = 200, description = "`{valid, version, stage}`: CURRENT, or PREVIOUS during a dual-write grace period \
        (operator; limited per token and secret, 429 `rate_limited` with `Retry-After` beyond; attempts audited as \
        `secret_validated`, one event per token, secret and interval)", body = crate::openapi::JsonObject)))]
/// Whether a value is accepted (operator). A guessing oracle otherwise:
/// calls are rate-limited per token and secret, and counted into
/// `secret_validated` audit events ([`crate::validations`]).
pub(crate) async fn validate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<String>,
    JsonBody(body): JsonBody<ValidateBody>,
) -> ApiResult<Response> {
    caller.require(Role::Operator)?;
    rotation_core::secret::check_path(&path)?;
    state.limits.check_validation(&caller.token_id, &path)?;
    let value = SecretValue::new(body.value);
    let engine = engine(&state, &caller);
    let validation = engine.validate_secret(&path, &value).await?;
    state
        .validations
        .count(&caller.token_id, &path, validation.valid, engine.now());
    Ok(Json(validation).into_response())
}

// ---------------------------------------------------------------- stats and outbox

#[utoipa::path(get, path = "/v1/stats", tag = "stats", responses((status = 200, description = "Rotation statistics since the last reset", body = crate::openapi::JsonObject)))]
/// Rotation statistics.
pub(crate) async fn stats(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Viewer)?;
    Ok(Json(engine(&state, &caller).stats().await?).into_response())
}

#[utoipa::path(post, path = "/v1/stats/reset", tag = "stats", responses((status = 200, description = "`{reset_at}`: statistics count from now", body = crate::openapi::JsonObject)))]
/// Resets the statistics (admin).
pub(crate) async fn reset_stats(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let at = engine(&state, &caller).reset_stats().await?;
    Ok(Json(json!({"reset_at": at})).into_response())
}

/// `?pending=true&limit=`.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct OutboxQuery {
    /// Only messages not yet delivered.
    #[serde(default)]
    pending: bool,
    /// Most messages, oldest first (1 to 1000, default 100).
    limit: Option<usize>,
}

#[utoipa::path(get, path = "/v1/outbox", tag = "stats", params(OutboxQuery), responses((status = 200, description = "Notification outbox, oldest first (notifications never carry secret values)", body = Vec<crate::openapi::JsonObject>)))]
/// The notification outbox (admin).
pub(crate) async fn outbox(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<OutboxQuery>,
) -> ApiResult<Response> {
    caller.require(Role::Admin)?;
    let limit = q.limit.unwrap_or(100);
    if limit == 0 || limit > LIST_LIMIT {
        return Err(Error::invalid_input(format!("limit must be 1 to {LIST_LIMIT}")).into());
    }
    Ok(Json(engine(&state, &caller).list_outbox(q.pending, limit).await?).into_response())
}
