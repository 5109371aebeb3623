//! The OpenAPI 3.1 document served at `/openapi.json`, generated from the
//! handlers' `#[utoipa::path]` annotations and their request and view types.

use std::sync::OnceLock;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rotation_core::Reason;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{RefOr, ResponseBuilder};
use utoipa::{OpenApi, PartialSchema, ToSchema};

use crate::{api, secrets};

/// Every reason an error body may carry.
const REASONS: &[Reason] = &Reason::ALL;

/// A JSON object whose fields the document does not spell out (engine
/// results serialised as they are).
pub(crate) struct JsonObject;

impl PartialSchema for JsonObject {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new().schema_type(Type::Object).into()
    }
}

impl ToSchema for JsonObject {}

/// The error body: `{reason, message, authority_id?, rotation_id?}`.
pub(crate) struct ErrorBody;

impl PartialSchema for ErrorBody {
    fn schema() -> RefOr<Schema> {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("reason", string().enum_values(Some(REASONS.iter().map(|r| r.as_str()))))
            .required("reason")
            .property("message", string())
            .required("message")
            .property("authority_id", string())
            .property("rotation_id", string())
            .into()
    }
}

impl ToSchema for ErrorBody {}

/// The API's document.
#[derive(OpenApi)]
#[openapi(
    paths(
        api::healthz, api::readyz, api::metrics_text, serve,
        api::list_authorities, api::create_authority, api::show_authority, api::rotate_authority,
        api::schedule_authority, api::authority_status, api::revoke_key, api::jwks,
        api::issue_chain, api::list_chains, api::verify_all_chains, api::verify_chain,
        api::list_keyrings, api::create_keyring, api::keyring_info, api::rotate_keyring,
        api::migrate_keyring, api::keyring_report, api::encrypt_value, api::decrypt_value,
        api::list_policies, api::show_policy, api::set_policy, api::remove_policy,
        api::list_schedules, api::add_schedule, api::run_due, api::schedule_plan, api::resume_schedule,
        secrets::list_secrets, secrets::put_secret, secrets::read_secret, secrets::secret_history,
        secrets::secret_status, secrets::rotate_secret, secrets::validate_secret,
        secrets::stats, secrets::reset_stats, secrets::outbox,
        api::audit_list, api::audit_verify, api::audit_checkpoint, api::audit_proof, api::audit_consistency, api::report,
        api::create_token, api::list_tokens, api::revoke_token
    ),
    components(schemas(ErrorBody, JsonObject)),
    modifiers(&Common),
    info(title = "rotation-server", description = "Credential rotation: authorities, trust chains, keyrings, secrets, policies, schedules, statistics, audit and tokens.\n\nSecrets are addressed as `/v1/secrets/{path}` where the path may contain `/` (e.g. `/v1/secrets/db/prod/app`; `%2F` works too). Actions on a secret are a suffix after a colon, which a secret path never contains: `GET /v1/secrets/{path}:history`, `GET /v1/secrets/{path}:status`, `POST /v1/secrets/{path}:rotate`, `POST /v1/secrets/{path}:validate`.")
)]
struct ApiDoc;

/// Adds the bearer scheme, the security requirement of every `/v1` route
/// but the JWKS, and the error responses every operation may give.
struct Common;

impl utoipa::Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name("ErrorBody"))))
                        .build(),
                )
                .build()
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let secured = path.starts_with("/v1/") && !path.ends_with("/jwks.json");
            let operations: [&mut Option<Operation>; 4] =
                [&mut item.get, &mut item.post, &mut item.put, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                if secured {
                    operation.security = Some(vec![SecurityRequirement::new("bearer", Vec::<String>::new())]);
                    responses.insert(
                        "401".into(),
                        RefOr::T(error("Missing, unknown, expired or revoked token")),
                    );
                    responses.insert("403".into(), RefOr::T(error("The token's role may not do this")));
                    responses.insert(
                        "429".into(),
                        RefOr::T(error(
                            "Too many requests from this token (reason rate_limited; wait the seconds of Retry-After)",
                        )),
                    );
                }
                if path.starts_with("/v1/") {
                    responses.insert("4XX".into(), RefOr::T(error("Invalid request, not found or conflict")));
                }
                responses.insert("5XX".into(), RefOr::T(error("Backend unavailable or internal failure")));
            }
        }
    }
}

/// The document as JSON, built once.
pub(crate) fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut doc = ApiDoc::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc.to_json().unwrap_or_else(|_| "{}".to_owned())
    })
}

/// Serves the OpenAPI document (no authentication).
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, description = "This document", body = JsonObject)))]
pub(crate) async fn serve() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        document(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_1_with_every_reason() {
        let doc: serde_json::Value = serde_json::from_str(document()).expect("JSON");
        assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));
        let reasons = &doc["components"]["schemas"]["ErrorBody"]["properties"]["reason"]["enum"];
        assert_eq!(reasons.as_array().map(Vec::len), Some(REASONS.len()));
    }
}
