//! Telemetry rules, pure (issue 15 item 2): the deadband filter and the
//! threshold state machine. The state a threshold is in lives in the
//! database (so every node agrees and a restarted node remembers a raised
//! alarm); [`plan`] says which guarded changes a reading asks for, and the
//! database decides which happen ([`apply`] is the same decision, pure).
//!
//! A threshold with `above: L, hysteresis: h, forMs: T`:
//! - a reading above `L` arms it (the hold starts);
//! - a reading above `L` at least `T` ms after it was armed raises it
//!   (with `T = 0`, the first one does);
//! - a reading at or below `L` before then disarms it;
//! - once raised, a reading at or below `L - h` clears it.
//!
//! `below` is the mirror image. The hold is judged when readings arrive.

/// Which side of the limit is out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

/// A threshold's numbers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub direction: Direction,
    pub limit: f64,
    /// How far back in range a reading must be to clear (≥ 0).
    pub hysteresis: f64,
    /// How long the reading must stay out of range before raising (ms, ≥ 0).
    pub hold_ms: i64,
}

impl Limit {
    /// Out of range: strictly past the limit.
    pub fn crossed(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v > self.limit,
            Direction::Below => v < self.limit,
        }
    }

    /// Back in range by at least the hysteresis.
    pub fn cleared(&self, v: f64) -> bool {
        match self.direction {
            Direction::Above => v <= self.limit - self.hysteresis,
            Direction::Below => v >= self.limit + self.hysteresis,
        }
    }
}

/// Where one threshold of one stream stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ThresholdState {
    pub raised: bool,
    /// When the reading first went out of range (while not raised).
    pub armed_at: Option<i64>,
    /// The id of the raised alarm; its clearing event carries it too.
    pub alarm_id: Option<String>,
}

/// A guarded change of a threshold's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the hold: only if neither raised nor armed.
    Arm,
    /// Stop the hold: only if armed and not raised.
    Disarm,
    /// Raise: only if not raised, and (unless there is no hold) armed at
    /// least the hold time ago.
    Raise,
    /// Clear: only if raised.
    Clear,
}

/// The guarded changes a reading `v` asks for, in order. Each is made only
/// if its guard holds against the state *where it is stored*, so the plan
/// needs no knowledge of the state: a node never acts on a stale copy.
pub fn plan(limit: &Limit, v: f64) -> &'static [Action] {
    if limit.crossed(v) {
        if limit.hold_ms == 0 {
            &[Action::Raise]
        } else {
            &[Action::Arm, Action::Raise]
        }
    } else if limit.cleared(v) {
        &[Action::Disarm, Action::Clear]
    } else {
        &[Action::Disarm]
    }
}

/// One guarded change at `now`, as the database makes it (see
/// `crate::store::rules`): the new state, or `None` when the guard does not
/// hold.
pub fn apply(
    state: &ThresholdState,
    action: Action,
    now: i64,
    hold_ms: i64,
    alarm_id: &str,
) -> Option<ThresholdState> {
    match action {
        Action::Arm if !state.raised && state.armed_at.is_none() => Some(ThresholdState {
            armed_at: Some(now),
            ..state.clone()
        }),
        Action::Disarm if !state.raised && state.armed_at.is_some() => Some(ThresholdState {
            armed_at: None,
            ..state.clone()
        }),
        Action::Raise
            if !state.raised
                && (hold_ms == 0 || state.armed_at.is_some_and(|at| at <= now - hold_ms)) =>
        {
            Some(ThresholdState {
                raised: true,
                armed_at: None,
                alarm_id: Some(alarm_id.to_string()),
            })
        }
        Action::Clear if state.raised => Some(ThresholdState {
            raised: false,
            armed_at: None,
            ..state.clone()
        }),
        _ => None,
    }
}

/// Whether a reading passes a deadband of `band` around the last delivered
/// value: the first one does, then only one more than `band` away; a
/// critical reading always does.
pub fn passes_deadband(last: Option<f64>, v: f64, band: f64, critical: bool) -> bool {
    critical || last.is_none_or(|last| (v - last).abs() > band)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hot(hold_ms: i64) -> Limit {
        Limit {
            direction: Direction::Above,
            limit: 80.0,
            hysteresis: 2.0,
            hold_ms,
        }
    }

    /// Runs readings through a threshold as the database would apply them;
    /// returns the changes made.
    fn run(limit: &Limit, readings: &[(i64, f64)]) -> Vec<(i64, Action)> {
        let mut s = ThresholdState::default();
        let mut out = Vec::new();
        for &(now, v) in readings {
            for &a in plan(limit, v) {
                if let Some(next) = apply(&s, a, now, limit.hold_ms, "a") {
                    s = next;
                    out.push((now, a));
                }
            }
        }
        out
    }

    #[test]
    fn raises_after_the_hold_and_clears_past_the_hysteresis() {
        let r = run(
            &hot(1000),
            &[
                (0, 79.0),
                (100, 81.0),  // arm
                (600, 85.0),  // held 500 ms: not yet
                (1100, 82.0), // held 1000 ms: raise
                (1200, 90.0),
                (1300, 79.0), // in range but within the hysteresis: still raised
                (1400, 78.0), // 80 - 2: clear
                (1500, 79.0),
            ],
        );
        assert_eq!(
            r,
            vec![
                (100, Action::Arm),
                (1100, Action::Raise),
                (1400, Action::Clear)
            ]
        );
    }

    #[test]
    fn a_dip_before_the_hold_disarms() {
        let r = run(
            &hot(1000),
            &[
                (0, 81.0),
                (500, 80.0),
                (900, 81.0),
                (1500, 81.0),
                (1900, 81.0),
            ],
        );
        assert_eq!(
            r,
            vec![
                (0, Action::Arm),
                (500, Action::Disarm),
                (900, Action::Arm),
                (1900, Action::Raise)
            ]
        );
    }

    #[test]
    fn no_hold_raises_at_once_and_below_mirrors_above() {
        assert_eq!(run(&hot(0), &[(0, 80.5)]), vec![(0, Action::Raise)]);
        let cold = Limit {
            direction: Direction::Below,
            limit: 10.0,
            hysteresis: 1.0,
            hold_ms: 0,
        };
        assert_eq!(
            run(&cold, &[(0, 10.0), (1, 9.0), (2, 10.5), (3, 11.0)]),
            vec![(1, Action::Raise), (3, Action::Clear)]
        );
    }

    #[test]
    fn an_oscillation_inside_the_hysteresis_raises_once() {
        let readings: Vec<(i64, f64)> = (0..100)
            .map(|i| (i, if i % 2 == 0 { 80.5 } else { 79.0 }))
            .collect();
        assert_eq!(run(&hot(0), &readings), vec![(0, Action::Raise)]);
    }

    #[test]
    fn deadband_suppresses_small_changes_but_never_critical() {
        assert!(passes_deadband(None, 20.0, 0.5, false));
        assert!(!passes_deadband(Some(20.0), 20.4, 0.5, false));
        assert!(!passes_deadband(Some(20.0), 19.5, 0.5, false));
        assert!(passes_deadband(Some(20.0), 20.6, 0.5, false));
        assert!(passes_deadband(Some(20.0), 20.1, 0.5, true));
    }
}
