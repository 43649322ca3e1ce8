//! Processor time charged to the thread that asked for it, across rayon's pool.
//!
//! A trajectory runs on its own worker thread, but most of its arithmetic runs on the
//! shared rayon pool, where the trajectories do not get equal shares: the pool serves
//! one parallel call at a time, so a trajectory's share follows the length of its calls.
//! The progress model needs each trajectory's real cost to say when a run ends, so every
//! thread keeps an [`Account`] of processor seconds, and a pool job started on behalf of
//! a thread ([`charging`] its [`current`] account) is charged to that account, not to the
//! pool thread's. Nested parallel calls inside a job propagate it the same way.
//!
//! Seconds are each thread's own CPU clock (`CLOCK_THREAD_CPUTIME_ID`): a rayon thread
//! spinning for work between jobs charges nobody. Where no such clock exists,
//! [`thread_seconds`] is `None` and the progress model falls back to equal shares.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Processor nanoseconds charged to one thread's work, wherever they ran.
#[derive(Clone, Debug, Default)]
pub struct Account(Arc<AtomicU64>);

impl Account {
    fn add(&self, nanos: u64) {
        self.0.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn seconds(&self) -> f64 {
        self.0.load(Ordering::Relaxed) as f64 * 1e-9
    }
}

struct Ledger {
    /// This thread's own account: charged whenever no job of another thread runs here.
    own: Account,
    /// Accounts of the jobs running on this thread, innermost last.
    jobs: RefCell<Vec<Account>>,
    /// This thread's CPU clock when the charged account last changed.
    mark: Cell<u64>,
}

thread_local! {
    static LEDGER: Ledger = Ledger {
        own: Account::default(),
        jobs: RefCell::new(Vec::new()),
        mark: Cell::new(thread_clock().unwrap_or(0)),
    };
}

impl Ledger {
    fn current(&self) -> Account {
        self.jobs.borrow().last().unwrap_or(&self.own).clone()
    }

    /// Charges the time since the last change to the account charged until now.
    fn settle(&self) {
        let Some(now) = thread_clock() else { return };
        let spent = now.saturating_sub(self.mark.replace(now));
        match self.jobs.borrow().last() {
            Some(job) => job.add(spent),
            None => self.own.add(spent),
        }
    }
}

/// The account this thread's work is charged to now: its own, or that of the job it runs.
pub fn current() -> Account {
    LEDGER.with(Ledger::current)
}

/// While it lives, this thread's processor time is charged to another thread's account
/// (a pool job run for the thread that owns it); dropping it resumes the one before.
pub struct Charged {
    /// The charged account is this thread's: the guard must drop where it was made.
    _here: std::marker::PhantomData<*const ()>,
}

impl Charged {
    pub fn to(account: &Account) -> Charged {
        LEDGER.with(|l| {
            l.settle();
            l.jobs.borrow_mut().push(account.clone());
        });
        Charged {
            _here: std::marker::PhantomData,
        }
    }
}

impl Drop for Charged {
    fn drop(&mut self) {
        LEDGER.with(|l| {
            l.settle();
            l.jobs.borrow_mut().pop();
        });
    }
}

/// Runs `f` with this thread's processor time charged to `account` ([`Charged`]).
pub fn charging<R>(account: &Account, f: impl FnOnce() -> R) -> R {
    let _charged = Charged::to(account);
    f()
}

/// Processor seconds charged to this thread's own account so far (its own work and every
/// pool job run for it), or `None` where threads have no CPU clock.
pub fn thread_seconds() -> Option<f64> {
    thread_clock()?;
    LEDGER.with(|l| {
        l.settle();
        Some(l.own.seconds())
    })
}

#[cfg(unix)]
fn thread_clock() -> Option<u64> {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the call to write.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then(|| ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64)
}

#[cfg(not(unix))]
fn thread_clock() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// Spins until this thread's CPU clock has advanced `nanos`.
    fn burn(nanos: u64) {
        let start = thread_clock().unwrap();
        let mut x = 0u64;
        while thread_clock().unwrap() - start < nanos {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
    }

    #[test]
    fn pool_jobs_are_charged_to_the_thread_that_started_them() {
        const JOB: u64 = 20_000_000;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        let work = |jobs: usize| {
            let before = thread_seconds().unwrap();
            let account = current();
            pool.install(|| {
                (0..jobs).into_par_iter().for_each(|_| {
                    charging(&account, || {
                        // A nested parallel call inside the job charges the same account.
                        let inner = current();
                        rayon::join(
                            || charging(&inner, || burn(JOB)),
                            || charging(&inner, || burn(JOB)),
                        );
                    })
                })
            });
            thread_seconds().unwrap() - before
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| work(4));
            let b = s.spawn(|| work(1));
            (a.join().unwrap(), b.join().unwrap())
        });
        // Each thread is charged at least the CPU its jobs burned, wherever they ran, and
        // not the other's: 8 and 2 jobs' worth, far below their sum of 10.
        let job = JOB as f64 * 1e-9;
        assert!(a >= 8.0 * job && a < 9.5 * job, "a {a}");
        assert!(b >= 2.0 * job && b < 3.5 * job, "b {b}");
    }
}
