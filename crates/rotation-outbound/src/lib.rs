//! `rotation-outbound`: outbound HTTP only to allowed addresses, for the
//! adapters that send requests where an operator points them (`http:`
//! verification tests in `rotation-targets`, webhooks in
//! `rotation-notify`). The rules are [`rotation_core::outbound`]'s; this
//! crate is the reqwest side of them, written once for both adapters
//! (which may not depend on each other).
//!
//! A request's host is resolved once, by [`Guard`] (a
//! [`reqwest::dns::Resolve`]), which hands reqwest only the addresses the
//! allowlist permits: reqwest connects to exactly those, so a second lookup
//! (DNS rebinding) cannot change where the request goes. IP-literal URLs
//! never reach a resolver and are checked before the client is built.
//! Proxies are off (a proxy would resolve the name itself).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use rotation_core::outbound::UrlAllowlist;
use rotation_core::{Error, Result};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Longest wait for a name to resolve.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A refused destination, carried through reqwest's error chain.
#[derive(Debug)]
struct Refused(Error);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.message)
    }
}

impl std::error::Error for Refused {}

/// Resolves the one host of a request (on its port) to the addresses the
/// allowlist permits.
#[derive(Debug)]
struct Guard {
    host: String,
    port: u16,
    allowlist: Arc<UrlAllowlist>,
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let (host, port, allowlist) = (self.host.clone(), self.port, self.allowlist.clone());
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let ips = lookup(&name, port).await.map_err(|e| BoxError::from(e.message))?;
            let allowed = allowlist
                .filter(&host, port, &ips)
                .map_err(|e| BoxError::from(Refused(e)))?;
            let addrs: Addrs = Box::new(allowed.into_iter().map(move |ip| SocketAddr::new(ip, port)));
            Ok::<Addrs, BoxError>(addrs)
        })
    }
}

/// The addresses of `host` (`backend_unavailable` when it does not resolve in time).
async fn lookup(host: &str, port: u16) -> Result<Vec<IpAddr>> {
    match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| a.ip()).collect()),
        Ok(Err(e)) => Err(Error::backend(format!("cannot resolve {host}: {e}"))),
        Err(_) => Err(Error::backend(format!(
            "cannot resolve {host}: no answer within {} s",
            RESOLVE_TIMEOUT.as_secs()
        ))),
    }
}

/// The host of `url` and its port (scheme default when not given).
fn host_port(url: &url::Url) -> Result<(url::Host<&str>, u16)> {
    match (url.host(), url.port_or_known_default()) {
        (Some(host), Some(port)) => Ok((host, port)),
        _ => Err(Error::invalid_input("the URL has no host or port")),
    }
}

/// Checks an IP-literal host (a name is checked when it resolves).
fn check_literal(allowlist: &UrlAllowlist, host: &url::Host<&str>, port: u16) -> Result<()> {
    let ip = match host {
        url::Host::Ipv4(v4) => IpAddr::V4(*v4),
        url::Host::Ipv6(v6) => IpAddr::V6(*v6),
        url::Host::Domain(_) => return Ok(()),
    };
    allowlist.check(&host.to_string(), port, ip)
}

/// A client for requests to `url` only, from `builder`: its host resolves
/// through [`Guard`], proxies are off; `invalid_policy` at once for a
/// refused IP-literal host.
pub fn client(
    builder: reqwest::ClientBuilder,
    url: &url::Url,
    allowlist: &Arc<UrlAllowlist>,
) -> Result<reqwest::Client> {
    let (host, port) = host_port(url)?;
    check_literal(allowlist, &host, port)?;
    let guard = Guard {
        host: host.to_string(),
        port,
        allowlist: allowlist.clone(),
    };
    builder
        .no_proxy()
        .dns_resolver(Arc::new(guard))
        .build()
        .map_err(|e| Error::backend(format!("cannot build an HTTP client: {}", e.without_url())))
}

/// The refusal inside a failed request, if a destination was refused.
pub fn refusal(e: &reqwest::Error) -> Option<Error> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(Refused(inner)) = s.downcast_ref::<Refused>() {
            return Some(Error::new(inner.reason, inner.message.clone()));
        }
        source = s.source();
    }
    None
}

/// Whether a request to `url` may be sent now: `Ok` when its host is
/// public or allowed, or does not resolve (it is checked again when
/// sent); the `invalid_policy` error of [`UrlAllowlist::check`] when every
/// address it resolves to is refused.
pub async fn check_url(url: &url::Url, allowlist: &UrlAllowlist) -> Result<()> {
    let (host, port) = host_port(url)?;
    check_literal(allowlist, &host, port)?;
    if let url::Host::Domain(name) = host {
        let Ok(ips) = lookup(name, port).await else {
            return Ok(());
        };
        allowlist.filter(name, port, &ips)?;
    }
    Ok(())
}
