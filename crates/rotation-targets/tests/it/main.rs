//! Tests of the adapters against real parts: a PostgreSQL server
//! (`DATABASE_URL`, a superuser URL; `cargo xtask test` starts one), shell
//! scripts in a temporary directory and a local HTTP listener.

mod http;
mod postgres;
mod script;
mod support;
