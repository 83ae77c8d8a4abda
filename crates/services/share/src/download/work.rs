//! The chunks still to fetch, shared by every worker of a download: a pure structure,
//! unit-tested apart from the I/O around it.

use std::collections::{HashMap, HashSet, VecDeque};

#[derive(Default)]
pub(crate) struct Work {
    /// Chunks this download needs from the network.
    pub total: usize,
    pub queue: VecDeque<usize>,
    /// Chunks being fetched, and by how many workers.
    inflight: HashMap<usize, u8>,
    done: HashSet<usize>,
}

impl Work {
    pub fn new(queue: VecDeque<usize>) -> Self {
        Self {
            total: queue.len(),
            queue,
            ..Self::default()
        }
    }

    /// Next chunk to fetch. When the queue is empty, a chunk that only one (maybe slow)
    /// provider is fetching is handed out again (endgame), so one stalled provider cannot
    /// hold up the end of a download.
    pub fn take(&mut self) -> Option<usize> {
        let i = match self.queue.pop_front() {
            Some(i) => i,
            None => {
                *self
                    .inflight
                    .iter()
                    .find(|(i, n)| **n == 1 && !self.done.contains(*i))?
                    .0
            }
        };
        *self.inflight.entry(i).or_default() += 1;
        Some(i)
    }

    /// A fetch of `i` ended without landing it.
    pub fn give_back(&mut self, i: usize) {
        let left = self.inflight.get_mut(&i).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) {
            self.inflight.remove(&i);
            if !self.done.contains(&i) {
                self.queue.push_front(i);
            }
        }
    }

    /// `i` landed; returns false when another worker landed it first.
    pub fn land(&mut self, i: usize) -> bool {
        if let Some(n) = self.inflight.get_mut(&i) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inflight.remove(&i);
            }
        }
        self.done.insert(i)
    }

    pub fn has_work(&self) -> bool {
        !self.queue.is_empty()
    }

    pub fn finished(&self) -> bool {
        self.done.len() >= self.total
    }
}

#[cfg(test)]
mod tests {
    use super::Work;

    #[test]
    fn endgame_hands_out_a_stalled_chunk_once_more_and_lands_it_once() {
        let mut w = Work::new([0, 1].into_iter().collect());
        assert_eq!(w.take(), Some(0));
        assert_eq!(w.take(), Some(1));
        // Queue empty: chunk 0 or 1 goes out a second time, then nothing more.
        let again = w.take();
        assert!(matches!(again, Some(0 | 1)));
        let other = w.take();
        assert!(matches!(other, Some(0 | 1)) && other != again);
        assert_eq!(w.take(), None);
        assert!(w.land(0));
        assert!(!w.land(0), "a chunk lands once");
        // A failed fetch of a chunk nobody else holds goes back in the queue.
        w.give_back(1);
        w.give_back(1);
        assert!(w.has_work());
        assert_eq!(w.take(), Some(1));
        assert!(!w.finished());
        assert!(w.land(1));
        assert!(w.finished());
    }
}
