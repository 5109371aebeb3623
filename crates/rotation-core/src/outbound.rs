//! Where outbound requests may go: `http:<URL>` verification tests and
//! webhook notifications are sent to addresses that operators (or API
//! callers) name, so they must not reach the machine itself, the internal
//! network or a cloud metadata service (`169.254.169.254`) unless the
//! operator allowed it.
//!
//! This module is the one copy of the rules both adapters
//! (`rotation-targets`, `rotation-notify`) apply after resolving a host:
//! [`forbidden_range`] classifies an address, [`UrlAllowlist`] is the
//! operator's exceptions (`ROTATION_URL_ALLOWLIST`), and
//! [`UrlAllowlist::check`] decides for one resolved address. No I/O here:
//! the adapters resolve names and read nothing from the environment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::LazyLock;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::{Error, Reason, Result};

/// The environment variable the binaries read the allowlist from.
pub const URL_ALLOWLIST_ENV: &str = "ROTATION_URL_ALLOWLIST";

/// The URL an HTTP verification test sends each new value to, or `None`
/// for another test. Such a test is named `http:<URL>` or by the URL
/// itself (`http://…`, `https://…`); the scheme is matched without regard
/// to case, so every spelling a verifier might accept counts here (the
/// rule that decides who may set such a test relies on it).
pub fn http_test_url(name: &str) -> Option<&str> {
    let name = name.trim();
    let has_prefix = |prefix: &str| name.get(..prefix.len()).is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    if has_prefix("http://") || has_prefix("https://") {
        Some(name)
    } else if has_prefix("http:") {
        name.get(5..)
    } else {
        None
    }
}

/// IPv4 ranges outbound requests may not reach, with what they are.
static FORBIDDEN_V4: LazyLock<Vec<(Ipv4Net, &'static str)>> = LazyLock::new(|| {
    [
        ("0.0.0.0/8", "unspecified (this network)"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "shared (CGNAT)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local (cloud metadata)"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "IETF protocol assignment"),
        ("192.0.2.0/24", "documentation"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "benchmarking"),
        ("198.51.100.0/24", "documentation"),
        ("203.0.113.0/24", "documentation"),
        ("224.0.0.0/4", "multicast"),
        ("255.255.255.255/32", "broadcast"),
        ("240.0.0.0/4", "reserved"),
    ]
    .into_iter()
    .filter_map(|(net, what)| Ipv4Net::from_str(net).ok().map(|n| (n, what)))
    .collect()
});

/// IPv6 ranges outbound requests may not reach (those embedding an IPv4
/// address are judged by that address, see [`forbidden_range`]).
static FORBIDDEN_V6: LazyLock<Vec<(Ipv6Net, &'static str)>> = LazyLock::new(|| {
    [
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("100::/64", "discard-only"),
        ("2001:db8::/32", "documentation"),
        ("fc00::/7", "unique local (private)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "site-local"),
        ("ff00::/8", "multicast"),
    ]
    .into_iter()
    .filter_map(|(net, what)| Ipv6Net::from_str(net).ok().map(|n| (n, what)))
    .collect()
});

/// The IPv4 address an IPv6 address carries, for the forms that reach it:
/// IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), NAT64
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:AABB:CCDD::`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0, 0, 0, 0, 0, 0] && !(s[6] == 0 && s[7] <= 1) {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// What kind of internal address `ip` is (`"loopback"`, `"private"`,
/// `"link-local (cloud metadata)"`, ...), or `None` for a public address.
///
/// Refused: unspecified, loopback, private (RFC 1918, `fc00::/7`),
/// link-local (`169.254.0.0/16`, `fe80::/10`), shared CGNAT
/// (`100.64.0.0/10`), multicast, broadcast, reserved, documentation and
/// benchmarking ranges, and IPv6 addresses embedding any of these IPv4
/// addresses (IPv4-mapped, IPv4-compatible, NAT64, 6to4).
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => FORBIDDEN_V4
            .iter()
            .find(|(net, _)| net.contains(&v4))
            .map(|(_, what)| *what),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_v4(v6) {
                return forbidden_range(IpAddr::V4(v4));
            }
            FORBIDDEN_V6
                .iter()
                .find(|(net, _)| net.contains(&v6))
                .map(|(_, what)| *what)
        }
    }
}

/// One exception of the allowlist.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A host name, any port (lower case, no trailing dot).
    Host(String),
    /// A host name on one port.
    HostPort(String, u16),
    /// Addresses (an IP is a /32 or /128), any port.
    Net(IpNet),
    /// One address on one port.
    IpPort(IpAddr, u16),
}

/// The operator's exceptions to [`forbidden_range`]: `ROTATION_URL_ALLOWLIST`,
/// comma-separated entries, each
///
/// - a host name (`hooks.internal`): that name, any port;
/// - `host:port` (`hooks.internal:8443`): that name on that port;
/// - an IP address (`127.0.0.1`, `::1`) or a CIDR (`10.0.0.0/8`,
///   `fd00::/8`): any name resolving into it, any port;
/// - `ip:port` (`127.0.0.1:9000`, `[::1]:9000`): that address on that port.
///
/// An address is allowed when it is public, or when an entry names the
/// URL's host (as written in the URL, case-insensitive) or holds the
/// resolved address. The empty allowlist (the default) allows public
/// addresses only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlAllowlist {
    entries: Vec<Entry>,
}

/// `host` in lower case without a trailing dot (`Example.COM.` → `example.com`).
fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// IPv4-mapped IPv6 addresses as IPv4, so entries match either form.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl UrlAllowlist {
    /// Parses `ROTATION_URL_ALLOWLIST` text (see [`UrlAllowlist`]); empty
    /// entries are skipped. A malformed entry is `invalid_input` naming it.
    pub fn parse(text: &str) -> Result<Self> {
        let mut entries = Vec::new();
        for raw in text.split(',') {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            entries.push(Self::entry(entry)?);
        }
        Ok(UrlAllowlist { entries })
    }

    fn entry(entry: &str) -> Result<Entry> {
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "{URL_ALLOWLIST_ENV}: entry {:?} {why}; use comma-separated hosts, host:port, IP addresses, ip:port or CIDRs (10.0.0.0/8)",
                entry.chars().take(80).collect::<String>()
            ))
        };
        if entry.contains('/') {
            let net = IpNet::from_str(entry).map_err(|_| bad("is not a CIDR"))?;
            return Ok(Entry::Net(net.trunc()));
        }
        if let Ok(ip) = IpAddr::from_str(entry) {
            return Ok(Entry::Net(IpNet::from(canonical(ip))));
        }
        if let Ok(addr) = std::net::SocketAddr::from_str(entry) {
            return Ok(Entry::IpPort(canonical(addr.ip()), addr.port()));
        }
        let (host, port) = match entry.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| bad("has an invalid port"))?)),
            None => (entry, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
            && !host.starts_with('.');
        if !host_ok {
            return Err(bad("is not a host name"));
        }
        let host = normal_host(host);
        Ok(match port {
            Some(port) => Entry::HostPort(host, port),
            None => Entry::Host(host),
        })
    }

    /// Whether no exception is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry covers a request to `host` (as written in the URL;
    /// an IP literal is matched as an address) on `port` that resolved to `ip`.
    pub fn allows(&self, host: &str, port: u16, ip: IpAddr) -> bool {
        let host = normal_host(host.trim_start_matches('[').trim_end_matches(']'));
        let ip = canonical(ip);
        self.entries.iter().any(|e| match e {
            Entry::Host(h) => *h == host,
            Entry::HostPort(h, p) => *h == host && *p == port,
            Entry::Net(net) => net.contains(&ip),
            Entry::IpPort(a, p) => *a == ip && *p == port,
        })
    }

    /// Decides for one resolved address of a request to `host:port`: `Ok`
    /// for a public address or one the allowlist covers, otherwise an
    /// `invalid_policy` error saying what kind of address it is and how to
    /// allow it. Callers prefix the message with what was being sent where
    /// (a URL without userinfo or query).
    pub fn check(&self, host: &str, port: u16, ip: IpAddr) -> Result<()> {
        match forbidden_range(ip) {
            Some(what) if !self.allows(host, port, ip) => Err(Error::new(
                Reason::InvalidPolicy,
                format!(
                    "{host} resolves to {ip}, a {what} address: requests to loopback, private, link-local and other \
                     internal addresses are refused unless {URL_ALLOWLIST_ENV} lists the host, host:port or a CIDR holding it"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The addresses of `resolved` a request to `host:port` may use, in
    /// order; the error of [`UrlAllowlist::check`] for the first refused
    /// one when none may be used (also when `resolved` is empty: then a
    /// `backend_unavailable` error). Used by the adapters' DNS resolvers:
    /// a name that resolves to both public and internal addresses keeps
    /// only the public ones.
    pub fn filter(&self, host: &str, port: u16, resolved: &[IpAddr]) -> Result<Vec<IpAddr>> {
        let mut allowed = Vec::new();
        let mut refused = None;
        for ip in resolved {
            match self.check(host, port, *ip) {
                Ok(()) => allowed.push(*ip),
                Err(e) => {
                    refused.get_or_insert(e);
                }
            }
        }
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(e)) => Err(e),
            (true, None) => Err(Error::backend(format!("{host} resolves to no address"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::http_test_url;

    #[test]
    fn http_tests_are_recognised_in_every_spelling() {
        assert_eq!(http_test_url("http:https://x.example/h"), Some("https://x.example/h"));
        assert_eq!(http_test_url("https://x.example/h"), Some("https://x.example/h"));
        assert_eq!(http_test_url("HTTPS://x.example/h"), Some("HTTPS://x.example/h"));
        assert_eq!(http_test_url("HTTP:http://x.example"), Some("http://x.example"));
        assert_eq!(http_test_url(" http://x.example "), Some("http://x.example"));
        assert_eq!(http_test_url("login"), None);
        assert_eq!(http_test_url("script"), None);
    }

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_classified() {
        for (addr, what) in [
            ("127.0.0.1", "loopback"),
            ("127.8.9.10", "loopback"),
            ("10.0.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("0.0.0.0", "unspecified (this network)"),
            ("255.255.255.255", "broadcast"),
            ("224.0.0.251", "multicast"),
            ("192.0.2.7", "documentation"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd12:3456::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
            ("::ffff:10.1.2.3", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
            ("2002:7f00:1::", "loopback"),
            ("::127.0.0.1", "loopback"),
        ] {
            assert_eq!(forbidden_range(ip(addr)), Some(what), "{addr}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(forbidden_range(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_allowlist_parses_hosts_ports_ips_and_cidrs() {
        let a = UrlAllowlist::parse(" hooks.Internal. , api.internal:8443,127.0.0.1, 10.0.0.0/8,[::1]:9000,fd00::/8,")
            .unwrap();
        assert!(!a.is_empty());
        // Host entries match the name in the URL, whatever it resolves to.
        assert!(a.allows("HOOKS.internal", 1, ip("192.168.0.9")));
        assert!(a.check("hooks.internal", 443, ip("192.168.0.9")).is_ok());
        // host:port only on that port.
        assert!(a.allows("api.internal", 8443, ip("10.9.9.9")));
        assert!(!a.allows("api.internal", 443, ip("192.168.9.9")));
        // An IP is its own /32; CIDRs hold addresses; mapped forms match too.
        assert!(a.allows("localhost", 8080, ip("127.0.0.1")));
        assert!(a.allows("x", 1, ip("::ffff:127.0.0.1")));
        assert!(!a.allows("x", 1, ip("127.0.0.2")));
        assert!(a.allows("x", 1, ip("10.200.1.1")));
        assert!(a.allows("x", 1, ip("fd00::5")));
        assert!(a.allows("[::1]", 9000, ip("::1")));
        assert!(!a.allows("[::1]", 9001, ip("::1")));
        assert!(UrlAllowlist::parse("").unwrap().is_empty());
        assert!(UrlAllowlist::parse(" , ").unwrap().is_empty());
        for bad in ["10.0.0.0/33", "host:port", "host:99999", "bad host", "a/b", "http://x"] {
            let e = UrlAllowlist::parse(&format!("ok.example,{bad}")).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidInput, "{bad}");
            assert!(
                e.message.contains(URL_ALLOWLIST_ENV) && e.message.contains(bad),
                "{}",
                e.message
            );
        }
    }

    #[test]
    fn check_refuses_internal_addresses_with_a_clear_error() {
        let none = UrlAllowlist::default();
        assert!(none.check("example.com", 443, ip("93.184.216.34")).is_ok());
        let e = none.check("metadata", 80, ip("169.254.169.254")).unwrap_err();
        assert_eq!(e.reason, Reason::InvalidPolicy);
        assert!(
            e.message.contains("169.254.169.254") && e.message.contains("link-local"),
            "{}",
            e.message
        );
        assert!(e.message.contains(URL_ALLOWLIST_ENV), "{}", e.message);

        // A name with public and internal addresses keeps the public ones.
        let mixed = [ip("127.0.0.1"), ip("93.184.216.34")];
        assert_eq!(none.filter("h", 80, &mixed).unwrap(), vec![ip("93.184.216.34")]);
        assert_eq!(
            none.filter("h", 80, &[ip("127.0.0.1")]).unwrap_err().reason,
            Reason::InvalidPolicy
        );
        assert_eq!(
            none.filter("h", 80, &[]).unwrap_err().reason,
            Reason::BackendUnavailable
        );
        let local = UrlAllowlist::parse("127.0.0.0/8").unwrap();
        assert_eq!(local.filter("h", 80, &mixed).unwrap(), mixed.to_vec());
    }
}
