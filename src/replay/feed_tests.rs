//! Unit tests of [`super`]: positions, catch-up hand-over, the proof window.

use super::*;
use crate::replay::feeds::{Feeds, Notified};

/// What a [`TestSink`] was sent (offsets), and whether it reports full.
#[derive(Default)]
pub(in crate::replay) struct Recorder {
    got: Mutex<Vec<i64>>,
    full: std::sync::atomic::AtomicBool,
}

/// A session's sink for the replay unit tests.
pub(in crate::replay) struct TestSink(pub(in crate::replay) Arc<Recorder>);

impl Sink for TestSink {
    fn emit(&self, _: &str, _: &Value, meta: &Value) -> Result<(), SendFail> {
        if self.0.full.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(SendFail::Full);
        }
        self.0
            .got
            .lock()
            .unwrap()
            .push(meta["offset"].as_i64().unwrap());
        Ok(())
    }
    fn emit_one(&self, _: &str, _: &Value) -> Result<(), SendFail> {
        Ok(())
    }
    fn disconnect(&self) {}
    fn overflowed(&self) {}
    fn proof_window(&self) -> Duration {
        Duration::from_millis(200)
    }
}

fn ev(offset: i64, receive: RoleSet) -> LogEvent {
    LogEvent {
        company: "c".into(),
        room: "company".into(),
        offset,
        id: format!("e{offset}"),
        event_type: "t".into(),
        payload: json!({}),
        priority: "medium".into(),
        source: "test".into(),
        publisher: None,
        created_at: 0,
        receive: receive.bits(),
        exclude: None,
        meta_json: Default::default(),
    }
}

fn setup(role: Role, last: i64) -> (Feeds, Arc<Member>, Arc<Recorder>) {
    let rec = Arc::new(Recorder::default());
    let feeds = Feeds::default();
    let m = Member::new(
        Arc::new(TestSink(rec.clone())),
        SessionId::new(),
        role,
        "c",
        "company",
        last,
    );
    feeds.attach(m.clone());
    (feeds, m, rec)
}

#[test]
fn notifications_during_catch_up_are_deferred_then_reread() {
    let (feeds, m, rec) = setup(Role::Operator, 0);
    assert!(matches!(feeds.notify(&ev(1, RoleSet::ALL)), Notified::Done));
    assert!(
        rec.got.lock().unwrap().is_empty(),
        "nothing live while catching up"
    );
    assert!(
        !m.finish_catch_up(),
        "a missed notification forces another read"
    );
    m.deliver_caught_up(&ev(1, RoleSet::ALL)).unwrap();
    assert!(m.finish_catch_up());
    feeds.notify(&ev(2, RoleSet::ALL));
    feeds.notify(&ev(2, RoleSet::ALL));
    assert_eq!(*rec.got.lock().unwrap(), vec![1, 2], "no duplicate");
}

#[test]
fn a_gap_hands_the_member_to_catch_up() {
    let (feeds, m, rec) = setup(Role::Operator, 5);
    assert!(m.finish_catch_up());
    match feeds.notify(&ev(7, RoleSet::ALL)) {
        Notified::CatchUp(members) => assert_eq!(members.len(), 1),
        Notified::Done => panic!("gap not detected"),
    }
    assert!(rec.got.lock().unwrap().is_empty());
    assert_eq!(m.last(), 5);
}

#[test]
fn role_filtered_events_advance_the_position_without_sending() {
    let (feeds, m, rec) = setup(Role::Operator, 0);
    assert!(m.finish_catch_up());
    feeds.notify(&ev(1, RoleSet::of(&[Role::Supervisor, Role::Admin])));
    feeds.notify(&ev(2, RoleSet::ALL));
    assert_eq!(*rec.got.lock().unwrap(), vec![2]);
}

#[test]
fn a_full_buffer_hands_the_member_to_catch_up_without_advancing() {
    let (feeds, m, rec) = setup(Role::Operator, 0);
    assert!(m.finish_catch_up());
    rec.full.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(matches!(
        feeds.notify(&ev(1, RoleSet::ALL)),
        Notified::CatchUp(_)
    ));
    assert_eq!(m.last(), 0);
}

#[test]
fn only_what_was_sent_a_window_ago_counts_as_read() {
    let (feeds, m, _rec) = setup(Role::Operator, 0);
    assert!(m.finish_catch_up());
    feeds.notify(&ev(1, RoleSet::ALL));
    std::thread::sleep(Duration::from_millis(100));
    feeds.notify(&ev(2, RoleSet::ALL));
    std::thread::sleep(Duration::from_millis(150));
    // Offset 1 was sent 250 ms ago but shares a sample with offset 2,
    // sent 150 ms ago: neither is older than the 200 ms window yet.
    assert_eq!(m.confirmed(), 0);
    std::thread::sleep(Duration::from_millis(600));
    feeds.notify(&ev(3, RoleSet::ALL));
    assert_eq!(m.confirmed(), 2, "what was sent before the window");
    assert_eq!(m.safe(), 2);
}

#[test]
fn acks_never_exceed_what_was_sent() {
    let (_feeds, m, _rec) = setup(Role::Operator, 3);
    assert_eq!(m.ack(10), 3);
    assert_eq!(m.ack(1), 3, "acks never move back");
}

#[test]
fn a_position_at_or_behind_the_stored_cursor_is_not_written_again() {
    let (feeds, m, _rec) = setup(Role::Operator, 3);
    let key = CursorKey {
        company_id: "c".into(),
        user_id: "u".into(),
        device_id: String::new(),
    };
    assert_eq!(m.unsaved(), Some(3), "no stored cursor known: write it");
    m.track_cursor(key, 3);
    assert_eq!(
        m.unsaved(),
        None,
        "the stored cursor is where the member is"
    );
    assert!(m.cursor_to_save().is_none());
    assert!(m.finish_catch_up());
    feeds.notify(&ev(4, RoleSet::ALL));
    assert_eq!(m.ack(4), 4);
    assert_eq!(m.unsaved(), Some(4), "moved past the stored cursor");
    m.cursor_saved(4);
    assert_eq!(m.unsaved(), None);
}
