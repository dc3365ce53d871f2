//! Offsets of a durable run, per room: what publishers were acknowledged and
//! what the subscriber received, and the check that each fresh room holds
//! exactly 1..=N, every one delivered once.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::support::Errors;

/// Offsets per room, as acknowledged to publishers and as delivered.
#[derive(Default)]
pub struct Log {
    pub acked: BTreeMap<String, Vec<u64>>,
    pub acked_n: usize,
    pub acked_without_offset: u64,
    pub delivered: BTreeMap<String, Vec<u64>>,
    pub delivered_n: usize,
    pub errors: Errors,
    pub unacked: u64,
}

impl Log {
    pub fn ack(&mut self, room: &str, offset: u64) {
        self.acked.entry(room.to_string()).or_default().push(offset);
        self.acked_n += 1;
    }
}

/// Gap/duplicate analysis of one room's acknowledged and delivered offsets.
#[derive(Default)]
struct RoomCheck {
    acked: u64,
    gaps: u64,
    duplicates: u64,
    not_from_1: bool,
    missing: u64,
    delivered_duplicates: u64,
    out_of_order: u64,
}

fn check_room(acked: &[u64], delivered: &[u64]) -> RoomCheck {
    let mut a = acked.to_vec();
    a.sort_unstable();
    let n = a.len() as u64;
    a.dedup();
    let gaps = match (a.first(), a.last()) {
        (Some(f), Some(l)) => (l - f + 1) - a.len() as u64,
        _ => 0,
    };
    let mut d = delivered.to_vec();
    d.sort_unstable();
    d.dedup();
    RoomCheck {
        acked: n,
        gaps,
        duplicates: n - a.len() as u64,
        not_from_1: a.first().is_some_and(|f| *f != 1),
        missing: a.iter().filter(|o| d.binary_search(o).is_err()).count() as u64,
        delivered_duplicates: (delivered.len() - d.len()) as u64,
        out_of_order: delivered.windows(2).filter(|w| w[1] < w[0]).count() as u64,
    }
}

/// Every room fresh, so each must hold exactly 1..=N, all delivered.
pub fn check_offsets(log: &Log) -> Value {
    let mut t = RoomCheck::default();
    let none = Vec::new();
    for (room, acked) in &log.acked {
        let c = check_room(acked, log.delivered.get(room).unwrap_or(&none));
        t.acked += c.acked;
        t.gaps += c.gaps;
        t.duplicates += c.duplicates;
        t.not_from_1 |= c.not_from_1;
        t.missing += c.missing;
        t.delivered_duplicates += c.delivered_duplicates;
        t.out_of_order += c.out_of_order;
    }
    let gapless = t.acked > 0 && t.gaps == 0 && t.duplicates == 0 && !t.not_from_1;
    json!({
        "rooms": log.acked.len(),
        "acked": t.acked,
        "gaps": t.gaps,
        "duplicates": t.duplicates,
        "first_offset_not_1": t.not_from_1,
        "gapless": gapless,
        "delivered": log.delivered_n,
        "delivered_missing": t.missing,
        "delivered_duplicates": t.delivered_duplicates,
        "delivered_out_of_order": t.out_of_order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(acked: &[u64], delivered: &[u64]) -> Log {
        let mut l = Log::default();
        for o in acked {
            l.ack("r", *o);
        }
        l.delivered.insert("r".into(), delivered.to_vec());
        l.delivered_n = delivered.len();
        l
    }

    #[test]
    fn gapless_offsets_pass() {
        let v = check_offsets(&log(&[3, 1, 2], &[1, 3, 2]));
        assert_eq!(v["gapless"], json!(true));
        assert_eq!(v["delivered_out_of_order"], json!(1));
        assert_eq!(v["delivered_missing"], json!(0));
    }

    #[test]
    fn gaps_duplicates_and_missing_deliveries_are_found() {
        let v = check_offsets(&log(&[1, 2, 2, 5], &[1, 2]));
        assert_eq!(v["gapless"], json!(false));
        assert_eq!(v["gaps"], json!(2));
        assert_eq!(v["duplicates"], json!(1));
        assert_eq!(v["delivered_missing"], json!(1));
        // Not starting at 1 in a fresh room is a gap too.
        assert_eq!(check_offsets(&log(&[2, 3], &[]))["gapless"], json!(false));
    }

    #[test]
    fn rooms_are_checked_separately() {
        let mut l = log(&[1, 2], &[1, 2]);
        l.ack("s", 1);
        l.ack("s", 2);
        assert_eq!(check_offsets(&l)["gapless"], json!(true));
        l.ack("s", 4);
        assert_eq!(check_offsets(&l)["gaps"], json!(1));
    }
}
