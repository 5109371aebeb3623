//! Integration tests of rotation-crypto: published vectors, the sealed
//! format against an independent AES-GCM, custody against an independent Ed25519.

mod custody;
mod generate;
mod kek;
mod sealed;
mod vectors;
