//! `auth.offsets` at connect (SPEC §5, exact resume): which of the rooms it
//! names the socket resumes. The same rules as `subscribe` decide
//! ([`plan_subscribe`]): room names, permissions and `WS_MAX_SUBSCRIPTIONS`;
//! every room not resumed is listed in `session.denied` with its reason.

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::{Denial, automatic_rooms, plan_subscribe};
use crate::catalog::Catalog;
use crate::domain::{Identity, RoomName};
use crate::error::{AppError, Code};

/// Rooms of `auth.offsets` considered, like `subscribe`'s rooms per request.
pub const MAX_RESUME_ROOMS: usize = 256;

/// What `auth.offsets` resumes.
#[derive(Debug, Default, PartialEq)]
pub struct Resume {
    /// Room → offset for the rooms resumed (automatic ones included).
    pub offsets: HashMap<String, i64>,
    /// Entity rooms to join beyond the automatic ones.
    pub extra: Vec<RoomName>,
    pub denied: Vec<Denial>,
}

fn denial(room: &str, code: Code, message: impl Into<String>) -> Denial {
    Denial::new(room, AppError::new(code, message))
}

/// Decides `auth.offsets` (absent or not an object = nothing to resume).
/// Rooms are taken in name order, so which ones exceed the limit is stable.
pub fn plan_resume(
    identity: &Identity,
    catalog: &Catalog,
    offsets: Option<&Value>,
    max_subscriptions: usize,
) -> Resume {
    let Some(Value::Object(map)) = offsets else {
        return Resume::default();
    };
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut denied = Vec::new();
    if entries.len() > MAX_RESUME_ROOMS {
        let ignored = entries.len() - MAX_RESUME_ROOMS;
        let first = entries[MAX_RESUME_ROOMS].0;
        denied.push(denial(
            first,
            Code::LimitExceeded,
            format!(
                "auth.offsets names {} rooms; the first {MAX_RESUME_ROOMS} by name were considered, \
                 {ignored} from this one on were not",
                entries.len()
            ),
        ));
        entries.truncate(MAX_RESUME_ROOMS);
    }
    let mut requested = Vec::new();
    let mut given = HashMap::new();
    for (room, offset) in entries {
        match offset.as_i64().filter(|o| *o >= 0) {
            Some(o) => {
                requested.push(room.clone());
                given.insert(room.clone(), o);
            }
            None => denied.push(denial(
                room,
                Code::ValidationFailed,
                "an offset must be a non-negative integer",
            )),
        }
    }
    let (join, refused) = plan_subscribe(
        identity,
        catalog,
        &requested,
        &BTreeSet::new(),
        max_subscriptions,
    );
    denied.extend(refused);
    let automatic = automatic_rooms(identity);
    let offsets = given
        .into_iter()
        .filter(|(room, _)| join.iter().any(|r| r.as_str() == room))
        .collect();
    let extra = join
        .into_iter()
        .filter(|r| !automatic.contains(r))
        .collect();
    Resume {
        offsets,
        extra,
        denied,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;
    use serde_json::json;

    fn operator() -> Identity {
        Identity {
            user_id: "u1".into(),
            company_id: "acme".into(),
            role: Role::Operator,
            permissions: vec![],
            expires_at: 0,
        }
    }

    #[test]
    fn resumes_like_subscribe_and_says_what_it_refused() {
        let c = Catalog::load(None).unwrap();
        let offsets = json!({
            "company": 5, "user:u1": 1, "user:u2": 1, "order:1": 2, "order:2": 2,
            "order:3": 2, "order:4": "x", "Bad": 1, "order:5": -1
        });
        let r = plan_resume(&operator(), &c, Some(&offsets), 2);
        let extra: Vec<&str> = r.extra.iter().map(RoomName::as_str).collect();
        assert_eq!(extra, ["order:1", "order:2"]);
        assert_eq!(r.offsets.len(), 4, "{:?}", r.offsets);
        assert_eq!(r.offsets["company"], 5);
        let mut codes: Vec<(&str, Code)> =
            r.denied.iter().map(|d| (d.room.as_str(), d.code)).collect();
        codes.sort_by_key(|c| c.0);
        assert_eq!(
            codes,
            [
                ("Bad", Code::InvalidRoom),
                ("order:3", Code::LimitExceeded),
                ("order:4", Code::ValidationFailed),
                ("order:5", Code::ValidationFailed),
                ("user:u2", Code::Forbidden),
            ]
        );
        assert_eq!(
            plan_resume(&operator(), &c, Some(&json!([1])), 2),
            Resume::default()
        );
        assert_eq!(plan_resume(&operator(), &c, None, 2), Resume::default());
    }

    #[test]
    fn at_most_256_rooms_are_considered() {
        let c = Catalog::load(None).unwrap();
        let many: serde_json::Map<String, Value> = (0..5_003)
            .map(|n| (format!("order:{n:05}"), json!(0)))
            .collect();
        let r = plan_resume(&operator(), &c, Some(&Value::Object(many)), 50);
        assert_eq!(r.extra.len(), 50);
        assert_eq!(r.denied.len(), 1 + (MAX_RESUME_ROOMS - 50));
        assert_eq!(r.denied[0].room, "order:00256");
    }
}
