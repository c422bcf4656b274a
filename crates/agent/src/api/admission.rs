//! Back-pressure: at most `max_jobs` jobs run, at most `queue_limit` more wait. Every admitted
//! job holds its own [`Ticket`] and, while it runs, its own [`Slot`]; both belong to the job's
//! task, so a job that is dropped or aborted (its caller went away) frees them at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The counters and the running slots.
#[derive(Debug)]
pub(crate) struct Admission {
    admitted: AtomicUsize,
    running: AtomicUsize,
    capacity: usize,
    slots: Arc<Semaphore>,
}

/// One admitted job (waiting or running); released on drop.
#[derive(Debug)]
pub(crate) struct Ticket {
    admission: Arc<Admission>,
}

/// One running job; released on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    admission: Arc<Admission>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// `max_jobs` running at once, `capacity` (running plus waiting) in all.
    pub(crate) fn new(max_jobs: usize, capacity: usize) -> Self {
        Self {
            admitted: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            capacity,
            slots: Arc::new(Semaphore::new(max_jobs)),
        }
    }

    /// Running plus waiting jobs the agent can hold at all.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// `(running, waiting)` now.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let admitted = self.admitted.load(Ordering::Relaxed);
        let running = self.running.load(Ordering::Relaxed);
        (running, admitted.saturating_sub(running))
    }

    /// Admits `count` jobs at once, or none: one ticket per job.
    pub(crate) fn admit(self: &Arc<Self>, count: usize) -> Option<Vec<Ticket>> {
        let before = self.admitted.fetch_add(count, Ordering::AcqRel);
        if before.saturating_add(count) > self.capacity {
            self.admitted.fetch_sub(count, Ordering::AcqRel);
            return None;
        }
        Some(
            (0..count)
                .map(|_| Ticket {
                    admission: self.clone(),
                })
                .collect(),
        )
    }
}

impl Ticket {
    /// Waits for a running slot (cancel-safe: dropping the future gives nothing up).
    pub(crate) async fn slot(&self) -> Slot {
        // The semaphore is never closed, so acquiring only fails if that changes; run anyway.
        let permit = self.admission.slots.clone().acquire_owned().await.ok();
        self.admission.running.fetch_add(1, Ordering::AcqRel);
        Slot {
            admission: self.admission.clone(),
            _permit: permit,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.admission.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.running.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tickets_and_slots_are_released_by_their_owner() {
        let admission = Arc::new(Admission::new(1, 3));
        assert!(admission.admit(4).is_none(), "over capacity");
        let mut tickets = admission.admit(3).expect("fits");
        assert!(admission.admit(1).is_none(), "full");
        assert_eq!(admission.counts(), (0, 3));
        let slot = tickets[0].slot().await;
        assert_eq!(admission.counts(), (1, 2));
        // The second job waits for the only slot; dropping it frees its ticket.
        let waiting = tickets.pop().expect("ticket");
        let wait = tokio::spawn(async move {
            let _slot = waiting.slot().await;
        });
        tokio::task::yield_now().await;
        wait.abort();
        let _ = wait.await;
        assert_eq!(admission.counts(), (1, 1));
        drop(slot);
        drop(tickets);
        assert_eq!(admission.counts(), (0, 0));
    }
}
