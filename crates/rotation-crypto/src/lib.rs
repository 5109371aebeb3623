//! `rotation-crypto`: ring implementations of `rotation-core`'s crypto ports.
//!
//! **Architecture invariant:** this is the only crate that uses a crypto
//! library (ring, plus argon2 for password-based key derivation, and rcgen
//! and x509-parser on ring for X.509 certificates). Private keys leave it
//! only sealed under the key-encryption key (KEK) or, for certificate
//! secrets, as the secret's own value; secret material is zeroized on drop
//! and never shown by `Debug`.

pub mod backup;
pub mod certificate;
pub mod custody;
pub mod generate;
pub mod kek;
pub mod master_key;
pub mod provider;
pub mod sealed;

pub use certificate::CertificateTarget;
pub use custody::LocalCustody;
pub use kek::{Argon2Cost, Kek, KekParams, MasterSecret};
pub use provider::RingCrypto;
