//! Integration tests of `rotation-server` over real sockets: the server
//! runs in-process on 127.0.0.1:0 against a temporary SQLite store (one
//! test on PostgreSQL from `DATABASE_URL`), and reqwest calls it.

mod api;
mod audit;
mod auth;
mod binary;
mod config_file;
mod jwks_revocation;
mod openapi;
mod ops;
mod postgres;
mod prepublish;
mod replicas;
mod secrets;
mod security;
mod support;
mod tls;
mod vault_flags;
