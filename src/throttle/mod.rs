//! Throttles that span connections (per node, like the connection limits in
//! [`crate::limits`]): the event rate of one user across all its sockets
//! ([`users`]), and failed API-key attempts per client address ([`api_keys`]).

pub mod api_keys;
pub mod users;

pub use api_keys::KeyFailures;
pub use users::UserRates;
