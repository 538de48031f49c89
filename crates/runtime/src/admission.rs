//! Bounded concurrency with a bounded queue: a call either runs, waits its
//! turn for a while, or is refused at once as busy. Nothing waits forever and
//! nothing piles up without bound.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::RuntimeError;

pub(crate) struct Admission {
    state: Mutex<State>,
    freed: Condvar,
    max_running: usize,
    max_queued: usize,
    wait: Duration,
}

#[derive(Default)]
struct State {
    running: usize,
    queued: usize,
}

/// A running call; dropping it lets the next one in.
pub(crate) struct Permit<'a> {
    admission: &'a Admission,
}

impl Admission {
    pub(crate) fn new(max_running: usize, max_queued: usize, wait: Duration) -> Admission {
        Admission {
            state: Mutex::new(State::default()),
            freed: Condvar::new(),
            max_running: max_running.max(1),
            max_queued,
            wait,
        }
    }

    pub(crate) fn enter(&self) -> Result<Permit<'_>, RuntimeError> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.running < self.max_running {
            st.running += 1;
            return Ok(Permit { admission: self });
        }
        if st.queued >= self.max_queued {
            return Err(RuntimeError::Busy {
                running: st.running,
                queued: st.queued,
            });
        }
        st.queued += 1;
        let deadline = Instant::now() + self.wait;
        loop {
            let now = Instant::now();
            if now >= deadline {
                st.queued -= 1;
                return Err(RuntimeError::Busy {
                    running: st.running,
                    queued: st.queued,
                });
            }
            st = self
                .freed
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            if st.running < self.max_running {
                st.queued -= 1;
                st.running += 1;
                return Ok(Permit { admission: self });
            }
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut st = self.admission.state.lock().unwrap_or_else(|e| e.into_inner());
        st.running -= 1;
        self.admission.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_queue_is_refused_at_once_and_waiters_get_their_turn() {
        let a = Admission::new(1, 1, Duration::from_secs(5));
        let first = a.enter().unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| a.enter().map(|_| ()));
            // Let the waiter queue up, then the next caller finds the queue full.
            while a.state.lock().unwrap().queued == 0 {
                std::thread::yield_now();
            }
            match a.enter() {
                Err(RuntimeError::Busy {
                    running: 1,
                    queued: 1,
                }) => {}
                other => panic!("expected busy, got {:?}", other.map(|_| ())),
            }
            drop(first);
            waiter.join().unwrap().unwrap();
        });
    }

    #[test]
    fn waiting_ends_with_busy_at_the_deadline() {
        let a = Admission::new(1, 4, Duration::from_millis(20));
        let _held = a.enter().unwrap();
        assert!(matches!(a.enter(), Err(RuntimeError::Busy { .. })));
        assert_eq!(
            a.state.lock().unwrap().queued,
            0,
            "a timed-out waiter leaves the queue"
        );
    }
}
