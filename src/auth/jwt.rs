//! JWT verification (HS256, or RS256/ES256 from an SPKI public key) and
//! minting for `switchyard token`.
//!
//! The accepted algorithm is fixed by the configured key, never by the
//! token's header: that is what refuses `alg: none` and algorithm confusion
//! (an HS256 token "signed" with a public key's PEM text).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::Serialize;

use super::claims::RawClaims;
use crate::config::{Config, JwtKeySource};
use crate::domain::{Identity, Role, identity::valid_id, now_ms};
use crate::error::{AppError, Code};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("JWT_PUBLIC_KEY_FILE: cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("JWT_PUBLIC_KEY_FILE: {0} is neither an RSA nor an EC P-256 SPKI PEM public key")]
    Unsupported(String),
}

pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    /// `JWT_MAX_TTL`.
    max_ttl: Option<std::time::Duration>,
}

impl JwtVerifier {
    pub fn from_config(config: &Config) -> Result<Self, KeyError> {
        let (key, alg) = match &config.jwt_key {
            JwtKeySource::Secret { secret, .. } => (
                DecodingKey::from_secret(secret.expose().as_bytes()),
                Algorithm::HS256,
            ),
            JwtKeySource::PublicKeyFile(path) => {
                let pem = std::fs::read(path).map_err(|source| KeyError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
                    (k, Algorithm::RS256)
                } else if let Ok(k) = DecodingKey::from_ec_pem(&pem) {
                    (k, Algorithm::ES256)
                } else {
                    return Err(KeyError::Unsupported(path.display().to_string()));
                }
            }
        };
        let mut validation = Validation::new(alg);
        validation.leeway = config.jwt_leeway.as_secs();
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss`/`aud` only when present: configured, they
        // must also be required, or a token without them would pass.
        let mut required = vec!["exp"];
        match &config.jwt_audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &config.jwt_issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        Ok(Self {
            key,
            validation,
            max_ttl: config.jwt_max_ttl,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        self.validation.algorithms[0]
    }

    pub fn leeway_ms(&self) -> i64 {
        self.validation.leeway as i64 * 1000
    }

    /// Verifies a token and returns who it names, or `INVALID_TOKEN` /
    /// `TOKEN_EXPIRED` with a reason a person can act on.
    pub fn verify(&self, token: &str) -> Result<Identity, AppError> {
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.key, &self.validation)
            .map_err(token_error)?;
        let leeway = std::time::Duration::from_secs(self.validation.leeway);
        data.claims
            .check_lifetime(self.max_ttl, leeway, now_ms() / 1000)?;
        data.claims.identity()
    }
}

fn token_error(e: jsonwebtoken::errors::Error) -> AppError {
    let why = match e.kind() {
        ErrorKind::ExpiredSignature => {
            return AppError::new(Code::TokenExpired, "the token has expired; sign in again");
        }
        ErrorKind::InvalidSignature => "signature does not match",
        ErrorKind::InvalidAlgorithm => "signed with an algorithm this server does not accept",
        ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
        ErrorKind::InvalidIssuer => "issuer (iss) is not accepted",
        ErrorKind::InvalidAudience => "audience (aud) is not accepted",
        ErrorKind::MissingRequiredClaim(c) if c == "exp" => "token has no expiry (exp)",
        ErrorKind::MissingRequiredClaim(c) if c == "iss" => {
            "no issuer (iss); this server requires one"
        }
        ErrorKind::MissingRequiredClaim(c) if c == "aud" => {
            "no audience (aud); this server requires one"
        }
        ErrorKind::Json(_) => "claims are missing or of the wrong type (exp must be a number)",
        _ => "token is malformed",
    };
    AppError::new(Code::InvalidToken, format!("invalid token: {why}"))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MintClaims<'a> {
    sub: &'a str,
    company_id: &'a str,
    role: Role,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

/// Signs an HS256 token with the configured secret (`switchyard token`).
pub fn mint_token(
    config: &Config,
    user: &str,
    company: &str,
    role: Role,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    let JwtKeySource::Secret { secret, .. } = &config.jwt_key else {
        anyhow::bail!(
            "JWT_PUBLIC_KEY_FILE is set: tokens are signed by your identity provider's private key, not by switchyard"
        );
    };
    anyhow::ensure!(
        valid_id(user),
        "--user must be 1-64 characters of letters, digits, _ . @ -"
    );
    anyhow::ensure!(
        valid_id(company),
        "--company must be 1-64 characters of letters, digits, _ . @ -"
    );
    let now = now_ms() / 1000;
    let claims = MintClaims {
        sub: user,
        company_id: company,
        role,
        iat: now,
        exp: now + ttl.as_secs() as i64,
        iss: config.jwt_issuer.as_deref(),
        aud: config.jwt_audience.as_deref(),
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::time::Duration;

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut m: HashMap<String, String> = HashMap::from([(
            "JWT_SECRET".to_string(),
            "0123456789abcdef0123456789abcdef".to_string(),
        )]);
        for (k, v) in extra {
            m.insert(k.to_string(), v.to_string());
        }
        Config::from_map(m).expect("valid config")
    }

    fn sign(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn minted_token_round_trips() {
        let c = config(&[]);
        let t = mint_token(&c, "u1", "acme", Role::Supervisor, Duration::from_secs(60)).unwrap();
        let id = JwtVerifier::from_config(&c).unwrap().verify(&t).unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.company_id.as_str()),
            ("u1", "acme")
        );
        assert_eq!(id.role, Role::Supervisor);
    }

    #[test]
    fn refusals_have_the_right_codes() {
        let v = JwtVerifier::from_config(&config(&[("JWT_LEEWAY", "0")])).unwrap();
        let now = now_ms() / 1000;
        let good = serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":now+60});
        let cases = [
            (
                sign(
                    serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":now-5}),
                    SECRET,
                ),
                Code::TokenExpired,
            ),
            (
                sign(good.clone(), "another-secret-of-enough-length"),
                Code::InvalidToken,
            ),
            (
                sign(
                    serde_json::json!({"sub":"u","companyId":"c","role":"admin"}),
                    SECRET,
                ),
                Code::InvalidToken,
            ),
            (
                sign(
                    serde_json::json!({"sub":"u","companyId":"c","role":"root","exp":now+60}),
                    SECRET,
                ),
                Code::InvalidToken,
            ),
            (
                sign(
                    serde_json::json!({"sub":"u","role":"admin","exp":now+60}),
                    SECRET,
                ),
                Code::InvalidToken,
            ),
            (
                sign(
                    serde_json::json!({"sub":"u","companyId":"a/b","role":"admin","exp":now+60}),
                    SECRET,
                ),
                Code::InvalidToken,
            ),
            (
                sign(
                    serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":now+60,"nbf":now+600}),
                    SECRET,
                ),
                Code::InvalidToken,
            ),
            ("not-a-jwt".to_string(), Code::InvalidToken),
        ];
        for (token, code) in cases {
            assert_eq!(v.verify(&token).unwrap_err().code, code, "{token}");
        }
        assert!(v.verify(&sign(good, SECRET)).is_ok());
    }

    #[test]
    fn alg_none_is_refused() {
        let v = JwtVerifier::from_config(&config(&[])).unwrap();
        let now = now_ms() / 1000;
        use base64_helpers::b64;
        let t = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(
                r#"{{"sub":"u","companyId":"c","role":"admin","exp":{}}}"#,
                now + 60
            )
            .as_bytes())
        );
        assert_eq!(v.verify(&t).unwrap_err().code, Code::InvalidToken);
    }

    #[test]
    fn issuer_and_audience_are_checked_when_configured() {
        let c = config(&[("JWT_ISSUER", "idp"), ("JWT_AUDIENCE", "switchyard")]);
        let v = JwtVerifier::from_config(&c).unwrap();
        let now = now_ms() / 1000;
        let base = |iss: &str, aud: &str| {
            sign(
                serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":now+60,"iss":iss,"aud":aud}),
                SECRET,
            )
        };
        assert!(v.verify(&base("idp", "switchyard")).is_ok());
        assert_eq!(
            v.verify(&base("other", "switchyard")).unwrap_err().code,
            Code::InvalidToken
        );
        assert_eq!(
            v.verify(&base("idp", "other")).unwrap_err().code,
            Code::InvalidToken
        );
        // Configured claims are required, not only checked when present.
        for (claims, why) in [
            (
                serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":now+60,"aud":"switchyard"}),
                "no issuer (iss)",
            ),
            (
                serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":now+60,"iss":"idp"}),
                "no audience (aud)",
            ),
        ] {
            let err = v.verify(&sign(claims, SECRET)).unwrap_err();
            assert_eq!(err.code, Code::InvalidToken);
            assert!(err.message.contains(why), "{}", err.message);
        }
    }

    #[test]
    fn max_ttl_refuses_long_lived_tokens() {
        let v = JwtVerifier::from_config(&config(&[("JWT_MAX_TTL", "1h")])).unwrap();
        let now = now_ms() / 1000;
        let token = |iat: i64, exp: i64| {
            sign(
                serde_json::json!({"sub":"u","companyId":"c","role":"admin","iat":iat,"exp":exp}),
                SECRET,
            )
        };
        assert!(v.verify(&token(now, now + 3600)).is_ok());
        let err = v.verify(&token(now, now + 3 * 3600)).unwrap_err();
        assert_eq!(err.code, Code::InvalidToken);
        assert!(err.message.contains("JWT_MAX_TTL"), "{}", err.message);
        let forever = sign(
            serde_json::json!({"sub":"u","companyId":"c","role":"admin","exp":u64::MAX}),
            SECRET,
        );
        assert_eq!(v.verify(&forever).unwrap_err().code, Code::InvalidToken);
        let unlimited = JwtVerifier::from_config(&config(&[])).unwrap();
        assert_eq!(unlimited.verify(&forever).unwrap().expires_at, i64::MAX);
    }

    #[test]
    fn numeric_company_ids_are_accepted() {
        let v = JwtVerifier::from_config(&config(&[])).unwrap();
        let now = now_ms() / 1000;
        let t = sign(
            serde_json::json!({"userId":42,"companyId":7,"role":"operator","exp":now+60}),
            SECRET,
        );
        let id = v.verify(&t).unwrap();
        assert_eq!((id.user_id.as_str(), id.company_id.as_str()), ("42", "7"));
    }

    mod base64_helpers {
        pub fn b64(bytes: &[u8]) -> String {
            const T: &[u8; 64] =
                b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
            let mut out = String::new();
            for chunk in bytes.chunks(3) {
                let n = chunk
                    .iter()
                    .enumerate()
                    .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
                for i in 0..=chunk.len() {
                    out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
                }
            }
            out
        }
    }
}
