//! Faults in driver images fail loudly: the process-wide lists of mapped and of unmapped
//! (retired) images, and the signal handler that names them.
//!
//! **Live images.** A fault raised by an instruction of a mapped image (`SIGSEGV`, `SIGBUS`,
//! `SIGILL`, `SIGFPE`, `SIGTRAP`: an access violation, a misaligned or bad bus access, an
//! illegal instruction, a division by zero, a breakpoint) is reported as Windows reports an
//! exception no driver handled, and the process aborts:
//!
//! ```text
//! host kernel BUGCHECK 0x1E KMODE_EXCEPTION_NOT_HANDLED: STATUS_ACCESS_VIOLATION (0xC0000005)
//!   in image <name> at RVA 0x<rva>, accessing 0x<address>, during DriverEntry
//! ```
//!
//! naming what the thread was doing for the driver ([`activity`]: `DriverEntry`, the IRP
//! being dispatched, `DriverUnload`) when the I/O manager model knows it. A fault of the host's
//! own code during such a call (a kernel routine given what it cannot use, such as a bad
//! pointer) is reported the same way, as a fault "in the kernel's own code".
//!
//! **Retired images.**
//! An unmapped image keeps its address range, remapped no-access (see [`super::os::retire`]),
//! so no later mapping can take it and every access faults. The handler (installed once, on
//! the first retirement, with `SA_SIGINFO | SA_ONSTACK`) looks the faulting address up in the
//! list. Inside a retired image it writes one line to stderr,
//!
//! ```text
//! host kernel: call into unmapped image <name> at RVA 0x<rva>
//! ```
//!
//! (or `access to unmapped image ...` when the faulting instruction is elsewhere, a data
//! access) and aborts the process. Otherwise it passes the signal on to the handler that was
//! installed before it (Rust's stack-overflow handler, a test harness's, ...) or, when there
//! was none, restores the default action so the fault kills the process as usual.
//!
//! Async-signal safety: the list is an append-only linked list of leaked nodes, read with
//! atomic loads only; the message is assembled in a stack buffer and written with one
//! `write(2)`; then `abort(3)`. The handler allocates nothing and takes no lock.

use core::ptr;
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Once, OnceLock};

/// The longest image name the message shows (longer names are cut).
const NAME_MAX: usize = 200;

/// One retired image. Leaked: nodes live as long as the process, like the reservations.
#[derive(Debug)]
pub struct Retired {
    start: usize,
    end: usize,
    name: Box<[u8]>,
    /// False once the loader found it could not retire the range after all (it stays mapped
    /// and is no longer reported).
    active: AtomicBool,
    next: AtomicPtr<Retired>,
}

impl Retired {
    /// Stops reporting faults in this range (its retirement failed; it is still mapped).
    pub fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
    }
}

/// The most recently retired image; each node points to the one retired before it.
static HEAD: AtomicPtr<Retired> = AtomicPtr::new(ptr::null_mut());
/// The most recently mapped image (same structure; deactivated when unmapped).
static MAPPED: AtomicPtr<Retired> = AtomicPtr::new(ptr::null_mut());

/// Records `len` bytes at `start` as the retired image `name`, installing the handler on
/// first use. Call it *before* making the range inaccessible, so no fault in it goes
/// unexplained.
pub fn record(start: usize, len: usize, name: &str) -> &'static Retired {
    push(&HEAD, start, len, name)
}

/// Records `len` bytes at `start` as the mapped image `name` (its faults are reported as
/// bugchecks), installing the handler on first use. Deactivate it when the image is unmapped.
pub fn record_mapped(start: usize, len: usize, name: &str) -> &'static Retired {
    push(&MAPPED, start, len, name)
}

fn push(list: &AtomicPtr<Retired>, start: usize, len: usize, name: &str) -> &'static Retired {
    install_handler();
    let mut bytes = name.as_bytes();
    if bytes.len() > NAME_MAX {
        bytes = &bytes[..NAME_MAX];
    }
    let node: &'static Retired = Box::leak(Box::new(Retired {
        start,
        end: start.saturating_add(len),
        name: bytes.into(),
        active: AtomicBool::new(true),
        next: AtomicPtr::new(ptr::null_mut()),
    }));
    let node_ptr = ptr::from_ref(node).cast_mut();
    let mut head = list.load(Ordering::Acquire);
    loop {
        node.next.store(head, Ordering::Relaxed);
        match list.compare_exchange_weak(head, node_ptr, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return node,
            Err(current) => head = current,
        }
    }
}

/// The active retired image containing `address`. Async-signal-safe.
fn find(address: usize) -> Option<&'static Retired> {
    find_in(&HEAD, address)
}

/// The active image of `list` containing `address`. Async-signal-safe.
fn find_in(list: &AtomicPtr<Retired>, address: usize) -> Option<&'static Retired> {
    let mut node = list.load(Ordering::Acquire);
    while !node.is_null() {
        // SAFETY: every node in the list was leaked by `record` (never freed) and fully
        // initialised before the release CAS that published it, which our acquire load saw.
        let retired: &'static Retired = unsafe { &*node };
        if (retired.start..retired.end).contains(&address) && retired.active.load(Ordering::Acquire)
        {
            return Some(retired);
        }
        node = retired.next.load(Ordering::Acquire);
    }
    None
}

/// The signals handled: a no-access page gives `SIGSEGV`; `SIGBUS`, `SIGILL`, `SIGFPE` and
/// `SIGTRAP` are what the other exceptions of driver code raise.
const SIGNALS: [libc::c_int; 5] = [
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
];

/// The actions that were installed before ours, by index in [`SIGNALS`].
static PREVIOUS: [OnceLock<libc::sigaction>; 5] = [const { OnceLock::new() }; 5];

/// The NTSTATUS a kernel would raise for `signal`, and its name.
fn exception(signal: libc::c_int) -> (u32, &'static [u8]) {
    match signal {
        libc::SIGSEGV => (0xC000_0005, b"STATUS_ACCESS_VIOLATION"),
        libc::SIGBUS => (0x8000_0002, b"STATUS_DATATYPE_MISALIGNMENT"),
        libc::SIGILL => (0xC000_001D, b"STATUS_ILLEGAL_INSTRUCTION"),
        libc::SIGFPE => (0xC000_0094, b"STATUS_INTEGER_DIVIDE_BY_ZERO"),
        _ => (0x8000_0003, b"STATUS_BREAKPOINT"),
    }
}

/// What the thread is doing for a driver, for fault and watchdog reports: a description
/// (`DriverEntry`, `IRP_MJ_DEVICE_CONTROL`, `DriverUnload`, ...) and a value shown with it
/// when non-zero (a control code).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // set by the x86-64 WDM model only
pub mod activity {
    use core::cell::Cell;

    std::thread_local! {
        static CURRENT: Cell<Option<(&'static str, u64)>> = const { Cell::new(None) };
    }

    /// Marks the thread as doing `what` (with `value`) until the guard is dropped.
    pub fn enter(what: &'static str, value: u64) -> Guard {
        Guard(CURRENT.with(|current| current.replace(Some((what, value)))))
    }

    /// What the thread is doing now. Async-signal-safe (a constant-initialised thread-local
    /// without destructor: a plain load).
    pub fn now() -> Option<(&'static str, u64)> {
        CURRENT.try_with(Cell::get).ok().flatten()
    }

    /// Restores the previous activity on drop.
    #[derive(Debug)]
    pub struct Guard(Option<(&'static str, u64)>);

    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = CURRENT.try_with(|current| current.set(self.0));
        }
    }
}

/// Installs [`on_fault`] for [`SIGNALS`], once per process, remembering the previous actions.
fn install_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        for (signal, previous) in SIGNALS.into_iter().zip(&PREVIOUS) {
            // SAFETY: `sigaction` is plain data; all-zero is a valid (empty) value.
            let mut action: libc::sigaction = unsafe { core::mem::zeroed() };
            action.sa_sigaction = on_fault as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: as above.
            let mut old: libc::sigaction = unsafe { core::mem::zeroed() };
            // SAFETY: both pointers are to live locals; `on_fault` has the SA_SIGINFO
            // signature and is async-signal-safe.
            let installed = unsafe {
                libc::sigemptyset(&raw mut action.sa_mask);
                libc::sigaction(signal, &raw const action, &raw mut old)
            };
            if installed == 0 {
                let _ = previous.set(old);
            }
        }
    });
}

/// A fixed buffer for the message: the handler must not allocate.
struct Message {
    bytes: [u8; 512],
    len: usize,
}

impl Message {
    fn push(&mut self, text: &[u8]) {
        for &byte in text {
            if self.len == self.bytes.len() {
                return;
            }
            self.bytes[self.len] = byte;
            self.len += 1;
        }
    }

    fn push_hex(&mut self, value: u64) {
        let mut digits = [0u8; 16];
        let mut count = 0;
        let mut rest = value;
        loop {
            digits[count] = b"0123456789abcdef"[(rest & 0xF) as usize];
            count += 1;
            rest >>= 4;
            if rest == 0 {
                break;
            }
        }
        self.push(b"0x");
        for index in (0..count).rev() {
            self.push(&[digits[index]]);
        }
    }
}

/// The line written for a fault at `address` in `image` by the instruction at `pc` (0 when
/// the host cannot tell).
fn message(image: &Retired, address: usize, pc: usize) -> Message {
    let mut text = Message {
        bytes: [0; 512],
        len: 0,
    };
    let call = pc == 0 || pc == address;
    text.push(if call {
        b"host kernel: call into unmapped image "
    } else {
        b"host kernel: access to unmapped image "
    });
    text.push(&image.name);
    text.push(b" at RVA ");
    text.push_hex((address - image.start) as u64);
    if !call {
        text.push(b" by the instruction at ");
        text.push_hex(pc as u64);
    }
    text.push(b"\n");
    text
}

impl Message {
    /// A report that starts with the bug check and the exception of `signal`.
    fn bugcheck(signal: libc::c_int) -> Self {
        let mut text = Self {
            bytes: [0; 512],
            len: 0,
        };
        let (status, name) = exception(signal);
        text.push(b"host kernel BUGCHECK 0x1E KMODE_EXCEPTION_NOT_HANDLED: ");
        text.push(name);
        text.push(b" (");
        text.push_hex(u64::from(status));
        text.push(b")");
        text
    }

    /// `, accessing <address>` for an access fault (`SIGSEGV`, `SIGBUS`), and the image and
    /// RVA of the address where it is in a live image; nothing for other signals.
    fn push_access(&mut self, signal: libc::c_int, address: usize) {
        if !matches!(signal, libc::SIGSEGV | libc::SIGBUS) {
            return;
        }
        self.push(b", accessing ");
        self.push_hex(address as u64);
        if let Some(target) = find_in(&MAPPED, address) {
            self.push(b" (");
            self.push(&target.name);
            self.push(b" at RVA ");
            self.push_hex((address - target.start) as u64);
            self.push(b")");
        }
    }

    /// `, during <call> [<value>]`: the call into the driver in progress, if any; returns
    /// whether there was one.
    fn push_activity(&mut self) -> bool {
        let Some((what, value)) = activity::now() else {
            return false;
        };
        self.push(b", during ");
        self.push(what.as_bytes());
        if value != 0 {
            self.push(b" ");
            self.push_hex(value);
        }
        true
    }
}

/// The report of an exception raised by the instruction at `pc` in the live `image`
/// (`address`: the faulting address of an access, 0 otherwise).
fn bugcheck_message(signal: libc::c_int, image: &Retired, pc: usize, address: usize) -> Message {
    let mut text = Message::bugcheck(signal);
    text.push(b" in image ");
    text.push(&image.name);
    text.push(b" at RVA ");
    text.push_hex((pc - image.start) as u64);
    text.push_access(signal, address);
    if !text.push_activity() {
        text.push(b", outside any call the I/O manager made");
    }
    text.push(b"\n");
    text
}

/// The report of an exception raised by the host's own code (a kernel routine of the model)
/// while it serves a call into a driver: a routine the driver called with what it cannot use.
fn kernel_fault_message(signal: libc::c_int, pc: usize, address: usize) -> Message {
    let mut text = Message::bugcheck(signal);
    text.push(b" in the kernel's own code at ");
    text.push_hex(pc as u64);
    text.push_access(signal, address);
    text.push_activity();
    text.push(b" (a kernel routine the driver called faulted on what it was given)\n");
    text
}

/// The program counter of the interrupted context, 0 where unknown.
#[allow(clippy::unnecessary_wraps, unused_variables)]
fn program_counter(context: *mut libc::c_void) -> usize {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if !context.is_null() {
        // SAFETY: the kernel passes a `ucontext_t` as the third argument of an SA_SIGINFO
        // handler; it lives on the signal stack for the duration of the handler.
        let context = unsafe { &*context.cast::<libc::ucontext_t>() };
        #[allow(clippy::cast_sign_loss, clippy::cast_possible_truncation)] // a 64-bit register
        return context.uc_mcontext.gregs[libc::REG_RIP as usize] as usize;
    }
    0
}

/// The handler. Async-signal-safe: atomic loads, a stack buffer, `write(2)`, `abort(3)`, and
/// otherwise whatever the previous handler does.
extern "C" fn on_fault(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let address = if info.is_null() {
        0
    } else {
        // SAFETY: the kernel passes a valid `siginfo_t` to an SA_SIGINFO handler; for SIGSEGV
        // and SIGBUS `si_addr` is the faulting address.
        unsafe { (*info).si_addr() as usize }
    };
    let pc = program_counter(context);
    let from_hardware = info.is_null() || {
        // SAFETY: as above.
        unsafe { (*info).si_code > 0 }
    };
    let report = if !from_hardware {
        None
    } else if let Some(image) = find(address) {
        Some(message(image, address, pc))
    } else if let Some(image) = find_in(&MAPPED, pc) {
        Some(bugcheck_message(signal, image, pc, address))
    } else {
        // Host code faulting while it serves a call into a driver: a kernel routine the
        // driver called, given something it cannot use (Windows would stop in ntoskrnl).
        activity::now().map(|_| kernel_fault_message(signal, pc, address))
    };
    if let Some(text) = report {
        // SAFETY: write(2) and abort(3) are async-signal-safe; the buffer is a live local.
        unsafe {
            libc::write(libc::STDERR_FILENO, text.bytes.as_ptr().cast(), text.len);
            libc::abort();
        }
    }
    // SAFETY: the arguments are the ones the kernel gave us.
    unsafe { chain(signal, info, context) };
}

/// Hands the signal to the action installed before ours, or to the default action.
///
/// # Safety
/// The arguments must be those the kernel passed to [`on_fault`].
unsafe fn chain(signal: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    let index = SIGNALS.iter().position(|&s| s == signal).unwrap_or(0);
    if let Some(previous) = PREVIOUS[index].get() {
        let handler = previous.sa_sigaction;
        if handler != libc::SIG_DFL && handler != libc::SIG_IGN {
            if previous.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the installed value is a three-argument handler.
                let handler: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                    unsafe { core::mem::transmute(handler) };
                handler(signal, info, context);
            } else {
                // SAFETY: without SA_SIGINFO the installed value is a one-argument handler.
                let handler: extern "C" fn(libc::c_int) = unsafe { core::mem::transmute(handler) };
                handler(signal);
            }
            return;
        }
    }
    // No handler before ours: restore the default action. A fault then recurs on return and
    // kills the process; a signal sent by kill(2) (si_code <= 0) is raised again.
    // SAFETY: sigaction and raise are async-signal-safe; the action is a live local.
    unsafe {
        let mut default: libc::sigaction = core::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(signal, &raw const default, ptr::null_mut());
        if !info.is_null() && (*info).si_code <= 0 {
            libc::raise(signal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(message: &Message) -> &str {
        core::str::from_utf8(&message.bytes[..message.len]).unwrap()
    }

    #[test]
    fn messages_name_the_image_and_the_rva() {
        let image = Retired {
            start: 0x7000_0000,
            end: 0x7000_8000,
            name: b"hotswap_sample_v1.sys"[..].into(),
            active: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
        };
        assert_eq!(
            text(&message(&image, 0x7000_1030, 0x7000_1030)),
            "host kernel: call into unmapped image hotswap_sample_v1.sys at RVA 0x1030\n"
        );
        assert_eq!(
            text(&message(&image, 0x7000_5008, 0x5555_0000_1234)),
            "host kernel: access to unmapped image hotswap_sample_v1.sys at RVA 0x5008 by the \
             instruction at 0x555500001234\n"
        );
        assert_eq!(
            text(&message(&image, 0x7000_0000, 0)),
            "host kernel: call into unmapped image hotswap_sample_v1.sys at RVA 0x0\n"
        );
    }

    #[test]
    fn long_names_are_cut_not_overflowed() {
        let image = Retired {
            start: 0,
            end: 0x1000,
            name: vec![b'x'; 1000].into(),
            active: AtomicBool::new(true),
            next: AtomicPtr::new(ptr::null_mut()),
        };
        let message = message(&image, 0x10, 0x10);
        assert_eq!(message.len, message.bytes.len());
    }

    #[test]
    fn recorded_ranges_are_found_until_deactivated() {
        // A range no mapping can have: the top page of the address space.
        let start = usize::MAX - 0xFFF;
        let record = record(start, 0xFFF, "never-mapped.sys");
        assert!(find(start + 0x10).is_some_and(|r| &*r.name == b"never-mapped.sys"));
        assert!(find(start - 1).is_none());
        record.deactivate();
        assert!(find(start + 0x10).is_none());
    }
}
