//! Canonical bytes: RFC 8785 (JCS) JSON and the signed-record prefix.

use serde::Serialize;

use crate::error::{Error, Result};

/// Domain-separation prefix of every signed trust-chain record.
pub const RECORD_PREFIX: &[u8] = b"rotation-record-v1\n";
/// Domain-separation prefix of every audit event hashed into the chain.
pub const AUDIT_PREFIX: &[u8] = b"rotation-audit-v1\n";

/// RFC 8785 canonical JSON of `value`.
pub fn jcs<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    serde_jcs::to_vec(value).map_err(|e| Error::invalid_input(format!("value cannot be canonicalised: {e}")))
}

/// The bytes an authority signs for a record body:
/// `"rotation-record-v1\n" || JCS(body)`.
pub fn record_signing_bytes(body: &serde_json::Value) -> Result<Vec<u8>> {
    let mut out = RECORD_PREFIX.to_vec();
    out.extend_from_slice(&jcs(body)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8785, section 3.2.2 (values) and 3.2.3 (property sorting).
    #[test]
    fn rfc8785_examples() {
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        let v: serde_json::Value = serde_json::from_str(input).unwrap();
        let expected = "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\"string\":\"\u{20ac}$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
        assert_eq!(String::from_utf8(jcs(&v).unwrap()).unwrap(), expected);

        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let v: serde_json::Value = serde_json::from_str(input).unwrap();
        let expected = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(String::from_utf8(jcs(&v).unwrap()).unwrap(), expected);
    }

    #[test]
    fn signing_bytes_have_prefix() {
        let v = serde_json::json!({"b": 1, "a": "x"});
        assert_eq!(
            record_signing_bytes(&v).unwrap(),
            b"rotation-record-v1\n{\"a\":\"x\",\"b\":1}".to_vec()
        );
    }
}
