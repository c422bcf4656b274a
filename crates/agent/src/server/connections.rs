//! The open connections of the job API: a cap, what each connection is doing, and which one
//! to close when the cap is reached.
//!
//! At the cap a new connection takes the place of the connection that has been idle longest
//! (no request open and no response being written), those that never started a request first:
//! a TLS handshake that never ends or a header that never arrives is what a flood of silent
//! connections looks like, and closing one of them is cheaper than refusing the engine or a
//! `/health` probe. Only when every connection is busy with a request is the new one refused:
//! accepted and closed at once.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::Notify;

/// The open connections.
#[derive(Debug)]
pub(super) struct Registry {
    limit: usize,
    next: AtomicU64,
    open: Mutex<HashMap<u64, Arc<Activity>>>,
}

/// What one connection is doing.
#[derive(Debug)]
pub(super) struct Activity {
    id: u64,
    /// Requests whose handler or response body is still running.
    busy: AtomicUsize,
    /// Whether a request has started on this connection.
    served: AtomicBool,
    /// When the last request started or ended (or the connection was accepted).
    last: Mutex<Instant>,
    /// Notified when the registry closes this connection to make room.
    pub(super) evicted: Notify,
}

/// Whether a new connection may stay.
#[derive(Debug)]
pub(super) enum Admitted {
    /// Under the cap.
    Fresh(Arc<Activity>),
    /// At the cap; an idle connection was closed for it.
    InPlaceOf(Arc<Activity>),
    /// At the cap and every connection is busy.
    Full,
}

/// Marks one request as open on its connection until dropped.
#[derive(Debug)]
pub(super) struct Busy(Arc<Activity>);

/// A response body that keeps its request counted until it has been written.
#[derive(Debug)]
pub(super) struct Counted {
    body: Body,
    _busy: Busy,
}

/// At most one log line a second for a repeated event; counts the rest.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl Registry {
    /// At most `limit` connections.
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a new connection, closing the longest-idle one at the cap.
    pub(super) fn admit(&self) -> Admitted {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = None;
        if open.len() >= self.limit {
            match longest_idle(&open) {
                Some(victim) => evicted = open.remove(&victim),
                None => return Admitted::Full,
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            id,
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last: Mutex::new(Instant::now()),
            evicted: Notify::new(),
        });
        open.insert(id, activity.clone());
        drop(open);
        match evicted {
            Some(victim) => {
                victim.evicted.notify_one();
                Admitted::InPlaceOf(activity)
            }
            None => Admitted::Fresh(activity),
        }
    }

    /// Closes the longest-idle connection (out of file descriptors); false when all are busy.
    pub(super) fn evict_one(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(victim) = longest_idle(&open).and_then(|id| open.remove(&id)) else {
            return false;
        };
        drop(open);
        victim.evicted.notify_one();
        true
    }

    /// Forgets a closed connection.
    pub(super) fn remove(&self, activity: &Activity) {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&activity.id);
    }

    /// The cap.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }
}

/// The idle connection to close first: never served before served, then the oldest activity.
fn longest_idle(open: &HashMap<u64, Arc<Activity>>) -> Option<u64> {
    open.values()
        .filter(|activity| activity.busy.load(Ordering::Acquire) == 0)
        .min_by_key(|activity| (activity.served.load(Ordering::Acquire), activity.last()))
        .map(|activity| activity.id)
}

impl Activity {
    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn touch(&self) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }

    /// Completes once the connection has had no open request for `idle` (or, before its first
    /// request, for `first`).
    pub(super) async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            let after = if self.served.load(Ordering::Acquire) {
                idle
            } else {
                first
            };
            if self.busy.load(Ordering::Acquire) > 0 {
                tokio::time::sleep(after).await;
                continue;
            }
            let deadline = self.last() + after;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }

    /// Counts a request as open until the returned guard is dropped.
    pub(super) fn begin(self: &Arc<Self>) -> Busy {
        self.served.store(true, Ordering::Release);
        self.busy.fetch_add(1, Ordering::AcqRel);
        self.touch();
        Busy(self.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Counted {
    /// `body` as a body that counts `busy` until it ends.
    pub(super) fn body(body: Body, busy: Busy) -> Body {
        Body::new(Self { body, _busy: busy })
    }
}

impl HttpBody for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Throttle {
    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub(super) fn ready(&self) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *last = Some(now);
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

/// The soft open-files limit of this process, from `/proc/self/limits` (Linux).
pub(super) fn open_files_limit() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_cap_the_longest_idle_goes_and_busy_ones_stay() {
        let registry = Registry::new(2);
        let Admitted::Fresh(first) = registry.admit() else {
            panic!("under the cap")
        };
        let Admitted::Fresh(second) = registry.admit() else {
            panic!("under the cap")
        };
        // `first` has served a request and is busy; `second` never started one.
        let busy = first.begin();
        let Admitted::InPlaceOf(third) = registry.admit() else {
            panic!("an idle connection makes room")
        };
        assert!(!registry.open.lock().expect("lock").contains_key(&second.id));
        let _busy_third = third.begin();
        assert!(matches!(registry.admit(), Admitted::Full));
        drop(busy);
        assert!(matches!(registry.admit(), Admitted::InPlaceOf(_)));
        assert!(!registry.open.lock().expect("lock").contains_key(&first.id));
    }

    #[test]
    fn throttle_logs_once_a_second() {
        let throttle = Throttle::default();
        assert_eq!(throttle.ready(), Some(0));
        assert_eq!(throttle.ready(), None);
        assert_eq!(throttle.ready(), None);
        *throttle.last.lock().expect("lock") = Some(Instant::now() - Duration::from_secs(2));
        assert_eq!(throttle.ready(), Some(2));
    }

    #[test]
    fn reads_the_open_files_limit() {
        assert!(open_files_limit().is_some_and(|limit| limit > 0));
    }
}
