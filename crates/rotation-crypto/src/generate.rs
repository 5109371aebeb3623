//! Secret generators (seed 001): `random(length, charset)`, `uuid` (v4) and
//! `hex(length)`, all drawing on the operating system's secure random source.

use ring::rand::{SecureRandom, SystemRandom};
use rotation_core::{Error, Result};
use zeroize::Zeroizing;

/// Longest generated secret.
pub const MAX_LENGTH: usize = 4096;

/// Character sets for [`random`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Charset {
    /// `A-Z a-z 0-9`.
    Alphanumeric,
    /// `A-Z a-z`.
    Alpha,
    /// `0-9`.
    Numeric,
    /// `0-9 a-f`.
    Hex,
    /// Printable ASCII without space.
    Printable,
    /// Exactly these characters (at least 2 distinct ASCII characters).
    Custom(String),
}

impl Charset {
    /// Parses `alphanumeric|alpha|numeric|hex|printable|custom:<chars>`.
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s {
            "alphanumeric" => Charset::Alphanumeric,
            "alpha" => Charset::Alpha,
            "numeric" => Charset::Numeric,
            "hex" => Charset::Hex,
            "printable" => Charset::Printable,
            other => match other.strip_prefix("custom:") {
                Some(chars) => Charset::Custom(chars.to_owned()),
                None => {
                    return Err(Error::invalid_input(format!(
                        "unknown charset {s:?}: use alphanumeric, alpha, numeric, hex, printable or custom:<chars>"
                    )));
                }
            },
        })
    }

    fn alphabet(&self) -> Result<Vec<u8>> {
        let range = |r: std::ops::RangeInclusive<u8>| r.collect::<Vec<u8>>();
        let mut a = match self {
            Charset::Alphanumeric => [range(b'A'..=b'Z'), range(b'a'..=b'z'), range(b'0'..=b'9')].concat(),
            Charset::Alpha => [range(b'A'..=b'Z'), range(b'a'..=b'z')].concat(),
            Charset::Numeric => range(b'0'..=b'9'),
            Charset::Hex => [range(b'0'..=b'9'), range(b'a'..=b'f')].concat(),
            Charset::Printable => range(b'!'..=b'~'),
            Charset::Custom(chars) => {
                if !chars.is_ascii() {
                    return Err(Error::invalid_input("custom charset must be ASCII"));
                }
                chars.bytes().collect()
            }
        };
        a.sort_unstable();
        a.dedup();
        if a.len() < 2 {
            return Err(Error::invalid_input("charset needs at least 2 distinct characters"));
        }
        Ok(a)
    }
}

fn check_length(length: usize) -> Result<()> {
    if length == 0 || length > MAX_LENGTH {
        return Err(Error::invalid_input(format!(
            "length must be 1 to {MAX_LENGTH}, got {length}"
        )));
    }
    Ok(())
}

fn fill(rng: &SystemRandom, out: &mut [u8]) -> Result<()> {
    rng.fill(out)
        .map_err(|_| Error::backend("the operating system's random source failed"))
}

/// `length` characters drawn uniformly from `charset` (rejection sampling,
/// no modulo bias).
pub fn random(rng: &SystemRandom, length: usize, charset: &Charset) -> Result<Zeroizing<String>> {
    check_length(length)?;
    let alphabet = charset.alphabet()?;
    let n = alphabet.len();
    let limit = 256 - (256 % n);
    let mut out = Zeroizing::new(String::with_capacity(length));
    let mut buf = Zeroizing::new([0u8; 64]);
    while out.len() < length {
        fill(rng, buf.as_mut())?;
        for &b in buf.iter() {
            if (b as usize) < limit {
                out.push(alphabet[b as usize % n] as char);
                if out.len() == length {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// A random (version 4) UUID.
pub fn uuid_v4(rng: &SystemRandom) -> Result<String> {
    let mut bytes = [0u8; 16];
    fill(rng, &mut bytes)?;
    Ok(uuid::Builder::from_random_bytes(bytes).into_uuid().to_string())
}

/// `length` lowercase hex characters.
pub fn hex(rng: &SystemRandom, length: usize) -> Result<Zeroizing<String>> {
    random(rng, length, &Charset::Hex)
}
