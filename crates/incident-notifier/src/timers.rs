//! The notifier's timers: one ordered set of due instants (retries of notifications, page
//! acknowledgement deadlines). The engine sleeps until the first one; on start the set is rebuilt
//! from the state folded from the log, and whatever came due while the service was down fires at
//! once. Pure data structure.

use std::collections::{BTreeSet, HashMap};

use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TimerKey {
    /// Attempt (or retry) the delivery of this notification.
    Attempt(String),
    /// This page's acknowledgement deadline.
    PageDeadline(String),
}

#[derive(Debug, Default)]
pub struct Timers {
    queue: BTreeSet<(Timestamp, TimerKey)>,
    index: HashMap<TimerKey, Timestamp>,
}

impl Timers {
    /// Sets `key` to fire at `at`, replacing an earlier setting of the same key.
    pub fn schedule(&mut self, key: TimerKey, at: Timestamp) {
        if let Some(old) = self.index.insert(key.clone(), at) {
            self.queue.remove(&(old, key.clone()));
        }
        self.queue.insert((at, key));
    }

    pub fn cancel(&mut self, key: &TimerKey) {
        if let Some(old) = self.index.remove(key) {
            self.queue.remove(&(old, key.clone()));
        }
    }

    pub fn next_due(&self) -> Option<Timestamp> {
        self.queue.first().map(|(at, _)| *at)
    }

    /// Removes and returns the keys due at `now`, earliest first.
    pub fn pop_due(&mut self, now: Timestamp) -> Vec<TimerKey> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.queue.first() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.queue.pop_first() {
                self.index.remove(&key);
                out.push(key);
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
        self.index.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn fires_in_order_and_rescheduling_replaces() {
        let mut t = Timers::default();
        t.schedule(TimerKey::Attempt("a".into()), at(30));
        t.schedule(TimerKey::PageDeadline("p".into()), at(10));
        t.schedule(TimerKey::Attempt("b".into()), at(20));
        t.schedule(TimerKey::Attempt("a".into()), at(5));
        assert_eq!(t.len(), 3);
        assert_eq!(t.next_due(), Some(at(5)));
        assert_eq!(t.pop_due(at(4)), vec![]);
        assert_eq!(
            t.pop_due(at(15)),
            vec![
                TimerKey::Attempt("a".into()),
                TimerKey::PageDeadline("p".into())
            ]
        );
        t.cancel(&TimerKey::Attempt("b".into()));
        assert!(t.is_empty());
        assert_eq!(t.next_due(), None);
    }
}
