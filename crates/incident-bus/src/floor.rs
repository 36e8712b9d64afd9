//! The ack floor of a consumer that acks cumulatively (`AckPolicy::All`): one `+ACK` on a
//! message covers every earlier one, so it may only be sent on a message below which every
//! stream sequence was handled.
//!
//! The floor is a contiguous prefix of stream sequences. It starts at the server's ack floor;
//! a sequence joins it once its handling finished (recorded, seen before, or dead-lettered).
//! A sequence that was never delivered to this process (a delivery lost with a connection, one
//! taken by a process that was killed, one retried later) is a hole: the floor stops below it
//! until it is handled, and the consumer reads a hole that stays open from the stream by its
//! sequence. This holds because the consumer reads a stream whose sequences it sees without
//! holes of their own (no filter; limits remove only the oldest messages, which the read by
//! sequence finds missing and counts as handled).

use std::collections::BTreeMap;

/// The handled sequences above the acked floor, and what to ack them with.
#[derive(Debug)]
pub struct AckFloor<T> {
    /// Every sequence up to this one is acked on the server.
    acked: u64,
    /// Every sequence up to this one is handled (at or above `acked`).
    handled: u64,
    /// Sequences above `handled` whose handling finished, with the message to ack them with
    /// (`None` for one read from the stream by sequence: it has no ack subject).
    done: BTreeMap<u64, Option<T>>,
    /// Handled sequences in `(acked, handled]` that carry an ack subject: the highest is acked.
    carrier: Option<(u64, T)>,
}

impl<T> AckFloor<T> {
    /// A floor at `acked`, the server's ack floor.
    pub fn new(acked: u64) -> Self {
        AckFloor {
            acked,
            handled: acked,
            done: BTreeMap::new(),
            carrier: None,
        }
    }

    /// Every sequence up to this one is handled.
    pub fn handled(&self) -> u64 {
        self.handled
    }

    /// Every sequence up to this one was acked.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// The lowest sequence not handled yet.
    pub fn first_open(&self) -> u64 {
        self.handled + 1
    }

    /// Whether `seq` is handled (at or below the floor, or finished above it).
    pub fn is_handled(&self, seq: u64) -> bool {
        seq <= self.handled || self.done.contains_key(&seq)
    }

    /// The server acked everything up to `seq` (learned when the consumer is opened again).
    pub fn server_acked(&mut self, seq: u64) {
        if seq <= self.acked {
            return;
        }
        self.acked = seq;
        if seq > self.handled {
            self.handled = seq;
            self.done = self.done.split_off(&(seq + 1));
            self.carrier = None;
            self.extend();
        } else if self.carrier.as_ref().is_some_and(|(c, _)| *c <= seq) {
            self.carrier = None;
        }
    }

    /// Every sequence up to `seq` needs no handling (the stream no longer holds it).
    pub fn pass_through(&mut self, seq: u64) {
        if seq <= self.handled {
            return;
        }
        self.handled = seq;
        self.done = self.done.split_off(&(seq + 1));
        self.extend();
    }

    /// Forgets every ack subject held (they belong to a consumer that was created again); the
    /// sequences stay handled.
    pub fn forget_ack_subjects(&mut self) {
        self.carrier = None;
        for with in self.done.values_mut() {
            *with = None;
        }
    }

    /// `seq`, handled and not acked, was delivered again with `with`: it carries the next ack
    /// when it is higher than the one held.
    pub fn offer(&mut self, seq: u64, with: T) {
        if seq > self.handled || seq <= self.acked {
            return;
        }
        if self.carrier.as_ref().is_none_or(|(c, _)| *c <= seq) {
            self.carrier = Some((seq, with));
        }
    }

    /// The handling of `seq` finished; `with` is its message (`None` when it was read by
    /// sequence). A sequence already handled changes nothing.
    pub fn finished(&mut self, seq: u64, with: Option<T>) {
        if seq <= self.handled {
            return;
        }
        self.done.insert(seq, with);
        self.extend();
    }

    /// Moves the floor over the finished sequences that follow it.
    fn extend(&mut self) {
        while let Some(entry) = self.done.first_entry() {
            if *entry.key() != self.handled + 1 {
                break;
            }
            let (seq, with) = entry.remove_entry();
            self.handled = seq;
            if let Some(m) = with {
                self.carrier = Some((seq, m));
            }
        }
    }

    /// The message to ack now, if the floor moved past the last ack: acking it covers every
    /// sequence up to its own. The caller reports the ack with [`AckFloor::acked_through`].
    pub fn to_ack(&mut self) -> Option<(u64, T)> {
        self.carrier.take()
    }

    /// The ack of `seq` was sent.
    pub fn acked_through(&mut self, seq: u64) {
        self.acked = self.acked.max(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_moves_only_over_a_contiguous_prefix() {
        let mut f = AckFloor::new(10);
        f.finished(12, Some("m12"));
        assert_eq!(f.handled(), 10);
        assert_eq!(f.to_ack(), None, "12 waits for 11");
        f.finished(11, Some("m11"));
        assert_eq!(f.handled(), 12);
        assert_eq!(f.to_ack(), Some((12, "m12")), "one ack, on the highest");
        f.acked_through(12);
        assert_eq!(f.acked(), 12);
        assert_eq!(f.to_ack(), None);
        assert_eq!(f.first_open(), 13);
    }

    #[test]
    fn a_sequence_read_by_sequence_is_covered_by_a_later_ack() {
        let mut f = AckFloor::new(0);
        f.finished(1, Some("m1"));
        f.finished(2, None);
        assert_eq!(f.handled(), 2);
        assert_eq!(f.to_ack(), Some((1, "m1")), "2 has no ack subject");
        f.acked_through(1);
        assert_eq!(f.to_ack(), None);
        f.finished(3, Some("m3"));
        assert_eq!(f.to_ack(), Some((3, "m3")));
    }

    #[test]
    fn a_hole_holds_everything_after_it() {
        let mut f = AckFloor::new(0);
        for s in [1, 2, 4, 5, 6] {
            f.finished(s, Some(s));
        }
        assert_eq!(f.to_ack(), Some((2, 2)));
        f.acked_through(2);
        assert_eq!(f.first_open(), 3);
        assert!(f.is_handled(5) && !f.is_handled(3));
        assert_eq!(f.to_ack(), None);
        f.finished(3, Some(3));
        assert_eq!(f.to_ack(), Some((6, 6)));
        assert_eq!(f.first_open(), 7);
    }

    #[test]
    fn finishing_twice_or_below_the_floor_changes_nothing() {
        let mut f = AckFloor::new(5);
        f.finished(3, Some(3));
        assert_eq!((f.handled(), f.to_ack()), (5, None));
        f.finished(6, Some(6));
        f.finished(6, Some(60));
        assert_eq!(f.to_ack(), Some((6, 6)));
    }

    #[test]
    fn passing_over_removed_sequences_keeps_the_ack_subject_below_them() {
        let mut f = AckFloor::new(0);
        f.finished(1, Some(1));
        f.finished(7, Some(7));
        // 2..=5 are no longer in the stream
        f.pass_through(5);
        assert_eq!(f.handled(), 5, "6 is still open");
        assert_eq!(f.to_ack(), Some((1, 1)));
        f.finished(6, None);
        assert_eq!(f.handled(), 7);
        assert_eq!(f.to_ack(), Some((7, 7)));
        f.pass_through(3);
        assert_eq!(f.handled(), 7);
    }

    #[test]
    fn a_consumer_created_again_leaves_nothing_to_ack_with() {
        let mut f = AckFloor::new(0);
        f.finished(1, Some(1));
        f.finished(3, Some(3));
        f.forget_ack_subjects();
        assert_eq!(f.to_ack(), None);
        f.finished(2, None);
        assert_eq!(
            (f.handled(), f.to_ack()),
            (3, None),
            "handled, with nothing to ack it by"
        );
        f.finished(4, Some(4));
        assert_eq!(f.to_ack(), Some((4, 4)));
    }

    #[test]
    fn a_handled_message_delivered_again_carries_the_ack_when_it_is_the_highest() {
        let mut f = AckFloor::new(0);
        for s in 1..=4 {
            f.finished(s, Some(s * 10));
        }
        assert_eq!(f.to_ack(), Some((4, 40)));
        // the ack of 4 was lost: 2 and 4 come again
        f.offer(2, 21);
        assert_eq!(f.to_ack(), Some((2, 21)));
        f.offer(4, 41);
        f.offer(3, 31);
        assert_eq!(f.to_ack(), Some((4, 41)), "the highest carries it");
        f.acked_through(4);
        f.offer(4, 42);
        assert_eq!(f.to_ack(), None, "acked already");
        f.offer(5, 50);
        assert_eq!(f.to_ack(), None, "not handled");
    }

    #[test]
    fn the_servers_floor_when_reopened_skips_what_it_acked() {
        let mut f = AckFloor::new(0);
        f.finished(1, Some(1));
        f.finished(9, Some(9));
        // another process acked up to 8 meanwhile
        f.server_acked(8);
        assert_eq!(f.handled(), 9, "9 follows the server's floor");
        assert_eq!(f.to_ack(), Some((9, 9)));
        f.acked_through(9);
        f.server_acked(4);
        assert_eq!((f.acked(), f.handled()), (9, 9));
    }
}
