//! Authentication: JWT verification and minting (`jwt`), the claim rules
//! (`claims`: identity, `JWT_MAX_TTL`) and the API-key
//! extractor for the server-to-server HTTP API (`http`). The Socket.IO
//! connect middleware that uses the verifier lives in `socket::connection`.

pub mod claims;
pub mod http;
pub mod jwt;

pub use jwt::{JwtVerifier, mint_token};
