//! When a client has surely processed an event: the heartbeat proof window.
//!
//! Unchanged socket.io clients never acknowledge events, so an offline-queue
//! cursor may only count what the Engine.IO heartbeat proves was read.

use std::time::Duration;

use socketioxide::adapter::Adapter;
use socketioxide::extract::SocketRef;

use crate::config::Config;

/// Slack for scheduling delays between the engine's heartbeat and our clock.
const PROOF_MARGIN: Duration = Duration::from_secs(2);
/// socketioxide's (engineioxide's) default, which `app` does not change.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after a send an open connection proves the client processed it.
///
/// Engine.IO v4: the server pings the client at most `max(interval,
/// timeout)` after any send (a ping goes out every interval, or as soon as the
/// previous pong arrived), that ping is queued behind what was sent, and the
/// client answers it only after processing every packet before it. Without a
/// pong the engine closes the connection `timeout` after the ping. So a
/// connection still open `max(interval, timeout) + timeout` after a send has
/// delivered it. The heartbeat skips its tick while a polling connection
/// upgrades (bounded by the upgrade timeout), so sockets that began on
/// polling add those intervals. Engine.IO v3 (socket.io v2): the client pings
/// only after it read the previous pong, and the server closes without a ping
/// for `interval + timeout`, so it takes two such periods.
pub fn proof_window<A: Adapter>(config: &Config, socket: &SocketRef<A>) -> Duration {
    let (i, t) = (config.ping_interval, config.ping_timeout);
    let window = match socket.protocol() {
        // socket.io v4 = Engine.IO v3; socket.io v5 = Engine.IO v4.
        socketioxide::ProtocolVersion::V4 => 2 * (i + t),
        socketioxide::ProtocolVersion::V5 => i.max(t) + t,
    };
    let upgrade = match socket.transport_type() {
        socketioxide::TransportType::Polling => {
            i * UPGRADE_TIMEOUT.as_millis().div_ceil(i.as_millis().max(1)) as u32
        }
        socketioxide::TransportType::Websocket => Duration::ZERO,
    };
    window + upgrade + PROOF_MARGIN
}
