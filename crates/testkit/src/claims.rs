//! Claims sets for test tokens: valid now, with the members a test cares about set, replaced or
//! removed.

use std::fmt;

use serde_json::{Map, Value};

/// The current Unix time in seconds.
pub fn unix_now() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(since.as_secs()).expect("clock fits i64")
}

/// A JWT claims set under construction. Its [`Display`](fmt::Display) is the compact JSON text
/// an [`Issuer`](crate::Issuer) signs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Claims(Map<String, Value>);

impl Claims {
    /// No claims at all.
    pub fn new() -> Self {
        Claims::default()
    }

    /// Valid at `now`: issued and valid from ten seconds before, expiring five minutes after
    /// (`iat`, `nbf`, `exp`).
    pub fn valid_at(now: i64) -> Self {
        Claims::new()
            .with("iat", now - 10)
            .with("nbf", now - 10)
            .with("exp", now + 300)
    }

    /// Valid now ([`Claims::valid_at`] the current time).
    pub fn valid_now() -> Self {
        Claims::valid_at(unix_now())
    }

    /// `name` set to `value` (added or replaced).
    #[must_use]
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// `name` removed.
    #[must_use]
    pub fn without(mut self, name: &str) -> Self {
        self.0.remove(name);
        self
    }

    /// Every member of the object `overrides` added or replaced, and those set to `null`
    /// removed.
    #[must_use]
    pub fn merge(mut self, overrides: Value) -> Self {
        let Value::Object(members) = overrides else {
            panic!("claims overrides must be a JSON object: {overrides}")
        };
        for (name, value) in members {
            if value.is_null() {
                self.0.remove(&name);
            } else {
                self.0.insert(name, value);
            }
        }
        self
    }

    /// The claims as a JSON value.
    pub fn into_value(self) -> Value {
        Value::Object(self.0)
    }
}

impl fmt::Display for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A map of JSON values always serializes.
        f.write_str(&serde_json::to_string(&self.0).map_err(|_| fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn overrides_add_replace_and_remove() {
        let claims = Claims::valid_at(1000)
            .with("sub", "alice")
            .merge(json!({"sub": "bob", "nbf": null, "aud": ["a", "b"]}))
            .without("iat");
        assert_eq!(
            claims.into_value(),
            json!({"sub": "bob", "exp": 1300, "aud": ["a", "b"]})
        );
        assert_eq!(Claims::new().with("exp", 5).to_string(), r#"{"exp":5}"#);
    }
}
