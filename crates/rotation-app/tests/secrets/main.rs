//! Secret rotation through `rotation_app::engine` against real parts: a
//! PostgreSQL server (`DATABASE_URL`, required), the certificate issuer,
//! rotation scripts, webhook and SMTP listeners on 127.0.0.1.

#[allow(dead_code)]
#[path = "../support/mod.rs"]
mod support;

mod api_key;
mod certificate;
mod database;
mod notifications;
mod script;
