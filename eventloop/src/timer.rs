//! A timer queue: a slab of timers plus a binary min-heap of deadlines with
//! lazy deletion.
//!
//! - insert: O(log n) (O(1) when deadlines arrive in order, the common case
//!   of many timers with the same timeout);
//! - cancel: O(1): the slab slot is freed (and its callback dropped at once);
//!   the heap entry stays behind and is skipped when it reaches the top. When
//!   dead entries outnumber live ones the heap is rebuilt (O(n), amortised
//!   O(1) per cancel), so memory stays proportional to live timers.
//!
//! A heap entry is `(deadline, seq, slot)`; it is live only while its slot
//! still carries the same `seq` (sequence numbers are never reused), so a
//! freed and reused slot cannot be confused with an old entry. Equal
//! deadlines fire in insertion order (`seq` breaks ties).
//!
//! Deadlines are nanoseconds on `CLOCK_MONOTONIC`. Both the event loop's
//! timers and the event server's park timeouts use this structure.

/// Identifies a timer in a [`TimerHeap`]: slot index plus generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct TimerKey {
    pub(crate) idx: u32,
    pub(crate) gen_: u32,
}

struct Slot<T> {
    /// Bumped whenever the slot is freed, so stale keys do not match.
    gen_: u32,
    /// INVARIANT: the `seq` of this slot's live heap entry, or 0 for none.
    seq: u64,
    /// The payload; `None` while taken out (a running periodic timer).
    value: Option<T>,
    /// Whether the slot belongs to a timer (pending or running).
    used: bool,
}

/// See the module documentation.
pub(crate) struct TimerHeap<T> {
    heap: Heap,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    next_seq: u64,
    /// Slots with a live heap entry.
    scheduled: usize,
}

impl<T> Default for TimerHeap<T> {
    fn default() -> Self {
        TimerHeap {
            heap: Heap::default(),
            slots: Vec::new(),
            free: Vec::new(),
            next_seq: 1,
            scheduled: 0,
        }
    }
}

impl<T> TimerHeap<T> {
    /// Number of timers (pending or running).
    pub(crate) fn len(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// The sequence number the next insert will get: timers inserted from
    /// now on have `seq >= next_seq()`.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    fn push(&mut self, idx: u32, at: u64) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.slots[idx as usize].seq = seq;
        self.scheduled += 1;
        self.heap.push(Entry { at, seq, idx });
    }

    /// Schedule `value` at `at` (ns).
    pub(crate) fn insert(&mut self, at: u64, value: T) -> TimerKey {
        let idx = match self.free.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.slots.len()).expect("fewer than 2^32 timers");
                self.slots.push(Slot {
                    gen_: 0,
                    seq: 0,
                    value: None,
                    used: false,
                });
                i
            }
        };
        let slot = &mut self.slots[idx as usize];
        slot.used = true;
        slot.value = Some(value);
        let key = TimerKey {
            idx,
            gen_: slot.gen_,
        };
        self.push(idx, at);
        key
    }

    fn slot_mut(&mut self, key: TimerKey) -> Option<&mut Slot<T>> {
        self.slots
            .get_mut(key.idx as usize)
            .filter(|s| s.used && s.gen_ == key.gen_)
    }

    /// Whether `key` names a pending or running timer.
    pub(crate) fn contains(&self, key: TimerKey) -> bool {
        self.slots
            .get(key.idx as usize)
            .is_some_and(|s| s.used && s.gen_ == key.gen_)
    }

    /// Cancel a timer. Returns `None` if `key` is unknown; otherwise the
    /// payload (`Some(None)` when it was taken out by [`take_due`](Self::take_due)).
    pub(crate) fn cancel(&mut self, key: TimerKey) -> Option<Option<T>> {
        let slot = self.slot_mut(key)?;
        let value = slot.value.take();
        let had_entry = slot.seq != 0;
        slot.seq = 0;
        slot.used = false;
        slot.gen_ = slot.gen_.wrapping_add(1);
        if had_entry {
            self.scheduled -= 1;
        }
        self.free.push(key.idx);
        self.maybe_compact();
        Some(value)
    }

    /// Rebuild the heap when dead entries dominate.
    fn maybe_compact(&mut self) {
        let len = self.heap.len();
        if len > 1024 && len > 2 * self.scheduled {
            let slots = &self.slots;
            self.heap.retain(|e| slots[e.idx as usize].seq == e.seq);
        }
        if self.len() == 0 && self.heap.len() > 1024 {
            self.heap = Heap::default();
        }
    }

    /// Drop dead entries from the top of the heap.
    fn skip_dead(&mut self) {
        while let Some(e) = self.heap.peek() {
            if self.slots[e.idx as usize].seq == e.seq {
                return;
            }
            self.heap.pop();
        }
    }

    /// The earliest pending deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<u64> {
        self.skip_dead();
        self.heap.peek().map(|e| e.at)
    }

    /// Take out the earliest timer if it is due at `now` and was inserted
    /// before `seq_limit`. Its slot stays reserved (cancel still works and is
    /// seen by [`finish`](Self::finish)); call `finish` or `cancel` after.
    pub(crate) fn take_due(&mut self, now: u64, seq_limit: u64) -> Option<(TimerKey, u64, T)> {
        self.skip_dead();
        let Entry { at, seq, idx } = *self.heap.peek()?;
        if at > now || seq >= seq_limit {
            return None;
        }
        self.heap.pop();
        self.scheduled -= 1;
        let slot = &mut self.slots[idx as usize];
        slot.seq = 0;
        let value = slot.value.take()?;
        Some((
            TimerKey {
                idx,
                gen_: slot.gen_,
            },
            at,
            value,
        ))
    }

    /// After [`take_due`](Self::take_due): reschedule at `again` with the
    /// payload, or free the slot. Returns `false` (and drops the payload) if
    /// the timer was cancelled meanwhile.
    pub(crate) fn finish(&mut self, key: TimerKey, again: Option<(u64, T)>) -> bool {
        if self.slot_mut(key).is_none() {
            return false;
        }
        match again {
            Some((at, value)) => {
                self.slots[key.idx as usize].value = Some(value);
                self.push(key.idx, at);
            }
            None => {
                self.cancel(key);
            }
        }
        true
    }

    /// Remove a timer that fired and is done, in one step (for one-shot use).
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(TimerKey, T)> {
        let (key, _, value) = self.take_due(now, u64::MAX)?;
        self.cancel(key);
        Some((key, value))
    }
}

#[derive(Clone, Copy)]
struct Entry {
    at: u64,
    seq: u64,
    idx: u32,
}

impl Entry {
    #[inline(always)]
    fn before(&self, o: &Entry) -> bool {
        self.at < o.at || (self.at == o.at && self.seq < o.seq)
    }
}

/// A 4-ary min-heap ordered by `(at, seq)`.
#[derive(Default)]
struct Heap {
    v: Vec<Entry>,
}

impl Heap {
    fn len(&self) -> usize {
        self.v.len()
    }

    fn peek(&self) -> Option<&Entry> {
        self.v.first()
    }

    fn push(&mut self, e: Entry) {
        self.v.push(e);
        self.sift_up(self.v.len() - 1);
    }

    fn pop(&mut self) -> Option<Entry> {
        let last = self.v.pop()?;
        if self.v.is_empty() {
            return Some(last);
        }
        let top = std::mem::replace(&mut self.v[0], last);
        self.sift_down(0);
        Some(top)
    }

    fn sift_up(&mut self, mut i: usize) {
        let e = self.v[i];
        while i > 0 {
            let parent = (i - 1) / 4;
            if !e.before(&self.v[parent]) {
                break;
            }
            self.v[i] = self.v[parent];
            i = parent;
        }
        self.v[i] = e;
    }

    fn sift_down(&mut self, mut i: usize) {
        let len = self.v.len();
        let e = self.v[i];
        loop {
            let first = 4 * i + 1;
            if first >= len {
                break;
            }
            let mut best = first;
            for c in first + 1..(first + 4).min(len) {
                if self.v[c].before(&self.v[best]) {
                    best = c;
                }
            }
            if !self.v[best].before(&e) {
                break;
            }
            self.v[i] = self.v[best];
            i = best;
        }
        self.v[i] = e;
    }

    /// Keep the entries `keep` accepts and restore the heap order (O(n)).
    fn retain(&mut self, keep: impl FnMut(&Entry) -> bool) {
        self.v.retain(keep);
        if self.v.len() > 1 {
            for i in (0..=(self.v.len() - 2) / 4).rev() {
                self.sift_down(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_in_deadline_then_insertion_order() {
        let mut h = TimerHeap::default();
        h.insert(30, "c");
        h.insert(10, "a");
        h.insert(10, "b");
        h.insert(20, "x");
        let mut out = vec![];
        while let Some((_, v)) = h.pop_due(25) {
            out.push(v);
        }
        assert_eq!(out, ["a", "b", "x"]);
        assert_eq!(h.next_deadline(), Some(30));
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn cancelled_never_fire_and_stale_keys_do_not_match() {
        let mut h = TimerHeap::default();
        let a = h.insert(10, 1);
        assert_eq!(h.cancel(a), Some(Some(1)));
        assert_eq!(h.cancel(a), None);
        let b = h.insert(10, 2); // reuses a's slot with a new generation
        assert_eq!(a.idx, b.idx);
        assert_ne!(a, b);
        assert!(!h.contains(a));
        assert_eq!(h.pop_due(100).map(|(_, v)| v), Some(2));
        assert_eq!(h.pop_due(100), None);
    }

    #[test]
    fn compaction_keeps_memory_proportional_to_live_timers() {
        let mut h = TimerHeap::default();
        let keys: Vec<_> = (0..10_000u64).map(|i| h.insert(i, i)).collect();
        for k in &keys[..9_990] {
            h.cancel(*k);
        }
        assert!(h.heap.len() < 4_000, "heap has {} entries", h.heap.len());
        let left: Vec<_> = std::iter::from_fn(|| h.pop_due(u64::MAX).map(|(_, v)| v)).collect();
        assert_eq!(left, (9_990..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn heap_pops_sorted_after_retain() {
        let mut h = Heap::default();
        let mut x: u64 = 12345;
        for seq in 0..5_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.push(Entry {
                at: x >> 50,
                seq,
                idx: seq as u32,
            });
        }
        h.retain(|e| e.seq % 3 != 0);
        let mut last = (0, 0);
        let mut n = 0;
        while let Some(e) = h.pop() {
            assert!((e.at, e.seq) > last || n == 0);
            assert!(e.seq % 3 != 0);
            last = (e.at, e.seq);
            n += 1;
        }
        assert_eq!(n, 5_000 - 1_667);
    }

    #[test]
    fn running_timer_cancelled_meanwhile_is_not_rescheduled() {
        let mut h = TimerHeap::default();
        let k = h.insert(5, ());
        let (k2, at, v) = h.take_due(5, u64::MAX).unwrap();
        assert_eq!((k2, at), (k, 5));
        assert!(h.contains(k));
        assert_eq!(h.cancel(k), Some(None));
        assert!(!h.finish(k, Some((10, v))));
        assert_eq!(h.next_deadline(), None);
    }

    #[test]
    fn seq_limit_defers_timers_added_during_a_round() {
        let mut h = TimerHeap::default();
        h.insert(1, 'a');
        let limit = h.next_seq();
        h.insert(0, 'b');
        // 'b' is earlier but newer than the limit: it waits for the next round.
        assert!(h.take_due(10, limit).is_none());
        assert_eq!(h.take_due(10, u64::MAX).map(|t| t.2), Some('b'));
    }
}
