//! Company and user ids as they arrive in requests: parsed once, at the
//! edge, into newtypes that can only hold a valid id ([`valid_id`]).
//! JSON numbers are accepted and read as their decimal text, because
//! backends often number their tenants and users.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use super::identity::valid_id;
use crate::error::{AppError, Code};

/// Text or a number, as a JSON id may come.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawId<'a> {
    #[serde(borrow)]
    Text(std::borrow::Cow<'a, str>),
    Int(i64),
    UInt(u64),
}

impl RawId<'_> {
    fn into_string(self) -> String {
        match self {
            RawId::Text(s) => s.into_owned(),
            RawId::Int(n) => n.to_string(),
            RawId::UInt(n) => n.to_string(),
        }
    }
}

macro_rules! id_type {
    ($name:ident, $what:literal) => {
        #[doc = concat!("A valid ", $what, " id.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, AppError> {
                let raw = raw.into();
                if valid_id(&raw) {
                    Ok(Self(raw))
                } else {
                    Err(AppError::new(
                        Code::ValidationFailed,
                        concat!(
                            "a ",
                            $what,
                            " id is 1-64 characters of letters, digits, _ . @ -"
                        ),
                    ))
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = RawId::deserialize(d).map_err(|_| {
                    serde::de::Error::custom(concat!(
                        "expected a ",
                        $what,
                        " id (text or a number)"
                    ))
                })?;
                Self::parse(raw.into_string()).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

id_type!(CompanyId, "company");
id_type!(UserId, "user");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_parse_from_text_and_numbers_only() {
        let c: CompanyId = serde_json::from_value(json!("acme-1")).unwrap();
        assert_eq!(c.as_str(), "acme-1");
        let n: CompanyId = serde_json::from_value(json!(42)).unwrap();
        assert_eq!(n.as_str(), "42");
        assert!(serde_json::from_value::<UserId>(json!("a/b")).is_err());
        assert!(serde_json::from_value::<UserId>(json!(true)).is_err());
        assert!(UserId::parse("").is_err());
    }
}
