//! The rooms one event goes to: an ordered set. A room named twice (in
//! `rooms`, or as `users: [u1]` next to `rooms: ["user:u1"]`) is one target,
//! so an event is appended and delivered once per room, on the durable and
//! the ephemeral path alike; the first mention fixes the order.

use std::collections::HashSet;

use super::RoomName;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    rooms: Vec<RoomName>,
    seen: HashSet<RoomName>,
}

impl Targets {
    pub fn one(room: RoomName) -> Self {
        let mut t = Self::default();
        t.push(room);
        t
    }

    /// Adds a room unless it is already a target.
    pub fn push(&mut self, room: RoomName) {
        if self.seen.insert(room.clone()) {
            self.rooms.push(room);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    /// Logical room names, in first-mention order.
    pub fn into_names(self) -> Vec<String> {
        self.rooms
            .into_iter()
            .map(|r| r.as_str().to_string())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_one_target_in_first_mention_order() {
        let mut t = Targets::default();
        for r in [
            "order:1", "order:2", "order:1", "user:u1", "order:2", "user:u1",
        ] {
            t.push(RoomName::parse(r).unwrap());
        }
        assert_eq!(t.len(), 3);
        assert_eq!(t.into_names(), vec!["order:1", "order:2", "user:u1"]);
    }
}
