//! JWT claims as they arrive, and the rules applied after the signature and
//! the standard claims were checked: who the token names, and how long it
//! may live (`JWT_MAX_TTL`).

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::domain::{Identity, Role, identity::valid_id};
use crate::error::{AppError, Code};

/// A NumericDate (seconds since the epoch). Values beyond `i64` saturate
/// rather than being refused or wrapping: `exp = 2^64 − 1` means "never".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericDate(pub i64);

impl<'de> Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = serde_json::Number::deserialize(d)?;
        let secs = if let Some(i) = n.as_i64() {
            i
        } else if n.as_u64().is_some() {
            i64::MAX
        } else {
            match n.as_f64() {
                // `as` saturates at the bounds of i64.
                Some(f) if f.is_finite() => f as i64,
                _ => return Err(serde::de::Error::custom("not a NumericDate")),
            }
        };
        Ok(Self(secs))
    }
}

/// Claims as they arrive; normalised into an [`Identity`] by [`RawClaims::identity`].
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RawClaims {
    sub: Option<Value>,
    user_id: Option<Value>,
    company_id: Option<Value>,
    role: Option<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    exp: NumericDate,
    #[serde(default)]
    iat: Option<NumericDate>,
}

fn invalid(why: &str) -> AppError {
    AppError::new(Code::InvalidToken, format!("invalid token: {why}"))
}

fn id_claim(v: Option<Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl RawClaims {
    /// Refuses a token whose lifetime exceeds `max`: `exp − iat` when `iat`
    /// is present, and always `exp − now` (both with the clock-skew leeway,
    /// so a token minted for exactly `max` passes).
    pub fn check_lifetime(
        &self,
        max: Option<Duration>,
        leeway: Duration,
        now_secs: i64,
    ) -> Result<(), AppError> {
        let Some(max) = max else { return Ok(()) };
        let limit = i64::try_from(max.as_secs()).unwrap_or(i64::MAX);
        let slack = i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX);
        let exp = self.exp.0;
        let lifetime = self.iat.map(|iat| exp.saturating_sub(iat.0));
        let remaining = exp.saturating_sub(now_secs);
        let too_long = |s: i64| s > limit.saturating_add(slack);
        if lifetime.is_some_and(too_long) || too_long(remaining) {
            let shown = lifetime.unwrap_or(remaining);
            return Err(invalid(&format!(
                "it is valid for longer than JWT_MAX_TTL allows ({shown} s; at most {limit} s); \
                 ask the identity provider for a shorter-lived token"
            )));
        }
        Ok(())
    }

    pub fn identity(self) -> Result<Identity, AppError> {
        let user_id = id_claim(self.sub)
            .or_else(|| id_claim(self.user_id))
            .ok_or_else(|| invalid("missing sub (user id)"))?;
        let company_id = id_claim(self.company_id).ok_or_else(|| invalid("missing companyId"))?;
        if !valid_id(&user_id) || !valid_id(&company_id) {
            return Err(invalid(
                "sub and companyId must be 1-64 characters of letters, digits, _ . @ -",
            ));
        }
        let role = self
            .role
            .as_deref()
            .and_then(Role::parse)
            .ok_or_else(|| invalid("role must be operator, supervisor, manager or admin"))?;
        Ok(Identity {
            user_id,
            company_id,
            role,
            permissions: self.permissions.unwrap_or_default(),
            expires_at: self.exp.0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> RawClaims {
        serde_json::from_value(v).expect("claims parse")
    }

    #[test]
    fn numeric_dates_saturate() {
        for (exp, want) in [
            (json!(1_700_000_000), 1_700_000_000),
            (json!(i64::MAX), i64::MAX),
            (json!(u64::MAX), i64::MAX),
            (json!(1.5e30), i64::MAX),
            (json!(1_700_000_000.4), 1_700_000_000),
        ] {
            let c = claims(json!({ "sub": "u", "companyId": "c", "role": "admin", "exp": exp }));
            assert_eq!(c.exp, NumericDate(want), "{exp}");
        }
        assert!(serde_json::from_value::<RawClaims>(json!({ "sub": "u", "exp": "soon" })).is_err());
    }

    #[test]
    fn lifetime_is_checked_against_iat_and_now() {
        let now = 1_000_000;
        let max = Some(Duration::from_secs(3600));
        let leeway = Duration::from_secs(30);
        let check = |v: Value| claims(v).check_lifetime(max, leeway, now);
        let ok = |iat: Option<i64>, exp: i64| {
            let mut v = json!({ "exp": exp });
            if let Some(iat) = iat {
                v["iat"] = json!(iat);
            }
            check(v)
        };
        assert!(ok(Some(now), now + 3600).is_ok(), "exactly the limit");
        assert!(
            ok(Some(now + 20), now + 3620).is_ok(),
            "issuer clock ahead, within leeway"
        );
        assert!(ok(None, now + 3600).is_ok());
        let refused = ok(Some(now - 7000), now + 600).unwrap_err();
        assert_eq!(refused.code, Code::InvalidToken);
        assert!(
            refused.message.contains("JWT_MAX_TTL"),
            "{}",
            refused.message
        );
        assert!(ok(None, now + 7200).is_err(), "exp − now");
        assert!(ok(Some(now), now + 7200).is_err(), "exp − iat");
        assert!(ok(Some(i64::MIN), i64::MAX).is_err(), "no overflow");
        assert!(
            claims(json!({ "exp": i64::MAX }))
                .check_lifetime(None, leeway, now)
                .is_ok(),
            "no limit configured"
        );
    }
}
