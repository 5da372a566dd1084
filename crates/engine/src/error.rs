//! Why the engine gave no verdict, or the refusal it gave.

/// Why the engine gave no verdict, or the verdict when it is a refusal.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineError {
    /// Every worker queue is full: retry later (the daemon answers 503 with Retry-After).
    Overloaded,
    /// The engine is shutting down.
    Shutdown,
    /// The token is not valid; the code is [`jose::Error::code`].
    Invalid(&'static str),
    /// The verifier failed unexpectedly (a bug): the token is refused.
    Internal,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Overloaded => f.write_str("verification engine overloaded"),
            EngineError::Shutdown => f.write_str("verification engine shut down"),
            EngineError::Invalid(code) => write!(f, "invalid token: {code}"),
            EngineError::Internal => f.write_str("internal error in the verification engine"),
        }
    }
}

impl std::error::Error for EngineError {}
