//! Opening a connection (TLS handshake, WebSocket upgrade, CONNECT and its authentication)
//! is where a client that has not authenticated makes the broker wait or work. Two rules
//! keep a flood of such clients from hurting the connections already open:
//!
//! - every step is bounded in time ([`opening_step`] with `[limits] handshake_timeout`;
//!   the authorizer call by `authorizer_timeout`), and a stalled step holds only its
//!   socket and its small state while it waits;
//! - opening work takes turns ([`gated`]): polls of openings run on at most half the
//!   runtime's worker threads at a time (`Broker::openings`), so a burst of handshakes,
//!   or of authorizer timeouts that fire together, leaves the other workers to the
//!   connections already open instead of queueing ahead of their packets (README,
//!   "Slow authorizers and stalled handshakes", has the measurements).

use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::PollSemaphore;

use crate::broker::Broker;

/// Why a step of opening a connection gave nothing.
pub(crate) enum Abandoned {
    /// Not done within `[limits] handshake_timeout` (the caller logs which step).
    TimedOut,
    /// The broker is stopping.
    ShuttingDown,
}

/// Runs one step of opening a connection (TLS handshake, WebSocket upgrade head, CONNECT)
/// for at most `limit`, and not past shutdown: a client that stalls there has not
/// authenticated, and must not hold its socket and the step's state for longer.
pub(crate) async fn opening_step<F: Future>(
    limit: Duration,
    shutdown: &mut watch::Receiver<bool>,
    step: F,
) -> Result<F::Output, Abandoned> {
    tokio::select! {
        done = tokio::time::timeout(limit, step) => done.map_err(|_| Abandoned::TimedOut),
        _ = shutdown.changed() => Err(Abandoned::ShuttingDown),
    }
}

/// `opening`, polled only while holding one of the broker's opening permits (held for
/// that poll alone, never while the opening waits). Openings waiting for a permit are
/// parked in the semaphore's queue, not the runtime's: however many are ready, they keep
/// only as many workers busy as there are permits.
///
/// Openings must not nest (a gated future polled inside another would wait for a second
/// permit while holding the first): each phase of a connection is gated on its own.
pub(crate) fn gated<F: Future + Unpin>(broker: &Broker, opening: F) -> Gated<F> {
    Gated {
        permits: PollSemaphore::new(broker.openings.clone()),
        opening,
    }
}

pub(crate) struct Gated<F> {
    permits: PollSemaphore,
    opening: F,
}

impl<F: Future + Unpin> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // `None` only if the semaphore were closed, which nothing does: then run ungated.
        let permit = ready!(this.permits.poll_acquire(cx));
        let polled = Pin::new(&mut this.opening).poll(cx);
        drop(permit);
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use tokio::sync::Semaphore;

    /// A future that counts how many of its kind are inside `poll` at once, and yields
    /// `turns` times before finishing.
    struct Busy {
        inside: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        turns: usize,
    }

    impl Future for Busy {
        type Output = ();

        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            let now = self.inside.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(now, Ordering::SeqCst);
            // Work long enough for the other worker to try to poll too.
            std::thread::sleep(Duration::from_millis(2));
            self.inside.fetch_sub(1, Ordering::SeqCst);
            if self.turns == 0 {
                return Poll::Ready(());
            }
            self.turns -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }

    async fn most_at_once(permits: usize, gate: bool) -> usize {
        let semaphore = Arc::new(Semaphore::new(permits));
        let (inside, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let busy = Busy {
                    inside: inside.clone(),
                    most: most.clone(),
                    turns: 3,
                };
                let permits = PollSemaphore::new(semaphore.clone());
                if gate {
                    tokio::spawn(Gated {
                        permits,
                        opening: busy,
                    })
                } else {
                    tokio::spawn(busy)
                }
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        most.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn gated_openings_poll_one_permit_at_a_time_and_all_finish() {
        // The check can fail: ungated, the same futures overlap on four workers.
        assert!(most_at_once(4, false).await > 1);
        assert_eq!(most_at_once(1, true).await, 1);
    }
}
