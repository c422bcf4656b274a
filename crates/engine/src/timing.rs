//! Monotonic phase marks, and an I/O wrapper that notes when the request was written.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::classify::{self, Captured};
use crate::outcome::Metrics;

/// The instants a job passed through; each is set once, when the phase ends.
#[derive(Debug, Clone)]
pub(crate) struct Timeline {
    /// When `Engine::run` started.
    pub(crate) job_start: Instant,
    /// When name resolution started (after keystores were loaded).
    pub(crate) net_start: Option<Instant>,
    pub(crate) dns_end: Option<Instant>,
    pub(crate) connect_end: Option<Instant>,
    /// When the CONNECT tunnel through a proxy was open.
    pub(crate) proxy_end: Option<Instant>,
    pub(crate) tls_end: Option<Instant>,
    pub(crate) request_start: Option<Instant>,
    pub(crate) send_end: Option<Instant>,
    pub(crate) head: Option<Instant>,
    pub(crate) body_end: Option<Instant>,
}

impl Timeline {
    pub(crate) fn start() -> Self {
        Self {
            job_start: Instant::now(),
            net_start: None,
            dns_end: None,
            connect_end: None,
            proxy_end: None,
            tls_end: None,
            request_start: None,
            send_end: None,
            head: None,
            body_end: None,
        }
    }

    /// The metrics; `end` is when the outcome is complete (success or failure).
    pub(crate) fn metrics(&self, end: Instant) -> Metrics {
        let between = |from: Option<Instant>, to: Option<Instant>| match (from, to) {
            (Some(from), Some(to)) => Some(ms(to.saturating_duration_since(from))),
            _ => None,
        };
        let download = between(self.head, self.body_end);
        Metrics {
            dns: between(self.net_start, self.dns_end),
            connect: between(self.dns_end, self.connect_end),
            tls: between(self.proxy_end.or(self.connect_end), self.tls_end),
            send: between(self.request_start, self.send_end),
            wait: between(self.send_end, self.head),
            download,
            total: between(self.net_start, Some(end)),
            latency: between(self.net_start, self.head),
            fetch: download,
            overall: ms(end.saturating_duration_since(self.job_start)),
            redirects: 0,
            connection_reused: false,
            proxy: between(self.connect_end, self.proxy_end),
            hops: Vec::new(),
        }
    }
}

/// Milliseconds with microsecond precision.
pub(crate) fn ms(duration: Duration) -> f64 {
    (duration.as_micros() as f64) / 1000.0
}

/// What the connection's I/O saw: the last completed write, the last write before the first
/// read after a request started, and the first read error.
#[derive(Debug)]
pub(crate) struct IoMarks {
    origin: Instant,
    /// Nanoseconds after `origin` of the last completed write, plus one (0 = none yet).
    last_write: AtomicU64,
    /// `last_write` as it was when the first read completed that followed a write made after
    /// [`IoMarks::arm`] (0 = no such read yet). The request is sent by then; writes after that
    /// read answer what was read (an HTTP/2 SETTINGS or PING acknowledgement): not the request.
    write_before_read: AtomicU64,
    /// `last_write` when armed, plus one (0 = not armed).
    armed: AtomicU64,
    read_error: Mutex<Option<Captured>>,
}

impl IoMarks {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            origin: Instant::now(),
            last_write: AtomicU64::new(0),
            write_before_read: AtomicU64::new(0),
            armed: AtomicU64::new(0),
            read_error: Mutex::new(None),
        })
    }

    #[cfg(test)]
    fn last_write_at(&self) -> Option<Instant> {
        match self.last_write.load(Ordering::Relaxed) {
            0 => None,
            nanos => Some(self.origin + Duration::from_nanos(nanos - 1)),
        }
    }

    /// A request is about to be written: the next completed read marks the end of sending.
    pub(crate) fn arm(&self) {
        self.write_before_read.store(0, Ordering::Relaxed);
        let written = self.last_write.load(Ordering::Relaxed);
        self.armed
            .store(written.saturating_add(1), Ordering::Relaxed);
    }

    /// When the request was written: the last write before the first read since
    /// [`IoMarks::arm`], or the last write when nothing was read yet.
    pub(crate) fn request_written(&self) -> Option<Instant> {
        let nanos = match self.write_before_read.load(Ordering::Relaxed) {
            0 => self.last_write.load(Ordering::Relaxed),
            nanos => nanos,
        };
        (nanos != 0).then(|| self.origin + Duration::from_nanos(nanos - 1))
    }

    fn note_read(&self) {
        let armed = self.armed.load(Ordering::Relaxed);
        let written = self.last_write.load(Ordering::Relaxed);
        // Only a read after the request's first write ends its sending; reads before it (the
        // server's HTTP/2 SETTINGS arriving late) do not.
        if armed != 0 && written >= armed {
            self.armed.store(0, Ordering::Relaxed);
            self.write_before_read.store(written, Ordering::Relaxed);
        }
    }

    /// The first read error the connection hit (a TLS alert shows up here).
    pub(crate) fn read_error(&self) -> Option<Captured> {
        self.read_error.lock().ok().and_then(|slot| slot.clone())
    }

    fn note_write(&self) {
        let nanos = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_write.store(nanos + 1, Ordering::Relaxed);
    }

    fn note_read_error(&self, error: &io::Error) {
        if let Ok(mut slot) = self.read_error.lock()
            && slot.is_none()
        {
            *slot = Some(classify::capture(error));
        }
    }
}

/// Wraps a connection's stream to record write completions and read errors.
#[derive(Debug)]
pub(crate) struct TimedIo<T> {
    inner: T,
    marks: Arc<IoMarks>,
}

impl<T> TimedIo<T> {
    pub(crate) fn new(inner: T, marks: Arc<IoMarks>) -> Self {
        Self { inner, marks }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for TimedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Err(error)) => this.marks.note_read_error(error),
            Poll::Ready(Ok(())) if buf.filled().len() > before => this.marks.note_read(),
            _ => {}
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for TimedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(1..)) = &polled {
            this.marks.note_write();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(1..)) = &polled {
            this.marks.note_write();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::IoMarks;

    #[test]
    fn the_request_ends_at_the_last_write_before_the_answer_starts() {
        let marks = IoMarks::new();
        marks.note_write(); // the HTTP/2 preface, before the request
        marks.arm();
        // The server's SETTINGS read before the request was written: not the end of sending.
        marks.note_read();
        assert_eq!(marks.request_written(), marks.last_write_at());
        std::thread::sleep(std::time::Duration::from_millis(2));
        marks.note_write(); // the request
        let request = marks.last_write_at().expect("written");
        marks.note_read(); // the server's first bytes after the request
        std::thread::sleep(std::time::Duration::from_millis(2));
        marks.note_write(); // an acknowledgement of what was read
        assert_ne!(marks.last_write_at(), Some(request));
        assert_eq!(marks.request_written(), Some(request));
        // The next request on the connection starts over.
        marks.arm();
        std::thread::sleep(std::time::Duration::from_millis(2));
        marks.note_write();
        assert_eq!(marks.request_written(), marks.last_write_at());
        assert_ne!(marks.request_written(), Some(request));
    }
}
