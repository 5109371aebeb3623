//! Checkpoints (C2SP `tlog-checkpoint`) as signed notes (C2SP `signed-note`)
//! with Ed25519 keys, and the verifier-key text form.
//!
//! ```text
//! <origin>\n<tree size, decimal>\n<base64 root hash>\n     <- checkpoint body (the signed text)
//! \n
//! — <key name> <base64(key hash [4] || Ed25519 signature [64])>\n
//! ```
//!
//! The key hash is the first 4 bytes of `SHA-256(name || 0x0A || 0x01 ||
//! public key)`; the verifier key is `<name>+<8 hex digits of key
//! hash>+<base64(0x01 || public key)>`. Signatures are made by the key
//! custody (this module only frames them) and checked with the public key
//! through [`CryptoProvider::verify_ed25519`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::Hash;
use crate::error::{Error, Result};
use crate::ports::CryptoProvider;

/// The signature algorithm byte of Ed25519 in signed notes.
pub const ED25519_ALGORITHM: u8 = 0x01;

/// The dash that starts every signature line (U+2014 EM DASH, then a space).
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Most signatures a note may carry (C2SP: verifiers may reject more).
const MAX_SIGNATURES: usize = 100;

/// The body of a checkpoint: which log, how many entries, and the root of
/// the tree over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (unique name of the log).
    pub origin: String,
    /// Number of entries (leaves) in the tree.
    pub size: u64,
    /// RFC 9162 root hash of the tree of `size` entries.
    pub root: Hash,
    /// Extension lines after the root (none are written; kept when read).
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// The checkpoint text: `origin\nsize\nbase64(root)\n` and any extension lines.
    pub fn body(&self) -> String {
        let mut s = format!("{}\n{}\n{}\n", self.origin, self.size, STANDARD.encode(self.root));
        for line in &self.extensions {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Parses a checkpoint body (the text of a note).
    pub fn parse(body: &str) -> Result<Checkpoint> {
        let bad = |why: &str| Error::invalid_input(format!("not a valid checkpoint: {why}"));
        let lines = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("it does not end with a newline"))?;
        let mut lines = lines.split('\n');
        let origin = lines
            .next()
            .filter(|o| !o.is_empty())
            .ok_or_else(|| bad("no origin line"))?;
        let size = lines.next().ok_or_else(|| bad("no tree size line"))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || (size.len() > 1 && size.starts_with('0')) {
            return Err(bad("the tree size is not a decimal number without leading zeros"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the tree size is too large"))?;
        let root = lines.next().ok_or_else(|| bad("no root hash line"))?;
        let root: Hash = STANDARD
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("the root hash is not 32 bytes of base64"))?;
        let extensions: Vec<String> = lines.map(str::to_owned).collect();
        if extensions.iter().any(String::is_empty) {
            return Err(bad("it has an empty extension line"));
        }
        Ok(Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }
}

/// `SHA-256(name || 0x0A || 0x01 || public key)[..4]`: identifies an
/// Ed25519 key in signature lines.
pub fn key_hash(crypto: &dyn CryptoProvider, name: &str, public_key: &[u8; 32]) -> [u8; 4] {
    let mut data = Vec::with_capacity(name.len() + 34);
    data.extend_from_slice(name.as_bytes());
    data.push(b'\n');
    data.push(ED25519_ALGORITHM);
    data.extend_from_slice(public_key);
    let h = crypto.sha256(&data);
    [h[0], h[1], h[2], h[3]]
}

fn check_key_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('+') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_input(format!(
            "invalid note key name {name:?}: it must be non-empty, without spaces or '+'"
        )));
    }
    Ok(())
}

/// An Ed25519 note verifier key: a name and a public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    /// The key name (for checkpoints: the log's origin).
    pub name: String,
    /// The 4-byte key hash that signature lines carry.
    pub key_hash: [u8; 4],
    /// The 32-byte Ed25519 public key.
    pub public_key: [u8; 32],
}

impl VerifierKey {
    /// The verifier key of `public_key` under `name`.
    pub fn new(crypto: &dyn CryptoProvider, name: &str, public_key: &[u8]) -> Result<Self> {
        check_key_name(name)?;
        let public_key: [u8; 32] = public_key
            .try_into()
            .map_err(|_| Error::invalid_input("an Ed25519 public key is 32 bytes"))?;
        Ok(VerifierKey {
            name: name.to_owned(),
            key_hash: key_hash(crypto, name, &public_key),
            public_key,
        })
    }

    /// Parses `<name>+<8 hex digits>+<base64(0x01 || public key)>`; the key
    /// hash must match the name and key.
    pub fn parse(crypto: &dyn CryptoProvider, text: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid_input(format!("not a valid verifier key: {why}"));
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(hash), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected <name>+<key hash>+<key>"));
        };
        let key = STANDARD.decode(key).map_err(|_| bad("the key is not base64"))?;
        let Some((&ED25519_ALGORITHM, public_key)) = key.split_first() else {
            return Err(bad("not an Ed25519 key (algorithm byte 0x01)"));
        };
        let vkey = VerifierKey::new(crypto, name, public_key)?;
        if hash.len() != 8 || hex_lower(&vkey.key_hash) != hash.to_ascii_lowercase() {
            return Err(bad("the key hash does not match the name and key"));
        }
        Ok(vkey)
    }

    /// The signature line of `signature` by this key.
    pub fn signature_line(&self, signature: &[u8]) -> String {
        let mut blob = self.key_hash.to_vec();
        blob.extend_from_slice(signature);
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, STANDARD.encode(blob))
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut key = vec![ED25519_ALGORITHM];
        key.extend_from_slice(&self.public_key);
        write!(
            f,
            "{}+{}+{}",
            self.name,
            hex_lower(&self.key_hash),
            STANDARD.encode(key)
        )
    }
}

/// One signature line of a note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's key name.
    pub name: String,
    /// The signer's key hash.
    pub key_hash: [u8; 4],
    /// The signature bytes.
    pub signature: Vec<u8>,
}

/// A signed note: its text and signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    /// The signed text, ending with a newline.
    pub text: String,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

impl Note {
    /// Parses a signed note; anything malformed is `invalid_input` saying
    /// the input is not a valid note.
    pub fn parse(input: &str) -> Result<Note> {
        let bad = |why: &str| Error::invalid_input(format!("not a valid signed note: {why}"));
        if input.chars().any(|c| c.is_control() && c != '\n') {
            return Err(bad("it contains control characters other than newlines"));
        }
        let split = input
            .rfind("\n\n")
            .ok_or_else(|| bad("no blank line before the signatures"))?;
        let (text, sigs) = (&input[..=split], &input[split + 2..]);
        if text.len() <= 1 {
            return Err(bad("the text is empty"));
        }
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or_else(|| bad("the last signature line does not end with a newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            let rest = line
                .strip_prefix(SIGNATURE_PREFIX)
                .ok_or_else(|| bad("a signature line does not start with \"\u{2014} \""))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line is not \"\u{2014} <name> <signature>\""))?;
            check_key_name(name).map_err(|_| bad("a signature line has an invalid key name"))?;
            let blob = STANDARD.decode(blob).map_err(|_| bad("a signature is not base64"))?;
            if blob.len() < 5 {
                return Err(bad("a signature is shorter than its key hash"));
            }
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_hash: [blob[0], blob[1], blob[2], blob[3]],
                signature: blob[4..].to_vec(),
            });
        }
        if signatures.len() > MAX_SIGNATURES {
            return Err(bad("more than 100 signatures"));
        }
        Ok(Note {
            text: text.to_owned(),
            signatures,
        })
    }

    /// Whether a signature line of `key` (same name and key hash) carries a
    /// valid Ed25519 signature of the text.
    pub fn is_signed_by(&self, crypto: &dyn CryptoProvider, key: &VerifierKey) -> bool {
        self.signatures.iter().any(|s| {
            s.name == key.name
                && s.key_hash == key.key_hash
                && crypto.verify_ed25519(&key.public_key, self.text.as_bytes(), &s.signature)
        })
    }
}

/// Reads a signed checkpoint of the log `key.name` and checks it, in this
/// order: a valid note, a valid checkpoint body, the expected origin (the
/// key name), a valid signature by `key`. Each failure is `invalid_input`
/// saying which it is.
pub fn open_checkpoint(crypto: &dyn CryptoProvider, key: &VerifierKey, input: &str) -> Result<Checkpoint> {
    let note = Note::parse(input)?;
    let checkpoint = Checkpoint::parse(&note.text)
        .map_err(|e| Error::invalid_input(format!("not a valid signed note: its text is {}", e.message)))?;
    if checkpoint.origin != key.name {
        return Err(Error::invalid_input(format!(
            "a checkpoint of another origin: {:?}, this log is {:?}",
            checkpoint.origin, key.name
        )));
    }
    if !note.is_signed_by(crypto, key) {
        return Err(Error::invalid_input(format!(
            "a checkpoint signed by another key: no valid signature by this log's audit key {key}"
        )));
    }
    Ok(checkpoint)
}

/// The signed note of `checkpoint`: its body, a blank line and the
/// signature line of `signature` (made by `key` over the body).
pub fn signed_checkpoint(key: &VerifierKey, checkpoint: &Checkpoint, signature: &[u8]) -> String {
    let mut s = checkpoint.body();
    s.push('\n');
    s.push_str(&key.signature_line(signature));
    s
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
