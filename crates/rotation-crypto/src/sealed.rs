//! The sealed-value format (see `docs/FORMATS.md`).
//!
//! Binary: `[format = 0x01][key_version: u32 big-endian][nonce: 12][ciphertext || tag: 16]`,
//! AES-256-GCM. The 5-byte header is authenticated too: it is prepended to
//! the caller's associated data, so a changed version byte fails to open.
//! Text form: `rot:v<N>:<base64url of the binary form, no padding>`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rotation_core::ports::DataKey;
use rotation_core::{Error, Result};
use zeroize::Zeroizing;

/// Format byte of the current sealed-value layout.
pub const FORMAT_V1: u8 = 0x01;
/// Header length: format byte and key version.
pub const HEADER_LEN: usize = 5;
/// AES-GCM tag length.
pub const TAG_LEN: usize = 16;
/// Smallest possible sealed value (empty plaintext).
pub const MIN_LEN: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

fn aead_key(key: &DataKey) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.expose()).expect("32-byte key"))
}

fn full_aad(header: &[u8], associated_data: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(header.len() + associated_data.len());
    aad.extend_from_slice(header);
    aad.extend_from_slice(associated_data);
    aad
}

/// Seals `plaintext` with an explicit nonce (callers draw nonces from the
/// secure random source, a batch at a time).
pub fn seal_with_nonce(
    key: &DataKey,
    version: u32,
    nonce: [u8; NONCE_LEN],
    associated_data: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(MIN_LEN + plaintext.len());
    out.push(FORMAT_V1);
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&nonce);
    let aad = full_aad(&out[..HEADER_LEN], associated_data);
    let mut in_out = plaintext.to_vec();
    let tag = aead_key(key)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut in_out)
        .map_err(|_| Error::new(rotation_core::Reason::InvalidInput, "value too large to seal"))?;
    out.extend_from_slice(&in_out);
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The key version in a sealed value's header, without opening it.
pub fn key_version(sealed: &[u8]) -> Result<u32> {
    if sealed.len() < MIN_LEN {
        return Err(Error::tampered(format!(
            "sealed value is {} bytes, shorter than the minimum {MIN_LEN}",
            sealed.len()
        )));
    }
    if sealed[0] != FORMAT_V1 {
        return Err(Error::tampered(format!(
            "unknown sealed-value format 0x{:02x}",
            sealed[0]
        )));
    }
    Ok(u32::from_be_bytes([sealed[1], sealed[2], sealed[3], sealed[4]]))
}

/// Opens a sealed value. Truncation, any flipped bit, a wrong key or wrong
/// associated data is a `tampered` error.
pub fn open(key: &DataKey, associated_data: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    key_version(sealed)?;
    let aad = full_aad(&sealed[..HEADER_LEN], associated_data);
    let nonce: [u8; NONCE_LEN] = sealed[HEADER_LEN..HEADER_LEN + NONCE_LEN]
        .try_into()
        .expect("length checked");
    let mut in_out = Zeroizing::new(sealed[HEADER_LEN + NONCE_LEN..].to_vec());
    let len = aead_key(key)
        .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut in_out)
        .map_err(|_| Error::tampered("sealed value does not open: modified, wrong key or wrong associated data"))?
        .len();
    in_out.truncate(len);
    Ok(in_out)
}

/// Text form: `rot:v<N>:<base64url>`.
pub fn to_text(sealed: &[u8]) -> Result<String> {
    let version = key_version(sealed)?;
    Ok(format!("rot:v{version}:{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// Parses the text form; the version in the prefix must match the header.
pub fn from_text(text: &str) -> Result<Vec<u8>> {
    let bad = || Error::invalid_input("not a sealed value: expected rot:v<N>:<base64url>");
    let rest = text.strip_prefix("rot:v").ok_or_else(bad)?;
    let (version, b64) = rest.split_once(':').ok_or_else(bad)?;
    let version: u32 = version.parse().map_err(|_| bad())?;
    let sealed = URL_SAFE_NO_PAD.decode(b64).map_err(|_| bad())?;
    if key_version(&sealed)? != version {
        return Err(Error::tampered(
            "sealed value's text prefix and header disagree on the key version",
        ));
    }
    Ok(sealed)
}
