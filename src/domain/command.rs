//! The device-command state machine (SPEC §13), pure: `queued → sent → acked → succeeded |
//! failed`, plus `failed` (TIMEOUT) from any open state. The service asks
//! [`path`] which transitions lead from the stored status to what a device
//! reported, and the store performs each one guarded by [`Step::from`], so
//! a transition another node already made is refused by the database.

use serde::{Deserialize, Serialize};

/// Where a command is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Sent,
    Acked,
    Succeeded,
    Failed,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Queued,
        Status::Sent,
        Status::Acked,
        Status::Succeeded,
        Status::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Acked => "acked",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// Nothing follows `succeeded` or `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Succeeded | Status::Failed)
    }

    /// Position in the life cycle (1 `queued` … 4 `succeeded`/`failed`);
    /// the store records the rank of the last status announced.
    pub fn rank(self) -> i16 {
        match self {
            Status::Queued => 1,
            Status::Sent => 2,
            Status::Acked => 3,
            Status::Succeeded | Status::Failed => 4,
        }
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Handed to a device in the target room.
    Deliver,
    /// The device said it has the command (`command:ack`).
    Ack,
    /// The device reported success (`command:result { ok: true }`).
    Succeed,
    /// The device reported failure (`command:result { ok: false }`).
    Fail,
    /// Nobody moved it on before its deadline.
    Timeout,
}

impl Step {
    /// The statuses this step may leave.
    pub fn from(self) -> &'static [Status] {
        match self {
            Step::Deliver => &[Status::Queued],
            Step::Ack => &[Status::Sent],
            Step::Succeed | Step::Fail => &[Status::Acked],
            Step::Timeout => &[Status::Queued, Status::Sent, Status::Acked],
        }
    }

    /// The status it leads to.
    pub fn to(self) -> Status {
        match self {
            Step::Deliver => Status::Sent,
            Step::Ack => Status::Acked,
            Step::Succeed => Status::Succeeded,
            Step::Fail | Step::Timeout => Status::Failed,
        }
    }
}

/// Why a device's report does not apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The command already ended (`succeeded`/`failed`, e.g. TIMEOUT).
    Finished(Status),
    /// The report is older than the state (an `ack` after `acked`).
    AlreadyPast(Status),
}

/// The transitions from `current` to the status `goal` reaches, in order.
/// A device that skips a step (answers `result` without `ack`, or acks a
/// command still `queued` because it fetched it on reconnect) implies the
/// steps before, so every watcher still sees every state.
pub fn path(current: Status, goal: Step) -> Result<Vec<Step>, Refusal> {
    if current.is_final() {
        return Err(Refusal::Finished(current));
    }
    let chain = [Step::Deliver, Step::Ack];
    let position = |s: Status| match s {
        Status::Queued => 0,
        Status::Sent => 1,
        _ => 2,
    };
    let start = position(current);
    let mut steps: Vec<Step> = match goal {
        Step::Timeout => return Ok(vec![Step::Timeout]),
        Step::Deliver | Step::Ack => {
            let end = if goal == Step::Deliver { 1 } else { 2 };
            if start >= end {
                return Err(Refusal::AlreadyPast(current));
            }
            chain[start..end].to_vec()
        }
        Step::Succeed | Step::Fail => chain[start.min(2)..].to_vec(),
    };
    if matches!(goal, Step::Succeed | Step::Fail) {
        steps.push(goal);
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_made_of_allowed_transitions() {
        let goals = [
            Step::Deliver,
            Step::Ack,
            Step::Succeed,
            Step::Fail,
            Step::Timeout,
        ];
        for start in Status::ALL {
            for goal in goals {
                let Ok(steps) = path(start, goal) else {
                    continue;
                };
                let mut at = start;
                for step in steps {
                    assert!(step.from().contains(&at), "{step:?} from {at}");
                    at = step.to();
                }
                assert_eq!(at, goal.to(), "{start} to {goal:?}");
            }
        }
    }

    #[test]
    fn reports_imply_the_steps_before() {
        assert_eq!(path(Status::Queued, Step::Deliver), Ok(vec![Step::Deliver]));
        assert_eq!(
            path(Status::Queued, Step::Ack),
            Ok(vec![Step::Deliver, Step::Ack])
        );
        assert_eq!(path(Status::Sent, Step::Ack), Ok(vec![Step::Ack]));
        assert_eq!(
            path(Status::Queued, Step::Succeed),
            Ok(vec![Step::Deliver, Step::Ack, Step::Succeed])
        );
        assert_eq!(
            path(Status::Sent, Step::Fail),
            Ok(vec![Step::Ack, Step::Fail])
        );
        assert_eq!(path(Status::Acked, Step::Succeed), Ok(vec![Step::Succeed]));
        assert_eq!(path(Status::Acked, Step::Timeout), Ok(vec![Step::Timeout]));
    }

    #[test]
    fn finished_and_repeated_reports_are_refused() {
        assert_eq!(
            path(Status::Failed, Step::Ack),
            Err(Refusal::Finished(Status::Failed))
        );
        assert_eq!(
            path(Status::Succeeded, Step::Timeout),
            Err(Refusal::Finished(Status::Succeeded))
        );
        assert_eq!(
            path(Status::Acked, Step::Ack),
            Err(Refusal::AlreadyPast(Status::Acked))
        );
        assert_eq!(
            path(Status::Sent, Step::Deliver),
            Err(Refusal::AlreadyPast(Status::Sent))
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::parse("done"), None);
    }
}
