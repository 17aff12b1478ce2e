//! Operating-system primitives of the engine: `futex(2)` and a process-wide memory barrier.
//!
//! On Linux the barrier is `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)` (kernel 4.14+),
//! registered once per process. Where that command is refused (old kernel, seccomp), the
//! fallback is the one the .NET runtime uses for `FlushProcessWriteBuffers` on Linux: change
//! the protection of a locked, touched page, which makes the kernel interrupt (TLB shoot-down)
//! every CPU currently running a thread of this process; an interrupt serialises that CPU.
//! On other operating systems (never a supported target, kept compiling) both primitives
//! degrade to polling.

use core::sync::atomic::AtomicU32;
use std::time::Duration;

#[cfg(target_os = "linux")]
mod imp {
    use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};
    use std::sync::OnceLock;
    use std::time::Duration;

    const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
    const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

    /// Which barrier this process uses: 1 = membarrier, 2 = mprotect fallback.
    static KIND: AtomicU8 = AtomicU8::new(0);
    static INIT: OnceLock<()> = OnceLock::new();

    struct FlushPage(*mut libc::c_void);
    // SAFETY: the page is only touched by `flush_write_buffers` under `FLUSH_LOCK`.
    unsafe impl Send for FlushPage {}
    static FLUSH_LOCK: std::sync::Mutex<Option<FlushPage>> = std::sync::Mutex::new(None);

    fn membarrier(cmd: libc::c_int) -> libc::c_long {
        // SAFETY: membarrier takes two integers and touches no memory of ours.
        unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
    }

    pub(super) fn init() {
        INIT.get_or_init(|| {
            let kind = if membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
                && membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0
            {
                1
            } else {
                2
            };
            KIND.store(kind, Ordering::SeqCst);
        });
    }

    /// Whether the barrier is `membarrier(2)` (false: the mprotect fallback).
    pub(super) fn uses_membarrier() -> bool {
        init();
        KIND.load(Ordering::SeqCst) == 1
    }

    pub(super) fn process_barrier() {
        init();
        if KIND.load(Ordering::Relaxed) == 1 {
            let r = membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
            assert!(
                r == 0,
                "membarrier(PRIVATE_EXPEDITED) failed after registering"
            );
        } else {
            flush_write_buffers();
        }
    }

    fn flush_write_buffers() {
        let mut page = FLUSH_LOCK
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if page.is_none() {
            // SAFETY: an anonymous private mapping of one page; checked below.
            let p = unsafe {
                libc::mmap(
                    core::ptr::null_mut(),
                    4096,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            assert!(p != libc::MAP_FAILED, "mmap of the barrier page failed");
            // SAFETY: p is a fresh mapping of 4096 bytes.
            unsafe { libc::mlock(p, 4096) };
            *page = Some(FlushPage(p));
        }
        let p = page.as_ref().map_or(core::ptr::null_mut(), |f| f.0);
        // SAFETY: p is our own page; making it writable again, touching it and removing the
        // access forces a TLB shoot-down on every CPU that runs a thread of this process.
        unsafe {
            libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_WRITE);
            p.cast::<u8>().write_volatile(1);
            libc::mprotect(p, 4096, libc::PROT_NONE);
        }
    }

    pub(super) fn futex_wait(word: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        let ts;
        let ts_ptr = match timeout {
            None => core::ptr::null(),
            Some(d) => {
                ts = libc::timespec {
                    tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
                    tv_nsec: libc::c_long::from(
                        i32::try_from(d.subsec_nanos()).unwrap_or(999_999_999),
                    ),
                };
                &raw const ts
            }
        };
        // SAFETY: `word` is a live 4-byte aligned atomic; FUTEX_WAIT only reads it; the
        // timespec (if any) lives until the call returns. EINTR/EAGAIN/ETIMEDOUT are all
        // fine: callers loop.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                ts_ptr,
                0usize,
                0u32,
            );
        }
    }

    pub(super) fn futex_wake_all(word: &AtomicU32) {
        // SAFETY: FUTEX_WAKE on a live word wakes sleepers; it never touches memory.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                i32::MAX,
                0usize,
                0usize,
                0u32,
            );
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use core::sync::atomic::{AtomicU32, Ordering};
    use std::time::{Duration, Instant};

    pub(super) fn init() {}
    pub(super) fn uses_membarrier() -> bool {
        false
    }
    pub(super) fn process_barrier() {
        core::sync::atomic::fence(Ordering::SeqCst);
    }
    pub(super) fn futex_wait(word: &AtomicU32, seen: u32, timeout: Option<Duration>) {
        let start = Instant::now();
        while word.load(Ordering::SeqCst) == seen {
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return;
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    pub(super) fn futex_wake_all(_word: &AtomicU32) {}
}

/// Registers the process for the expedited barrier (idempotent).
pub(crate) fn init() {
    imp::init();
}

/// Whether [`process_barrier`] is `membarrier(2)` rather than the mprotect fallback.
pub(crate) fn uses_membarrier() -> bool {
    imp::uses_membarrier()
}

/// The swapper's half of the asymmetric barrier (see `sync`).
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn process_barrier() {
    imp::process_barrier();
}

/// Sleeps while `word == seen`, at most `timeout`.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn futex_wait(word: &AtomicU32, seen: u32, timeout: Option<Duration>) {
    imp::futex_wait(word, seen, timeout);
}

/// Wakes every thread sleeping on `word`.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn futex_wake_all(word: &AtomicU32) {
    imp::futex_wake_all(word);
}
