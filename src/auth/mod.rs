//! Authentication, for every transport: JWT verification and minting
//! (`jwt`), the claim rules (`claims`: identity, `JWT_MAX_TTL`), where a
//! connection's token comes from (`token`), and the API-key check of the
//! server-to-server HTTP API (`api_key`).

pub mod api_key;
pub mod claims;
pub mod jwt;
pub mod token;

pub use jwt::{JwtVerifier, mint_token};
