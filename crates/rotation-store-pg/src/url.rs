//! Store URLs in messages: the password is replaced by `***`, and any text
//! that might echo it (a driver error) is scrubbed before it is shown.

/// `url` with the password of its user-info part replaced by `***`
/// (`postgres://user:***@host:5432/db`). A URL without a password is
/// returned as it is; text that is not a URL is returned unchanged.
///
/// Use it wherever a store URL appears in output, logs or errors.
pub fn redact_url(url: &str) -> String {
    match password_span(url) {
        Some((start, end)) => format!("{}***{}", &url[..start], &url[end..]),
        None => url.to_owned(),
    }
}

/// Byte range of the password in `scheme://user:password@host/...`.
fn password_span(url: &str) -> Option<(usize, usize)> {
    let authority_start = url.find("://")? + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    // The host follows the last '@'; a password may itself contain '@' only
    // percent-encoded, but be lenient with unencoded ones.
    let at = authority.rfind('@')?;
    let userinfo = &authority[..at];
    let colon = userinfo.find(':')?;
    Some((authority_start + colon + 1, authority_start + at))
}

/// The password of `url` as written and percent-decoded (both may appear
/// in a driver's message), if it has a non-empty one.
fn passwords(url: &str) -> Vec<String> {
    let Some((start, end)) = password_span(url) else {
        return Vec::new();
    };
    let raw = &url[start..end];
    if raw.is_empty() {
        return Vec::new();
    }
    let mut out = vec![raw.to_owned()];
    if let Some(decoded) = percent_decode(raw)
        && decoded != raw
        && !decoded.is_empty()
    {
        out.push(decoded);
    }
    out
}

/// Removes the password of `url` from `message` (e.g. a driver error).
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for p in passwords(url) {
        out = out.replace(&p, "***");
    }
    out
}

/// Decodes `%XX` escapes; `None` if the result is not UTF-8 or an escape is bad.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_the_password_only() {
        assert_eq!(
            redact_url("postgres://rot:s3cret@127.0.0.1:5432/db?sslmode=disable"),
            "postgres://rot:***@127.0.0.1:5432/db?sslmode=disable"
        );
        assert_eq!(redact_url("postgresql://rot:p%40ss@h/db"), "postgresql://rot:***@h/db");
        assert_eq!(redact_url("postgres://rot:a@b@h/db"), "postgres://rot:***@h/db");
        assert_eq!(redact_url("postgres://rot@h/db"), "postgres://rot@h/db");
        assert_eq!(redact_url("postgres://h:5432/db"), "postgres://h:5432/db");
        assert_eq!(redact_url("not a url"), "not a url");
        assert_eq!(redact_url("postgres://rot:@h/db"), "postgres://rot:***@h/db");
    }

    #[test]
    fn scrubs_raw_and_decoded_passwords() {
        let url = "postgres://rot:p%40ss%20word@h/db";
        assert_eq!(scrub("bad p%40ss%20word and p@ss word", url), "bad *** and ***");
        assert_eq!(scrub("nothing here", "postgres://h/db"), "nothing here");
    }
}
