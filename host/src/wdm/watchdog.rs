//! The watchdog: a call the I/O manager model makes into a driver (`DriverEntry`, a dispatch
//! routine, `DriverUnload`) that has not returned within the limit is reported, naming the
//! call and the driver, and the process aborts, instead of hanging the test that made it:
//!
//! ```text
//! host kernel WATCHDOG: DriverEntry of driver HotSwapSample has not returned after 1.0 s (the
//!   driver spins or waits forever; on Windows the system's loader thread would hang)
//! ```
//!
//! The limit is process-wide, 60 s unless [`set_call_limit`] says otherwise; the watch runs
//! on one thread of its own, started with the first call watched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, Once};
use std::time::{Duration, Instant};

use crate::kernel::lock;

/// The limit, in milliseconds.
static LIMIT_MS: AtomicU64 = AtomicU64::new(60_000);
static NEXT: AtomicU64 = AtomicU64::new(1);

struct Watched {
    since: Instant,
    what: &'static str,
    value: u64,
    driver: String,
}

static WATCHED: LazyLock<Mutex<HashMap<u64, Watched>>> = LazyLock::new(Mutex::default);

/// Sets how long a call into a driver may run before the watchdog reports it and aborts the
/// process (default 60 s). Process-wide.
pub fn set_call_limit(limit: Duration) {
    LIMIT_MS.store(
        u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// The limit [`set_call_limit`] set.
pub(crate) fn call_limit() -> Duration {
    Duration::from_millis(LIMIT_MS.load(Ordering::Relaxed))
}

/// A call being watched; dropping it (the call returned) ends the watch.
#[derive(Debug)]
pub(crate) struct Watch(u64);

impl Drop for Watch {
    fn drop(&mut self) {
        lock(&WATCHED).remove(&self.0);
    }
}

/// Watches a call into `driver` doing `what` (with `value`, shown when non-zero).
pub(crate) fn watch(what: &'static str, value: u64, driver: &str) -> Watch {
    static START: Once = Once::new();
    START.call_once(|| {
        let _ = std::thread::Builder::new()
            .name("host kernel watchdog".into())
            .spawn(run);
    });
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    lock(&WATCHED).insert(
        id,
        Watched {
            since: Instant::now(),
            what,
            value,
            driver: driver.to_owned(),
        },
    );
    Watch(id)
}

fn run() {
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let limit = Duration::from_millis(LIMIT_MS.load(Ordering::Relaxed));
        let watched = lock(&WATCHED);
        if let Some(late) = watched.values().find(|w| w.since.elapsed() >= limit) {
            let value = if late.value == 0 {
                String::new()
            } else {
                format!(" {:#x}", late.value)
            };
            eprintln!(
                "host kernel WATCHDOG: {}{value} of driver {} has not returned after {:.1} s \
                 (the driver spins or waits forever; on Windows the thread that called it would \
                 hang)",
                late.what,
                late.driver,
                late.since.elapsed().as_secs_f64()
            );
            std::process::abort();
        }
    }
}
