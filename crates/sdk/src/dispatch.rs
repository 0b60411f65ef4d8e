//! Where user callbacks run: one thread per [`crate::DataManager`], in order.
//!
//! The connection's task never runs user code: a callback that blocks would stall
//! keep-alives and acknowledgements and the broker would drop the link. The task hands
//! each callback (status, message, acknowledgement) to this thread instead, so a slow
//! callback delays only the callbacks after it. Message streams are fed from here too,
//! which is what makes a full stream apply back-pressure instead of losing messages.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// The sending side; the thread ends when every clone is dropped and its queue is empty.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    tx: mpsc::Sender<Job>,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dispatcher")
    }
}

impl Dispatcher {
    pub(crate) fn start() -> Dispatcher {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("pubsub-callbacks".to_owned())
            .spawn(move || {
                for job in rx {
                    if catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a callback panicked; later callbacks still run");
                    }
                }
            })
            .expect("pubsub: cannot start the callback thread");
        Dispatcher { tx }
    }

    /// Run `job` on the callback thread after the jobs already queued.
    pub(crate) fn run(&self, job: impl FnOnce() + Send + 'static) {
        // The thread only ends when every sender is gone, so this cannot fail while
        // `self` exists — unless a job panicked in a way that killed the thread, which
        // catch_unwind prevents.
        let _ = self.tx.send(Box::new(job));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    #[test]
    fn jobs_run_in_order_off_the_calling_thread_and_survive_a_panic() {
        let d = Dispatcher::start();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let caller = std::thread::current().id();
        for i in 0..3 {
            let seen = seen.clone();
            d.run(move || {
                assert_ne!(std::thread::current().id(), caller);
                seen.lock().unwrap().push(i);
                if i == 1 {
                    panic!("callback bug");
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        d.run(move || tx.send(()).unwrap());
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2]);
    }
}
