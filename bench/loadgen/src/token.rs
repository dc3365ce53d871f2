//! HS256 tokens with the claims Switchyard (and the reference server) expect.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{EncodingKey, Header};
use serde::Serialize;

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    #[serde(rename = "companyId")]
    company_id: &'a str,
    role: &'a str,
    iat: u64,
    exp: u64,
}

pub struct Minter {
    key: EncodingKey,
    header: Header,
}

impl Minter {
    pub fn new(secret: &str) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.as_bytes()),
            header: Header::default(), // HS256
        }
    }

    /// A token valid for two hours: longer than any run, so expiry never
    /// disconnects a benchmark client.
    pub fn mint(&self, user: &str, company: &str, role: &str) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = Claims {
            sub: user,
            company_id: company,
            role,
            iat: now,
            exp: now + 7200,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key).expect("HS256 signing cannot fail")
    }

    /// The CONNECT auth payload `{ token }`.
    pub fn auth(&self, user: &str, company: &str, role: &str) -> serde_json::Value {
        serde_json::json!({ "token": self.mint(user, company, role) })
    }
}
