//! How commands look on the wire: the `command_status` payload, the
//! `command` a device receives, and the record the HTTP API returns.

use serde_json::{Value, json};

use crate::domain::command::Status;
use crate::domain::iso8601;
use crate::store::commands::StoredCommand;

/// `command_status { commandId, status, name, target, actualValue?, error?, at, completedAt? }`
/// for the command's current status.
/// The `command_status` payload of `status`, one of the statuses `c`
/// reached (an earlier one when a sweep announces what a dead node did not):
/// the value and the error belong to the final status only.
pub fn status(c: &StoredCommand, status: Status) -> Value {
    let at = c.time_of(status).unwrap_or(c.created_at);
    let mut v = json!({
        "commandId": c.id,
        "status": status,
        "name": c.name,
        "target": c.target,
        "at": iso8601(at),
    });
    if status.is_final() {
        v["completedAt"] = json!(iso8601(at));
        if let Some(value) = &c.actual_value {
            v["actualValue"] = value.clone();
        }
        if let Some(e) = error(c) {
            v["error"] = e;
        }
    }
    v
}

fn error(c: &StoredCommand) -> Option<Value> {
    (c.status == Status::Failed).then(|| {
        json!({
            "code": c.error_code.as_deref().unwrap_or("FAILED"),
            "message": c.error_message.as_deref().unwrap_or(""),
        })
    })
}

/// The payload of the `command` event a device receives.
pub fn delivery(c: &StoredCommand) -> Value {
    json!({
        "commandId": c.id,
        "name": c.name,
        "args": c.args,
        "target": c.target,
        "timeoutMs": c.timeout_ms,
        "expiresAt": iso8601(c.deadline_at),
        "sentBy": c.sender,
    })
}

/// The `meta` of that event, as domain events have.
pub fn delivery_meta(c: &StoredCommand) -> Value {
    json!({
        "id": c.id,
        "type": "command",
        "room": c.target,
        "timestamp": iso8601(c.created_at),
        "source": "commands",
        "priority": "high",
    })
}

/// The whole record, with each transition and its time.
pub fn record(c: &StoredCommand) -> Value {
    let transitions: Vec<Value> = Status::ALL
        .into_iter()
        .filter(|s| *s != Status::Succeeded || c.status == Status::Succeeded)
        .filter(|s| *s != Status::Failed || c.status == Status::Failed)
        .filter_map(|s| {
            c.time_of(s)
                .map(|at| json!({ "status": s, "at": iso8601(at) }))
        })
        .collect();
    let mut v = json!({
        "commandId": c.id,
        "companyId": c.company_id,
        "target": c.target,
        "name": c.name,
        "args": c.args,
        "sentBy": c.sender,
        "status": c.status,
        "timeoutMs": c.timeout_ms,
        "deadline": iso8601(c.deadline_at),
        "createdAt": iso8601(c.created_at),
        "transitions": transitions,
        "answeredBy": c.answered_by,
    });
    if let Some(value) = &c.actual_value {
        v["actualValue"] = value.clone();
    }
    if let Some(e) = error(c) {
        v["error"] = e;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(status: Status) -> StoredCommand {
        StoredCommand {
            id: "c1".into(),
            company_id: "acme".into(),
            target: "device:p1".into(),
            name: "pump:start".into(),
            args: json!({}),
            sender: Some("u1".into()),
            status,
            timeout_ms: 1000,
            deadline_at: 2000,
            created_at: 1000,
            sent_at: Some(1100),
            acked_at: None,
            finished_at: Some(2000),
            actual_value: None,
            error_code: Some("TIMEOUT".into()),
            error_message: Some("no answer".into()),
            answered_by: None,
            announced: 0,
        }
    }

    #[test]
    fn a_timed_out_command_shows_its_code_and_path() {
        let c = command(Status::Failed);
        let s = status(&c, Status::Failed);
        assert_eq!(s["error"]["code"], "TIMEOUT");
        assert_eq!(s["at"], s["completedAt"]);
        // An earlier status of a finished command, as a sweep announces it.
        let sent = status(&c, Status::Sent);
        assert_eq!(
            (sent["status"].as_str(), sent.get("error")),
            (Some("sent"), None)
        );
        assert_eq!(sent["at"], iso8601(1100));
        let r = record(&c);
        let path: Vec<&str> = r["transitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["status"].as_str().unwrap())
            .collect();
        assert_eq!(path, ["queued", "sent", "failed"]);
        assert!(
            status(&command(Status::Sent), Status::Sent)
                .get("error")
                .is_none()
        );
    }
}
