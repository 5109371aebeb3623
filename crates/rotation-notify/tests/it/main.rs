//! Integration tests of the notifier adapters over real sockets on 127.0.0.1.

mod config;
mod router;
mod smtp;
mod support;
mod webhook;
