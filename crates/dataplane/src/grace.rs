//! A node-wide RCU grace-period clock, run by one background thread.
//!
//! `epoch()` is read right after a write that unpublishes something (an
//! endpoint flip or delete). The thread, when asked, takes `start = epoch`,
//! advances `epoch` to `start + 1` (under the same mutex, so the increment is
//! ordered after every write whose caller read `start`), then calls
//! `membarrier(MEMBARRIER_CMD_GLOBAL)` (= `synchronize_rcu()`), and finally
//! records `completed = start + 1`. Hence `completed > e` means a full grace
//! period that *started after* every write whose caller read `e` has ended:
//! every BPF program that could have read the unpublished value has finished.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

#[derive(Debug, Default)]
struct St {
    /// Grace periods started (the value writers record).
    epoch: u64,
    /// `completed > e` once a grace period that started at or after epoch `e`
    /// was read has ended.
    completed: u64,
    /// A grace period is wanted until `completed >= wanted`.
    wanted: u64,
    /// Failed grace-period attempts (waiters give up when this moves).
    failures: u64,
    last_error: Option<String>,
    stop: bool,
}

#[derive(Debug, Default)]
struct Inner {
    st: Mutex<St>,
    cv: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The clock plus its thread (stopped and joined on drop).
#[derive(Debug)]
pub struct GraceClock {
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl GraceClock {
    /// Starts the thread; `sync` waits for one grace period.
    pub fn spawn(sync: impl Fn() -> io::Result<()> + Send + 'static) -> io::Result<Self> {
        let inner = Arc::new(Inner::default());
        let i = inner.clone();
        let thread = std::thread::Builder::new().name("porin-rcu-gp".into()).spawn(move || {
            let mut st = i.lock();
            loop {
                while !st.stop && st.completed >= st.wanted {
                    st = i.cv.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.stop {
                    return;
                }
                let start = st.epoch;
                st.epoch = start + 1;
                drop(st);
                let r = sync();
                st = i.lock();
                match r {
                    Ok(()) => st.completed = st.completed.max(start + 1),
                    Err(e) => {
                        st.failures += 1;
                        st.last_error = Some(e.to_string());
                        // Drop the request; the next wait asks again.
                        st.wanted = st.completed;
                    }
                }
                i.cv.notify_all();
            }
        })?;
        Ok(Self { inner, thread: Some(thread) })
    }

    /// The value to record after an unpublishing write.
    pub fn epoch(&self) -> u64 {
        self.inner.lock().epoch
    }

    /// True once a grace period has completed that started after the write
    /// whose caller read `e` from [`Self::epoch`].
    pub fn elapsed(&self, e: u64) -> bool {
        self.inner.lock().completed > e
    }

    /// Asks the thread for a grace period covering `e` (does not block).
    pub fn request(&self, e: u64) {
        let mut st = self.inner.lock();
        if st.wanted <= e {
            st.wanted = e + 1;
            self.inner.cv.notify_all();
        }
    }

    /// Blocks until [`Self::elapsed`]`(e)`.
    pub fn wait(&self, e: u64) -> io::Result<()> {
        let mut st = self.inner.lock();
        let failures = st.failures;
        if st.wanted <= e {
            st.wanted = e + 1;
            self.inner.cv.notify_all();
        }
        while st.completed <= e {
            if st.failures != failures {
                return Err(io::Error::other(st.last_error.clone().unwrap_or_default()));
            }
            st = self.inner.cv.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }
}

impl Drop for GraceClock {
    fn drop(&mut self) {
        self.inner.lock().stop = true;
        self.inner.cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    #[test]
    fn wait_needs_a_grace_period_started_after_the_epoch() {
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let g = GraceClock::spawn(move || {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            Ok(())
        })
        .unwrap();
        let e = g.epoch();
        assert!(!g.elapsed(e));
        g.wait(e).unwrap();
        assert!(g.elapsed(e));
        let e2 = g.epoch();
        assert!(e2 > e && !g.elapsed(e2));
        g.request(e2);
        for _ in 0..200 {
            if g.elapsed(e2) {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(g.elapsed(e2), "background grace period completes without a waiter");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn failures_reach_the_waiter() {
        let g = GraceClock::spawn(|| Err(io::Error::from_raw_os_error(libc::EPERM))).unwrap();
        let e = g.epoch();
        assert!(g.wait(e).is_err());
        assert!(g.wait(e).is_err(), "retried, fails again");
    }
}
