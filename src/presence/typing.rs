//! Typing indicators (SPEC §7): `user:typing { room, isTyping }` relayed as
//! `user:typing { room, userId, isTyping }` to the room except the sender.
//!
//! Never persisted. The state is per node and ephemeral, which is enough:
//! a typing state belongs to the node of the socket that types. Per user
//! and room, at most one `isTyping: true` is relayed per [`THROTTLE`]; a
//! state not renewed within [`EXPIRY`] ends with a relayed `isTyping: false`,
//! as does the typing socket going away.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Arc;

use serde_json::json;
use tokio::time::Instant;

use super::Presence;
use crate::domain::SessionId;
use crate::fanout::{Hub, Signal};

/// A typing state not renewed for this long ends.
pub const EXPIRY: Duration = Duration::from_secs(5);
/// At most one relayed `isTyping: true` per user and room per this period.
pub const THROTTLE: Duration = Duration::from_secs(1);

/// Who types where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TypingKey {
    pub company: String,
    /// Logical room name.
    pub room: String,
    pub user: String,
}

struct Typist {
    /// The socket that last said it types (it does not get the relays).
    socket: SessionId,
    relayed_at: Instant,
    deadline: Instant,
    /// Tells this state's expiry timer from one of an earlier state.
    generation: u64,
}

/// This node's typing states.
#[derive(Default)]
pub struct Typing {
    // std Mutex: never held across an await.
    states: Mutex<HashMap<TypingKey, Typist>>,
    generations: AtomicU64,
}

/// What to do with an `isTyping: true`.
#[derive(Debug, PartialEq, Eq)]
pub enum Started {
    /// Relay it; `timer` = the generation of a new state whose expiry timer
    /// the caller starts.
    Relay { timer: Option<u64> },
    /// Renewed, but a `true` was relayed less than [`THROTTLE`] ago.
    Throttled,
}

/// What an expiry timer finds.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    /// The state ended (or was replaced by a newer one).
    Gone,
    /// Renewed: wait until then.
    Wait(Instant),
    /// Expired and removed: relay `isTyping: false`, except to this socket.
    Expired(SessionId),
}

impl Typing {
    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<TypingKey, Typist>> {
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn start(&self, key: &TypingKey, socket: SessionId, now: Instant) -> Started {
        let mut states = self.states();
        if let Some(t) = states.get_mut(key) {
            t.socket = socket;
            t.deadline = now + EXPIRY;
            if now.duration_since(t.relayed_at) < THROTTLE {
                return Started::Throttled;
            }
            t.relayed_at = now;
            return Started::Relay { timer: None };
        }
        let generation = self.generations.fetch_add(1, Ordering::Relaxed);
        states.insert(
            key.clone(),
            Typist {
                socket,
                relayed_at: now,
                deadline: now + EXPIRY,
                generation,
            },
        );
        Started::Relay {
            timer: Some(generation),
        }
    }

    /// `isTyping: false`: whether a typing state ended (then relay it).
    pub fn stop(&self, key: &TypingKey) -> bool {
        self.states().remove(key).is_some()
    }

    pub fn check(&self, key: &TypingKey, generation: u64, now: Instant) -> Check {
        let mut states = self.states();
        match states.get(key) {
            Some(t) if t.generation != generation => Check::Gone,
            Some(t) if t.deadline > now => Check::Wait(t.deadline),
            Some(t) => {
                let socket = t.socket;
                states.remove(key);
                Check::Expired(socket)
            }
            None => Check::Gone,
        }
    }

    /// Ends (and returns) the typing states of a socket that went away.
    pub fn drop_socket(&self, socket: SessionId) -> Vec<TypingKey> {
        let mut states = self.states();
        let gone: Vec<TypingKey> = states
            .iter()
            .filter(|(_, t)| t.socket == socket)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            states.remove(key);
        }
        gone
    }
}

impl Presence {
    /// Handles a validated `user:typing` from `socket` (already known to be in the room).
    pub async fn typed(self: &Arc<Self>, key: TypingKey, socket: SessionId, is_typing: bool) {
        let typing = &self.typing;
        if !is_typing {
            if typing.stop(&key) {
                self.relay(&key, false, Some(socket)).await;
            }
            return;
        }
        match typing.start(&key, socket, Instant::now()) {
            Started::Throttled => {}
            Started::Relay { timer } => {
                if let Some(generation) = timer {
                    self.tasks
                        .spawn(self.clone().expire(key.clone(), generation));
                }
                self.relay(&key, true, Some(socket)).await;
            }
        }
    }

    async fn expire(self: Arc<Self>, key: TypingKey, generation: u64) {
        loop {
            match self.typing.check(&key, generation, Instant::now()) {
                Check::Gone => return,
                Check::Wait(deadline) => tokio::time::sleep_until(deadline).await,
                Check::Expired(socket) => return self.relay(&key, false, Some(socket)).await,
            }
        }
    }

    /// The socket went away: whatever it was typing ends now.
    pub(super) async fn socket_gone(&self, socket: SessionId) {
        for key in self.typing.drop_socket(socket) {
            self.relay(&key, false, None).await;
        }
    }

    async fn relay(&self, key: &TypingKey, is_typing: bool, exclude: Option<SessionId>) {
        let signal = Signal {
            company: key.company.clone(),
            room: key.room.clone(),
            event: "user:typing",
            data: json!({ "room": key.room, "userId": key.user, "isTyping": is_typing }),
            exclude,
        };
        self.fanout.emit(&signal).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(user: &str) -> TypingKey {
        TypingKey {
            company: "acme".into(),
            room: "order:1".into(),
            user: user.into(),
        }
    }

    #[test]
    fn one_relay_per_second_and_renewals_extend_the_deadline() {
        let t = Typing::default();
        let (a, b) = (SessionId::new(), SessionId::new());
        let t0 = Instant::now();
        let Started::Relay {
            timer: Some(generation),
        } = t.start(&key("u1"), a, t0)
        else {
            panic!("first true is relayed with a new timer");
        };
        assert_eq!(
            t.start(&key("u1"), a, t0 + Duration::from_millis(500)),
            Started::Throttled
        );
        // Another user in the same room is throttled separately.
        assert!(matches!(t.start(&key("u2"), b, t0), Started::Relay { .. }));
        assert_eq!(
            t.start(&key("u1"), a, t0 + Duration::from_millis(1000)),
            Started::Relay { timer: None }
        );
        // The last renewal (1 s) moved the deadline to 6 s.
        let at = t0 + Duration::from_millis(5500);
        assert_eq!(
            t.check(&key("u1"), generation, at),
            Check::Wait(t0 + Duration::from_secs(6))
        );
        assert_eq!(
            t.check(&key("u1"), generation, t0 + Duration::from_secs(6)),
            Check::Expired(a)
        );
        assert_eq!(t.check(&key("u1"), generation, at), Check::Gone);
    }

    #[test]
    fn stop_ends_the_state_and_an_old_timer_ignores_a_new_one() {
        let t = Typing::default();
        let s = SessionId::new();
        let t0 = Instant::now();
        let Started::Relay { timer: Some(first) } = t.start(&key("u1"), s, t0) else {
            panic!("relayed");
        };
        assert!(t.stop(&key("u1")));
        assert!(!t.stop(&key("u1")), "nothing left to stop");
        assert!(matches!(
            t.start(&key("u1"), s, t0),
            Started::Relay { timer: Some(_) }
        ));
        assert_eq!(
            t.check(&key("u1"), first, t0 + Duration::from_secs(9)),
            Check::Gone
        );
    }

    #[test]
    fn a_socket_going_away_ends_its_states_only() {
        let t = Typing::default();
        let (a, b) = (SessionId::new(), SessionId::new());
        let now = Instant::now();
        t.start(&key("u1"), a, now);
        t.start(&key("u2"), b, now);
        assert_eq!(t.drop_socket(a), vec![key("u1")]);
        assert!(t.stop(&key("u2")));
    }
}
