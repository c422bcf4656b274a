//! The open connections of the job API: a cap, what each connection is doing, and which one
//! to close when the cap is reached.
//!
//! At the cap a new connection takes the place of another, in this order: one that never
//! started a request (a TLS handshake that never ends or a header that never arrives is what a
//! flood of silent connections looks like), then one on which no request ever passed
//! authentication, even with a request open (an unauthenticated client could otherwise hold
//! the cap with slow-body requests that only earn a 401), then the authenticated one idle
//! longest (no request open and no response being written). Closing any of them is cheaper
//! than refusing the engine or a `/health` probe. Only when every connection is authenticated
//! and busy is the new one refused: accepted and closed at once. The API marks a connection
//! authenticated through the [`Connection`] extension every request carries.

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
    /// Whether a request on this connection has passed authentication.
    authenticated: AtomicBool,
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
    /// At the cap; another connection was closed for it.
    InPlaceOf(Arc<Activity>),
    /// At the cap and every connection is authenticated and busy.
    Full,
}

/// The request extension through which the API tells the registry that a request on this
/// connection passed authentication.
#[derive(Debug, Clone)]
pub(crate) struct Connection(Arc<Activity>);

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

    /// Registers a new connection, closing another one at the cap (see [`victim`]).
    pub(super) fn admit(&self) -> Admitted {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let mut evicted = None;
        if open.len() >= self.limit {
            match victim(&open) {
                Some(victim) => evicted = open.remove(&victim),
                None => return Admitted::Full,
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let activity = Arc::new(Activity {
            id,
            busy: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
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

    /// Closes one connection (out of file descriptors, see [`victim`]); false when every
    /// connection is authenticated and busy.
    pub(super) fn evict_one(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(victim) = victim(&open).and_then(|id| open.remove(&id)) else {
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

/// The connection to close first: never served, then never authenticated (idle before busy),
/// then authenticated and idle; the oldest activity first within each. Authenticated busy
/// connections stay.
fn victim(open: &HashMap<u64, Arc<Activity>>) -> Option<u64> {
    open.values()
        .filter_map(|activity| {
            let busy = activity.busy.load(Ordering::Acquire) > 0;
            let authenticated = activity.authenticated.load(Ordering::Acquire);
            let served = activity.served.load(Ordering::Acquire);
            (!(authenticated && busy))
                .then(|| (served, authenticated, busy, activity.last(), activity.id))
        })
        .min()
        .map(|(.., id)| id)
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

impl Connection {
    /// The extension for requests on the connection of `activity`.
    pub(super) fn new(activity: Arc<Activity>) -> Self {
        Self(activity)
    }

    /// Records that a request on this connection passed authentication.
    pub(crate) fn authenticated(&self) {
        self.0.authenticated.store(true, Ordering::Release);
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

    fn contains(registry: &Registry, activity: &Activity) -> bool {
        registry
            .open
            .lock()
            .expect("lock")
            .contains_key(&activity.id)
    }

    #[test]
    fn at_the_cap_the_longest_idle_goes_and_authenticated_busy_ones_stay() {
        let registry = Registry::new(2);
        let Admitted::Fresh(first) = registry.admit() else {
            panic!("under the cap")
        };
        let Admitted::Fresh(second) = registry.admit() else {
            panic!("under the cap")
        };
        // `first` has served an authenticated request and is busy; `second` never started one.
        let busy = first.begin();
        Connection::new(first.clone()).authenticated();
        let Admitted::InPlaceOf(third) = registry.admit() else {
            panic!("an idle connection makes room")
        };
        assert!(!contains(&registry, &second));
        let _busy_third = third.begin();
        Connection::new(third).authenticated();
        assert!(matches!(registry.admit(), Admitted::Full));
        drop(busy);
        assert!(matches!(registry.admit(), Admitted::InPlaceOf(_)));
        assert!(!contains(&registry, &first));
    }

    #[test]
    fn unauthenticated_connections_go_even_when_busy() {
        let registry = Registry::new(3);
        let admit = || match registry.admit() {
            Admitted::Fresh(activity) | Admitted::InPlaceOf(activity) => activity,
            Admitted::Full => panic!("there is always one to close"),
        };
        // Authenticated and idle, unauthenticated and busy, never served.
        let idle = admit();
        drop(idle.begin());
        Connection::new(idle.clone()).authenticated();
        let hostile = admit();
        let _hostile_busy = hostile.begin();
        let silent = admit();
        let fourth = admit();
        assert!(!contains(&registry, &silent), "never served goes first");
        let _fourth_busy = fourth.begin();
        let fifth = admit();
        assert!(
            !contains(&registry, &hostile),
            "then the oldest unauthenticated, busy or not"
        );
        assert!(contains(&registry, &fourth) && contains(&registry, &idle));
        let _fifth_busy = fifth.begin();
        admit();
        assert!(
            !contains(&registry, &fourth),
            "unauthenticated before authenticated"
        );
        assert!(contains(&registry, &idle));
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
