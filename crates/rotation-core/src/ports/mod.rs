//! Ports: the traits adapters implement. Core sits on these and nothing else.
//!
//! All ports are object safe and used as `Arc<dyn Port>`.

mod crypto;
mod custody;
mod notifier;
mod secrets;
mod store;

pub use crypto::{CryptoProvider, DataKey};
pub use custody::{KeyCustody, NewSigningKey, WrapContext};
pub use notifier::{LogNotifier, Notification, Notifier};
pub use secrets::{
    CredentialTarget, NonEmptyVerifier, SecretBackend, Step, StepContext, StepOutput, StoreOnlyResolver,
    StoreOnlyTarget, TargetResolver, Verifier, VersionedValue,
};
pub use store::{AuditQuery, OutboxMessage, RecordQuery, Snapshot, StateStore, StoreTx};
