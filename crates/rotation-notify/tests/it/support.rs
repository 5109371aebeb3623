//! Real servers on 127.0.0.1 ephemeral ports: an HTTP receiver that records
//! requests, an SMTP server that captures messages, and an HMAC check that
//! does not share code with the crate under test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, KeyInit, Mac};
use rotation_core::ids::RotationId;
use rotation_core::ports::{CryptoProvider, Notification};
use sha2::Sha256;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub(crate) const SECRET: &str = "whsec-test-0123456789-abcdef";

/// The allowlist of these tests: their receivers listen on 127.0.0.1.
pub(crate) fn loopback() -> Arc<rotation_core::outbound::UrlAllowlist> {
    Arc::new(rotation_core::outbound::UrlAllowlist::parse("127.0.0.1").unwrap())
}

pub(crate) fn crypto() -> Arc<dyn CryptoProvider> {
    Arc::new(rotation_crypto::RingCrypto::new())
}

pub(crate) fn notification() -> Notification {
    Notification {
        event: "key_rotated".into(),
        target: "keyring:payments".into(),
        rotation_id: Some(RotationId::generate()),
        details: serde_json::json!({"previous_version": 1, "new_version": 2}),
    }
}

/// One request the HTTP receiver saw.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
}

impl Recorded {
    pub(crate) fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .to_str()
            .unwrap()
    }
}

#[derive(Clone)]
struct HttpState {
    statuses: Arc<Vec<u16>>,
    seen: Arc<Mutex<Vec<Recorded>>>,
}

/// An HTTP receiver answering the i-th request with `statuses[i]` (the last
/// one repeats; 200 when empty).
pub(crate) async fn http_receiver(statuses: Vec<u16>) -> (SocketAddr, Arc<Mutex<Vec<Recorded>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let state = HttpState {
        statuses: Arc::new(statuses),
        seen: seen.clone(),
    };
    async fn record(
        State(state): State<HttpState>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let index = {
            let mut seen = state.seen.lock().unwrap();
            seen.push(Recorded {
                path: uri.to_string(),
                headers,
                body: body.to_vec(),
            });
            seen.len() - 1
        };
        let status = state
            .statuses
            .get(index)
            .or(state.statuses.last())
            .copied()
            .unwrap_or(200);
        StatusCode::from_u16(status).unwrap()
    }
    let app = axum::Router::new().fallback(record).with_state(state);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, seen)
}

/// An address on which nothing listens (connection refused).
pub(crate) async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// Verifies a request's signature with the `hmac` crate, in constant time.
pub(crate) fn verify_signature(secret: &str, request: &Recorded) -> bool {
    let timestamp = request.header("x-rotation-timestamp");
    let Some(hex) = request.header("x-rotation-signature").strip_prefix("sha256=") else {
        return false;
    };
    if hex.len() != 64 || hex.chars().any(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        return false;
    }
    let expected: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&request.body);
    mac.verify_slice(&expected).is_ok()
}

/// One message the SMTP server accepted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Mail {
    pub(crate) ehlo: String,
    pub(crate) auth: Option<String>,
    pub(crate) from: String,
    pub(crate) rcpt: Vec<String>,
    pub(crate) data: String,
}

impl Mail {
    /// A header's value, unfolded.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        let (head, _) = self.data.split_once("\r\n\r\n")?;
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((key, v)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }

    /// The body (after the blank line), as sent.
    pub(crate) fn body(&self) -> &str {
        self.data.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("")
    }
}

/// A small SMTP server (EHLO/HELO, AUTH, MAIL, RCPT, DATA, RSET, NOOP,
/// QUIT). With `accept_auth == false` every AUTH is refused with 535.
pub(crate) async fn smtp_server(accept_auth: bool) -> (SocketAddr, Arc<Mutex<Vec<Mail>>>) {
    let mails = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = mails.clone();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read);
                let mut mail = Mail::default();
                write.write_all(b"220 127.0.0.1 ESMTP test\r\n").await.unwrap();
                let mut line = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let command = line.trim_end().to_owned();
                    let upper = command.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") {
                        mail.ehlo = command[4..].trim().to_owned();
                        b"250-127.0.0.1\r\n250-8BITMIME\r\n250-AUTH PLAIN LOGIN\r\n250 SMTPUTF8\r\n"
                    } else if upper.starts_with("HELO") {
                        mail.ehlo = command[4..].trim().to_owned();
                        b"250 127.0.0.1\r\n"
                    } else if upper.starts_with("AUTH") {
                        mail.auth = Some(command.clone());
                        if accept_auth {
                            b"235 2.7.0 Authentication successful\r\n"
                        } else {
                            b"535 5.7.8 Authentication credentials invalid\r\n"
                        }
                    } else if upper.starts_with("MAIL FROM:") {
                        mail.from = command[10..].trim().to_owned();
                        b"250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        mail.rcpt.push(command[8..].trim().to_owned());
                        b"250 OK\r\n"
                    } else if upper == "DATA" {
                        write
                            .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                            .await
                            .unwrap();
                        let mut data = String::new();
                        loop {
                            line.clear();
                            if lines.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == ".\r\n" {
                                break;
                            }
                            let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                            data.push_str(unstuffed);
                        }
                        mail.data = data;
                        store.lock().unwrap().push(std::mem::take(&mut mail));
                        b"250 OK queued\r\n"
                    } else if upper == "RSET" || upper == "NOOP" {
                        b"250 OK\r\n"
                    } else if upper == "QUIT" {
                        write.write_all(b"221 Bye\r\n").await.unwrap();
                        return;
                    } else {
                        b"502 Command not implemented\r\n"
                    };
                    write.write_all(reply).await.unwrap();
                }
            });
        }
    });
    (addr, mails)
}
