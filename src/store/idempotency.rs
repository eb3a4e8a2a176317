//! What the store keeps of a POST sent with an `Idempotency-Key` (see `src/idempotency.rs`):
//! the request's fingerprint and, once it is answered, the answer to replay.

use std::time::Duration;

/// A kept answer: replayed as it was.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeptAnswer {
    /// The status code.
    pub status: u16,
    /// The headers the handler set, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

/// What a request leaves for its key: its answer to keep, or `None` to let the key go.
pub type KeepAnswer = Option<KeptAnswer>;

/// What a key's claim found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// The key is new (or its answer expired): this request is carried out, then
    /// [`crate::store::Backend::settle_key`] keeps its answer or lets the key go.
    New,
    /// The key's request was answered: this is the answer.
    Answered(KeptAnswer),
    /// The key's request is still being carried out.
    Running,
    /// The key was used with a different request.
    Mismatch,
}

/// How keys are kept.
#[derive(Clone, Copy, Debug)]
pub struct KeyRules {
    /// How long an answer is kept.
    pub retention: Duration,
    /// Most keys kept at once.
    pub max_keys: usize,
    /// A claim with no answer after this long is taken to be abandoned (its process died), so
    /// another request may claim the key.
    pub abandoned_after: Duration,
}
