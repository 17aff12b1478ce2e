//! The machine code of the wrappers (x86-64 Linux only) and its Rust slow paths.
//!
//! # Layout
//!
//! * `__dp_engine_stubs`: [`POOL`] stubs of 16 bytes, one per wrapper slot, each
//!   `endbr64; lea r11, [rip + SLOTS + 32*i]; jmp __dp_engine_common`. Then [`MUTANT_POOL`]
//!   stubs that jump to the deliberately broken `__dp_engine_common_mutant` (tests only).
//! * [`SLOTS`]: one [`Slot`] per stub: the current [`Version`] record, the engine's
//!   [`EngineHot`], the byte offset of the engine's counter in a thread's block, the owner.
//! * Per thread, a 64 KiB block aligned to 64 KiB (`protocol::ThreadRec`): 1024 in-flight
//!   counters (one per engine index) in the first 8 KiB, then the wrapper *shadow stack*:
//!   16-byte entries `{caller's return address, slot}`.
//! * `__dp_engine_tls`: one local-exec TLS word per thread, the shadow-stack pointer (next
//!   free entry); 0 until the thread's first call registers it. Masking it with `-65536`
//!   gives the thread's counters. (Local-exec TLS: the crate must be linked into an
//!   executable, not a shared library — true of every test and tool of this project.)
//!
//! # The common path (`__dp_engine_common`), entered with `r11 = &SLOTS[i]`, `rsp = S`
//!
//! ```text
//! r10 = tls; if 0 or at the limit -> slow entry
//! tls = r10 + 16; pop [r10]; [r10+8] = r11      ; reserve a shadow-stack entry, then move the
//!                                               ; caller's return address into it (rsp = S + 8)
//! r10 = (r10 & -65536) + slot.ctr_off; inc qword [r10]   ; count (plain, thread-owned)
//! r10 = slot.hot; cmp dword [r10], 0; jne undo  ; THE POST-INCREMENT RE-CHECK of `stall`
//! r11 = slot.current                            ; the version, read after the check
//! call [r11]                                    ; pushes our return address at S: the callee
//!                                               ; sees the caller's stack arguments in place
//! push [tls - 16]; tls -= 16                    ; the caller's return address back at S, then
//!                                               ; the entry released
//! r11 = entry.slot; dec counter; cmp dword [slot.hot], 0; jne exit slow
//! ret                                           ; to the caller
//! ```
//!
//! An entry is reserved before it is written and read before it is released, so a signal
//! handler (the host's model of an interrupt) that calls a wrapper on the same thread at any
//! instruction nests above the interrupted call's entry and never reuses it
//! (`tests/engine_signals.rs`).
//!
//! The implementation is *called*, with the stack exactly as the caller left it except the
//! return-address slot, which holds the wrapper's return address during the call and the
//! caller's again before the wrapper's `ret`. Every `call` is paired with its `ret`, so
//! return prediction works and a hardware shadow stack (CET) sees matching return addresses.
//! No argument is copied: any number of stack arguments (and a Win64 home area, variadic
//! calls, a hidden struct-return pointer) reaches the implementation untouched.
//!
//! Only r10 and r11 are used: both are scratch in `SysV` and Microsoft x64 and carry no
//! argument in either (r10 is `SysV`'s static-chain register, which no function reached
//! through a pointer relies on). `rax` (`SysV` `al` = vector-register count of a variadic
//! call), every argument register and every callee-saved register of both conventions are
//! untouched; flags are not preserved (neither convention requires it).
//!
//! # The slow paths
//!
//! Entry slow path: first call on a thread (no block yet), or the stall flag was set (the
//! increment and the shadow entry are undone first). It saves every argument/volatile
//! general register and the whole extended state (`xsave64` with all components: x87,
//! MXCSR, xmm/ymm/zmm, ...) on a 64-byte aligned area, calls [`dp_enter_slow`] (which
//! registers the thread, holds the call while stalled, counts it, pushes the shadow entry
//! and returns the version), restores, and joins the call. Exit slow path (the stall flag
//! was set when the call left): the same save around [`dp_exit_slow`], which wakes the
//! draining swapper; it preserves the return registers (rax, rdx, xmm0, xmm1, st0/st1) and
//! Microsoft x64's callee-saved rsi, rdi, xmm6-15, which Rust code may use.

use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{LazyLock, Mutex, OnceLock};

use super::protocol::{self, EngineHot, Refused, Registry, ThreadRec};

/// Wrapper stubs available to all engines of the process.
pub(crate) const POOL: usize = 16384;
/// Stubs of the deliberately broken common path (mutation tests only).
pub(crate) const MUTANT_POOL: usize = 64;
const TOTAL: usize = POOL + MUTANT_POOL;
/// Bytes per stub.
pub(crate) const STUB_SIZE: usize = 16;
/// Engine indices (counters per thread). Index 0 is the "dead" engine of unallocated slots.
pub(crate) const MAX_ENGINES: usize = 1024;

/// One wrapper slot, read by the machine code.
#[repr(C, align(32))]
pub(crate) struct Slot {
    /// The current version record (offset 0).
    pub(crate) current: AtomicPtr<Version>,
    /// The owning engine's hot state (offset 8).
    pub(crate) hot: AtomicPtr<EngineHot>,
    /// `8 * engine index`: the counter's offset in a thread's array (offset 16).
    pub(crate) ctr_off: AtomicUsize,
    /// Unique id of the owning engine (0: free).
    pub(crate) owner: AtomicU64,
}

impl Slot {
    const fn new() -> Self {
        Self {
            current: AtomicPtr::new(core::ptr::null_mut()),
            hot: AtomicPtr::new(core::ptr::null_mut()),
            ctr_off: AtomicUsize::new(0),
            owner: AtomicU64::new(0),
        }
    }
}

/// One implementation of one wrapper in one generation. `target` is at offset 0: the
/// machine code calls `[version]`. Poisoning overwrites `target` with the poison stub.
#[repr(C)]
pub(crate) struct Version {
    /// What the wrapper calls (the implementation, or the poison stub once retired).
    pub(crate) target: AtomicUsize,
    /// The implementation, kept for reports.
    pub(crate) implementation: usize,
    /// The generation this record was published in.
    pub(crate) generation: u64,
    /// The slot (wrapper) it belongs to.
    pub(crate) slot: u32,
}

const _: () = {
    assert!(core::mem::size_of::<Slot>() == 32);
    assert!(core::mem::offset_of!(Slot, current) == 0);
    assert!(core::mem::offset_of!(Slot, hot) == 8);
    assert!(core::mem::offset_of!(Slot, ctr_off) == 16);
    assert!(core::mem::offset_of!(Version, target) == 0);
};
#[cfg(not(loom))]
const _: () = assert!(core::mem::offset_of!(EngineHot, stall) == 0);

/// The slot table the stubs index.
pub(crate) static SLOTS: [Slot; TOTAL] = [const { Slot::new() }; TOTAL];

/// Size of the `xsave64` area the slow paths reserve (set from CPUID before any wrapper can
/// be called; the initial value is generous).
static XSAVE_AREA: AtomicUsize = AtomicUsize::new(16384);

/// Mutation switch for tests: nonzero adds a short delay between the early read of the
/// version and the increment in the broken common path, to make its race easy to hit.
static MUTANT_DELAY: AtomicUsize = AtomicUsize::new(0);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
core::arch::global_asm!(
    // ---- the TLS word: this thread's shadow-stack pointer (0 until registered) ----
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl __dp_engine_tls",
    ".hidden __dp_engine_tls",
    ".type __dp_engine_tls,@object",
    ".size __dp_engine_tls,8",
    "__dp_engine_tls:",
    ".zero 8",
    ".popsection",
    // ---- save / restore for the slow paths (rbp = frame base) ----
    ".macro dp_engine_save",
    "sub rsp, 80",
    "mov [rbp - 8], rax",
    "mov [rbp - 16], rcx",
    "mov [rbp - 24], rdx",
    "mov [rbp - 32], rsi",
    "mov [rbp - 40], rdi",
    "mov [rbp - 48], r8",
    "mov [rbp - 56], r9",
    "mov [rbp - 64], r10",
    "mov [rbp - 72], r11",
    "sub rsp, qword ptr [rip + {xsave_area}]",
    "and rsp, -64",
    "xor eax, eax",
    "mov [rsp + 512], rax",
    "mov [rsp + 520], rax",
    "mov [rsp + 528], rax",
    "mov [rsp + 536], rax",
    "mov [rsp + 544], rax",
    "mov [rsp + 552], rax",
    "mov [rsp + 560], rax",
    "mov [rsp + 568], rax",
    "mov eax, -1",
    "mov edx, -1",
    "xsave64 [rsp]",
    ".endm",
    ".macro dp_engine_restore",
    "mov eax, -1",
    "mov edx, -1",
    "xrstor64 [rsp]",
    "mov rax, [rbp - 8]",
    "mov rcx, [rbp - 16]",
    "mov rdx, [rbp - 24]",
    "mov rsi, [rbp - 32]",
    "mov rdi, [rbp - 40]",
    "mov r8, [rbp - 48]",
    "mov r9, [rbp - 56]",
    "mov r10, [rbp - 64]",
    "mov r11, [rbp - 72]",
    "mov rsp, rbp",
    ".endm",
    // ---- the stubs ----
    ".pushsection .text.__dp_engine,\"ax\",@progbits",
    ".p2align 12",
    ".globl __dp_engine_stubs",
    ".hidden __dp_engine_stubs",
    "__dp_engine_stubs:",
    ".set dp_engine_i, 0",
    ".rept {pool}",
    "endbr64",
    "lea r11, [rip + {slots} + dp_engine_i * 32]",
    "jmp __dp_engine_common",
    ".balign 16, 0xcc",
    ".set dp_engine_i, dp_engine_i + 1",
    ".endr",
    ".globl __dp_engine_mutant_stubs",
    ".hidden __dp_engine_mutant_stubs",
    "__dp_engine_mutant_stubs:",
    ".rept {mutant_pool}",
    "endbr64",
    "lea r11, [rip + {slots} + dp_engine_i * 32]",
    "jmp __dp_engine_common_mutant",
    ".balign 16, 0xcc",
    ".set dp_engine_i, dp_engine_i + 1",
    ".endr",
    ".globl __dp_engine_stubs_end",
    ".hidden __dp_engine_stubs_end",
    "__dp_engine_stubs_end:",
    // ---- the common path (r11 = slot, rsp = S, [S] = caller's return address) ----
    ".p2align 6",
    ".globl __dp_engine_common",
    ".hidden __dp_engine_common",
    ".type __dp_engine_common,@function",
    "__dp_engine_common:",
    "mov r10, qword ptr fs:[__dp_engine_tls@TPOFF]",
    "test r10, r10",
    "jz .Ldp_engine_enter_slow",
    "cmp r10w, {shadow_limit}",
    "jae .Ldp_engine_enter_slow",
    // reserve the entry, then fill it (a handler interrupting here nests above it)
    "lea r10, [r10 + 16]",
    "mov qword ptr fs:[__dp_engine_tls@TPOFF], r10",
    "pop qword ptr [r10 - 16]",
    "mov [r10 - 8], r11",
    "and r10, -{block}",
    "add r10, qword ptr [r11 + 16]",
    "inc qword ptr [r10]",
    "mov r10, qword ptr [r11 + 8]",
    "cmp dword ptr [r10], 0",
    "jne .Ldp_engine_undo",
    "mov r11, qword ptr [r11]",
    ".Ldp_engine_call:",
    "call qword ptr [r11]",
    // read the entry back, then release it
    "mov r10, qword ptr fs:[__dp_engine_tls@TPOFF]",
    "sub r10, 16",
    "push qword ptr [r10]",
    "mov r11, qword ptr [r10 + 8]",
    "mov qword ptr fs:[__dp_engine_tls@TPOFF], r10",
    "and r10, -{block}",
    "add r10, qword ptr [r11 + 16]",
    "dec qword ptr [r10]",
    "mov r11, qword ptr [r11 + 8]",
    "cmp dword ptr [r11], 0",
    "jne .Ldp_engine_exit_slow",
    "ret",
    // stalled after counting (rsp = S + 8, r11 = slot): undo both, then the slow entry
    ".Ldp_engine_undo:",
    "mov r10, qword ptr fs:[__dp_engine_tls@TPOFF]",
    "sub r10, 16",
    "push qword ptr [r10]",
    "mov qword ptr fs:[__dp_engine_tls@TPOFF], r10",
    "and r10, -{block}",
    "add r10, qword ptr [r11 + 16]",
    "dec qword ptr [r10]",
    // slow entry (r11 = slot, rsp = S, [S] = caller's return address)
    ".Ldp_engine_enter_slow:",
    "push rbp",
    "mov rbp, rsp",
    "dp_engine_save",
    "mov rdi, r11",
    "lea rsi, [rbp + 8]",
    "call {enter_slow}",
    "mov [rbp - 72], rax",
    "dp_engine_restore",
    "pop rbp",
    "lea rsp, [rsp + 8]",
    "jmp .Ldp_engine_call",
    // slow exit (r11 = hot, rsp = S; the return value is live)
    ".Ldp_engine_exit_slow:",
    "push rbp",
    "mov rbp, rsp",
    "dp_engine_save",
    "mov rdi, r11",
    "call {exit_slow}",
    "dp_engine_restore",
    "pop rbp",
    "ret",
    ".size __dp_engine_common, . - __dp_engine_common",
    // ---- the broken common path (tests only): checks `stall` only BEFORE counting, and
    // ---- reads the version before counting; no re-check after the increment.
    ".p2align 6",
    "__dp_engine_common_mutant:",
    "mov r10, qword ptr [r11 + 8]",
    "cmp dword ptr [r10], 0",
    "jne .Ldp_engine_enter_slow",
    "mov r10, qword ptr fs:[__dp_engine_tls@TPOFF]",
    "test r10, r10",
    "jz .Ldp_engine_enter_slow",
    "cmp r10w, {shadow_limit}",
    "jae .Ldp_engine_enter_slow",
    "pop qword ptr [r10]",
    "mov [r10 + 8], r11",
    "add r10, 16",
    "mov qword ptr fs:[__dp_engine_tls@TPOFF], r10",
    "mov r10, qword ptr [r11]",
    "mov [rsp - 8], r10",
    "mov r10, qword ptr [rip + {mutant_delay}]",
    "2:",
    "test r10, r10",
    "jz 3f",
    "pause",
    "dec r10",
    "jmp 2b",
    "3:",
    "mov r10, qword ptr fs:[__dp_engine_tls@TPOFF]",
    "and r10, -{block}",
    "add r10, qword ptr [r11 + 16]",
    "inc qword ptr [r10]",
    "mov r11, [rsp - 8]",
    "jmp .Ldp_engine_call",
    // ---- what a retired (poisoned) or dead version calls: r11 = the version record ----
    ".p2align 4",
    ".globl __dp_engine_poisoned",
    ".hidden __dp_engine_poisoned",
    "__dp_engine_poisoned:",
    "endbr64",
    "mov rdi, r11",
    "and rsp, -16",
    "call {poisoned}",
    "ud2",
    ".popsection",
    xsave_area = sym XSAVE_AREA,
    mutant_delay = sym MUTANT_DELAY,
    slots = sym SLOTS,
    enter_slow = sym dp_enter_slow,
    exit_slow = sym dp_exit_slow,
    poisoned = sym dp_poisoned,
    pool = const POOL,
    mutant_pool = const MUTANT_POOL,
    block = const protocol::BLOCK,
    shadow_limit = const protocol::SHADOW_LIMIT,
);

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
unsafe extern "C" {
    static __dp_engine_stubs: u8;
    static __dp_engine_stubs_end: u8;
    static __dp_engine_poisoned: u8;
}

/// Address of the first stub.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn stubs_base() -> usize {
    (&raw const __dp_engine_stubs) as usize
}

/// One past the last stub.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn stubs_end() -> usize {
    (&raw const __dp_engine_stubs_end) as usize
}

/// What a retired version's `target` becomes when poisoned.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn poison_address() -> usize {
    (&raw const __dp_engine_poisoned) as usize
}

// Elsewhere no wrapper exists (`Engine::new` fails), so these are never used for calls.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn stubs_base() -> usize {
    0
}
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn stubs_end() -> usize {
    0
}
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) fn poison_address() -> usize {
    0
}

/// Code address of slot `i`'s stub.
pub(crate) fn stub_address(slot: usize) -> usize {
    debug_assert!(slot < TOTAL);
    stubs_base() + slot * STUB_SIZE
}

/// The slot whose stub starts at `address`, if any.
pub(crate) fn slot_at(address: usize) -> Option<usize> {
    let base = stubs_base();
    let end = stubs_end();
    if address < base || address >= end || !(address - base).is_multiple_of(STUB_SIZE) {
        return None;
    }
    Some((address - base) / STUB_SIZE)
}

/// Sets the broken common path's delay (iterations of `pause`; tests only).
pub(crate) fn set_mutant_delay(iterations: usize) {
    MUTANT_DELAY.store(iterations, Ordering::Relaxed);
}

// ---- process-wide state ----

/// The registry of thread records.
pub(crate) fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(|| Registry::new(MAX_ENGINES));
    &REGISTRY
}

/// The hot state of engine index `i` (index 0: the dead engine, always stalled).
pub(crate) fn hot(index: usize) -> &'static EngineHot {
    static HOTS: LazyLock<Box<[EngineHot]>> = LazyLock::new(|| {
        let hots: Box<[EngineHot]> = (0..MAX_ENGINES).map(|_| EngineHot::new()).collect();
        hots[0].stall.store(1, Ordering::SeqCst);
        hots[0].dead.store(1, Ordering::SeqCst);
        hots
    });
    &HOTS[index]
}

/// Version record of unallocated slots: calls it would make go to the poison stub.
fn dead_version() -> *mut Version {
    struct Dead(*mut Version);
    // SAFETY: the record is immutable after creation except for atomics.
    unsafe impl Send for Dead {}
    // SAFETY: as above.
    unsafe impl Sync for Dead {}
    static DEAD: OnceLock<Dead> = OnceLock::new();
    DEAD.get_or_init(|| {
        Dead(Box::into_raw(Box::new(Version {
            target: AtomicUsize::new(poison_address()),
            implementation: 0,
            generation: 0,
            slot: u32::MAX,
        })))
    })
    .0
}

/// Why the host cannot run wrappers, if it cannot.
#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
pub(crate) fn check_cpu() -> Result<(), &'static str> {
    Err("wrappers are implemented for x86-64 Linux only")
}

/// Why the host cannot run wrappers, if it cannot.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
pub(crate) fn check_cpu() -> Result<(), &'static str> {
    // CPUID leaf 1, ECX bit 27: OSXSAVE (XSAVE enabled by the OS).
    let leaf1 = core::arch::x86_64::__cpuid(1);
    if leaf1.ecx & (1 << 27) == 0 {
        return Err("the CPU/OS does not enable XSAVE");
    }
    Ok(())
}

/// One-time set-up: the `xsave` area size, every slot pointed at the dead engine.
pub(crate) fn init() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // CPUID leaf 0xD, sub-leaf 0, EBX: bytes needed by XSAVE for the components
        // enabled in XCR0.
        #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
        {
            let size = core::arch::x86_64::__cpuid_count(0xD, 0).ebx as usize;
            XSAVE_AREA.store(size.max(576).next_multiple_of(64), Ordering::SeqCst);
        }
        let dead_hot = core::ptr::from_ref(hot(0)).cast_mut();
        let dead = dead_version();
        for slot in &SLOTS {
            slot.hot.store(dead_hot, Ordering::Relaxed);
            slot.current.store(dead, Ordering::Relaxed);
            slot.ctr_off.store(0, Ordering::Relaxed);
        }
        core::sync::atomic::fence(Ordering::SeqCst);
    });
}

/// Free-slot bookkeeping. Freed slots are reused only when never-used ones run out, oldest
/// first, so a stale pointer to a dropped engine's wrapper keeps reaching the dead engine
/// (and aborting) for as long as possible.
struct SlotAlloc {
    fresh: usize,
    freed: std::collections::VecDeque<u32>,
    mutant_fresh: usize,
    mutant_freed: std::collections::VecDeque<u32>,
}

static SLOT_ALLOC: Mutex<SlotAlloc> = Mutex::new(SlotAlloc {
    fresh: 0,
    freed: std::collections::VecDeque::new(),
    mutant_fresh: 0,
    mutant_freed: std::collections::VecDeque::new(),
});

/// Allocates a slot (from the broken pool if `mutant`).
pub(crate) fn alloc_slot(mutant: bool) -> Option<u32> {
    let mut a = SLOT_ALLOC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let slot = if mutant {
        if a.mutant_fresh < MUTANT_POOL {
            a.mutant_fresh += 1;
            Some(POOL + a.mutant_fresh - 1)
        } else {
            a.mutant_freed.pop_front().map(|s| s as usize)
        }
    } else if a.fresh < POOL {
        a.fresh += 1;
        Some(a.fresh - 1)
    } else {
        a.freed.pop_front().map(|s| s as usize)
    };
    slot.map(|s| u32::try_from(s).expect("slot index fits u32"))
}

/// Returns a slot, after pointing it at the dead engine.
pub(crate) fn free_slot(slot: u32) {
    let s = &SLOTS[slot as usize];
    s.owner.store(0, Ordering::SeqCst);
    s.hot
        .store(core::ptr::from_ref(hot(0)).cast_mut(), Ordering::SeqCst);
    s.ctr_off.store(0, Ordering::SeqCst);
    s.current.store(dead_version(), Ordering::SeqCst);
    let mut a = SLOT_ALLOC
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if slot as usize >= POOL {
        a.mutant_freed.push_back(slot);
    } else {
        a.freed.push_back(slot);
    }
}

/// Engine indices in use.
static ENGINE_INDICES: Mutex<Vec<bool>> = Mutex::new(Vec::new());

/// Allocates an engine index (never 0).
pub(crate) fn alloc_index() -> Option<usize> {
    let mut used = ENGINE_INDICES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if used.is_empty() {
        used.resize(MAX_ENGINES, false);
        used[0] = true;
    }
    let i = used.iter().position(|u| !u)?;
    used[i] = true;
    Some(i)
}

/// Returns an engine index (its counters are all zero).
pub(crate) fn free_index(index: usize) {
    let mut used = ENGINE_INDICES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    used[index] = false;
}

// ---- the calling thread's record ----

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn set_tls(_value: usize) {}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn get_tls() -> usize {
    0
}

/// Sets this thread's shadow-stack pointer.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn set_tls(value: usize) {
    // SAFETY: writes this thread's TLS word defined above (local-exec model).
    unsafe {
        core::arch::asm!(
            "mov qword ptr fs:[__dp_engine_tls@TPOFF], {v}",
            v = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}

/// This thread's shadow-stack pointer.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn get_tls() -> usize {
    let v: usize;
    // SAFETY: reads this thread's TLS word defined above (local-exec model).
    unsafe {
        core::arch::asm!(
            "mov {v}, qword ptr fs:[__dp_engine_tls@TPOFF]",
            v = out(reg) v,
            options(nostack, preserves_flags, readonly),
        );
    }
    v
}

/// Releases the thread's record when the thread exits.
struct ThreadGuard(core::cell::Cell<Option<&'static ThreadRec>>);

impl Drop for ThreadGuard {
    fn drop(&mut self) {
        if let Some(rec) = self.0.take() {
            set_tls(0);
            registry().release(rec, |index| hot(index).drained.wake_all());
        }
    }
}

thread_local! {
    static THREAD: ThreadGuard = const { ThreadGuard(core::cell::Cell::new(None)) };
}

/// The calling thread's record, registering the thread on first use.
pub(crate) fn current_thread() -> &'static ThreadRec {
    let claim = || {
        let rec = registry().claim();
        set_tls(rec.block() + protocol::SHADOW_START);
        rec
    };
    THREAD
        .try_with(|g| {
            if let Some(rec) = g.0.get() {
                rec
            } else {
                let rec = claim();
                g.0.set(Some(rec));
                rec
            }
        })
        // The thread is exiting and its guard is gone (a wrapper called from another TLS
        // destructor): the record is claimed for good and never reused.
        .unwrap_or_else(|_| claim())
}

// ---- slow paths called from the machine code ----

fn die(message: &str) -> ! {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "driver-proxy host engine: {message}");
    std::process::abort();
}

/// Entry slow path: registers the thread if needed, admits the call (holding it while the
/// engine is stalled), moves the caller's return address from `*ra` into a new shadow-stack
/// entry, and returns the version to call.
///
/// # Safety
///
/// Called only by the wrapper machine code, with `slot` pointing into [`SLOTS`] and `ra`
/// at the caller's return-address slot.
unsafe extern "C" fn dp_enter_slow(slot: *const Slot, ra: *const usize) -> *const Version {
    // SAFETY: the machine code passes &SLOTS[i].
    let slot_ref = unsafe { &*slot };
    let rec = current_thread();
    let hot_ptr = slot_ref.hot.load(Ordering::Acquire);
    // SAFETY: slot.hot always points at an entry of the static hot table.
    let hot = unsafe { &*hot_ptr };
    let index = slot_ref.ctr_off.load(Ordering::Acquire) / 8;
    let counter = rec.counter(index);
    let top = get_tls();
    if top == 0 || top - rec.block() + 16 > protocol::SHADOW_LIMIT {
        die("wrapper calls nested deeper than the shadow stack (3,328 levels)");
    }
    match protocol::enter(hot, counter, rec.identity()) {
        Ok(()) => {}
        Err(Refused::Dead) => die("a wrapper of a dropped engine was called"),
        Err(Refused::SwapperReentry) => die(
            "the ProxyStalled callback called a wrapper of its own extension, which the DDI \
             forbids (it would wait for itself)",
        ),
    }
    // Reserve the entry, then fill it: a signal handler calling a wrapper in between nests
    // above it instead of reusing it.
    set_tls(top + 16);
    // SAFETY: `top` is this thread's entry just reserved (16 bytes inside its block, checked
    // above); `ra` is the caller's return-address slot.
    unsafe {
        let entry = top as *mut usize;
        entry.write(ra.read());
        entry.add(1).write(slot as usize);
    }
    slot_ref.current.load(Ordering::Acquire)
}

/// Exit slow path: a call left while its engine was stalled; wake the swapper.
///
/// # Safety
///
/// Called only by the wrapper machine code with `hot` from a slot.
unsafe extern "C" fn dp_exit_slow(hot: *const EngineHot) {
    // SAFETY: the machine code passes the hot pointer it read from a slot.
    protocol::exit_slow(unsafe { &*hot });
}

/// What a poisoned record was: (implementation, generation, slot, generation that retired it).
pub(crate) type PoisonInfo = (usize, u64, u32, u64);

/// Poisoned-version diagnostics, by version record address.
pub(crate) static POISONED: Mutex<Option<std::collections::HashMap<usize, PoisonInfo>>> =
    Mutex::new(None);

/// A call reached a retired (poisoned) or dead version record.
extern "C" fn dp_poisoned(version: usize) -> ! {
    let info = POISONED
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(&version).copied()));
    match info {
        Some((implementation, generation, slot, retired)) => die(&format!(
            "POISONED: a call reached retired implementation {implementation:#x} of wrapper \
             {slot} (generation {generation}, retired by generation {retired})"
        )),
        None => die(&format!(
            "POISONED: a call reached a retired or dead version record {version:#x}"
        )),
    }
}
