//! The DriverProxy types of `wdm.h`, transcribed from the C declarations of
//! `docs/ddi.md#types` (the syntax blocks of Microsoft Learn's `ns-wdm-driver_proxy_*`,
//! `ne-wdm-driver_proxy_register_callback_phase` and `nc-wdm-driver_proxy_*` pages) and the
//! layouts given there (public-symbol dumps, in-box drivers).

use core::mem::{align_of, offset_of, size_of};

use super::nt::{
    BOOLEAN, KPROCESSOR_MODE, KWAIT_REASON, LARGE_INTEGER, NTSTATUS, PKEVENT, PVOID, ULONG,
    WAIT_TYPE,
};

/// `struct _DRIVER_PROXY_EXTENSION`: the kernel's per-driver DriverProxy state, only ever
/// handled by pointer (`docs/ddi.md#driver_proxy_extension`). In the host kernel a handle is
/// the address of the model's extension record.
#[repr(C)]
pub struct DRIVER_PROXY_EXTENSION {
    _private: [u8; 0],
}
/// `PDRIVER_PROXY_EXTENSION`.
pub type PDRIVER_PROXY_EXTENSION = *mut DRIVER_PROXY_EXTENSION;

/// The bit fields of [`DRIVER_PROXY_FEATURE_FLAGS`]: `ULONG Enabled : 1; ULONG Reserved : 31;`
/// (the Microsoft compilers allocate bit fields from the least significant bit).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DRIVER_PROXY_FEATURE_FLAGS_BITS(pub ULONG);

impl DRIVER_PROXY_FEATURE_FLAGS_BITS {
    /// The width and position of `Enabled`: bit 0.
    pub const ENABLED_MASK: ULONG = 0x1;
    /// `Reserved`: bits 1–31.
    pub const RESERVED_MASK: ULONG = !Self::ENABLED_MASK;

    /// The bit fields with `Enabled` as given and `Reserved` 0.
    #[must_use]
    pub const fn new(enabled: bool) -> Self {
        Self(if enabled { Self::ENABLED_MASK } else { 0 })
    }

    /// `Enabled`.
    #[must_use]
    pub const fn Enabled(self) -> ULONG {
        self.0 & Self::ENABLED_MASK
    }

    /// `Reserved`.
    #[must_use]
    pub const fn Reserved(self) -> ULONG {
        (self.0 & Self::RESERVED_MASK) >> 1
    }
}

/// `DRIVER_PROXY_FEATURE_FLAGS` (`docs/ddi.md#driver_proxy_feature_flags`):
///
/// ```c
/// typedef union _DRIVER_PROXY_FEATURE_FLAGS {
///   ULONG AsUlong;
///   struct { ULONG Enabled : 1; ULONG Reserved : 31; };
/// } DRIVER_PROXY_FEATURE_FLAGS, *PDRIVER_PROXY_FEATURE_FLAGS;
/// ```
#[repr(C)]
#[derive(Clone, Copy)]
pub union DRIVER_PROXY_FEATURE_FLAGS {
    /// The whole union.
    pub AsUlong: ULONG,
    /// The anonymous struct of bit fields.
    pub Bits: DRIVER_PROXY_FEATURE_FLAGS_BITS,
}
/// `PDRIVER_PROXY_FEATURE_FLAGS`.
pub type PDRIVER_PROXY_FEATURE_FLAGS = *mut DRIVER_PROXY_FEATURE_FLAGS;

impl DRIVER_PROXY_FEATURE_FLAGS {
    /// `AsUlong`.
    #[must_use]
    pub const fn as_ulong(self) -> ULONG {
        // SAFETY: both members are the same 4 bytes, any bit pattern valid.
        unsafe { self.AsUlong }
    }
}

/// The bit fields of [`DRIVER_PROXY_EXTENSION_CREATION_FLAGS`]: `ULONG ReservedZero : 32;`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DRIVER_PROXY_EXTENSION_CREATION_FLAGS_BITS(pub ULONG);

impl DRIVER_PROXY_EXTENSION_CREATION_FLAGS_BITS {
    /// `ReservedZero`: all 32 bits, which must be zero.
    #[must_use]
    pub const fn ReservedZero(self) -> ULONG {
        self.0
    }
}

/// `DRIVER_PROXY_EXTENSION_CREATION_FLAGS` (`docs/ddi.md#driver_proxy_extension_creation_flags`),
/// passed **by value** to `IoCreateDriverProxyExtension`; no flag is defined:
///
/// ```c
/// typedef union _DRIVER_PROXY_EXTENSION_CREATION_FLAGS {
///   ULONG AsUlong;
///   struct { ULONG ReservedZero : 32; };
/// } DRIVER_PROXY_EXTENSION_CREATION_FLAGS, *PDRIVER_PROXY_EXTENSION_CREATION_FLAGS;
/// ```
///
/// A 4-byte union passed by value travels like a `ULONG` (in a register) on x64 and ARM64.
#[repr(C)]
#[derive(Clone, Copy)]
pub union DRIVER_PROXY_EXTENSION_CREATION_FLAGS {
    /// The whole union; 0.
    pub AsUlong: ULONG,
    /// The anonymous struct of bit fields.
    pub Bits: DRIVER_PROXY_EXTENSION_CREATION_FLAGS_BITS,
}

impl DRIVER_PROXY_EXTENSION_CREATION_FLAGS {
    /// `AsUlong`.
    #[must_use]
    pub const fn as_ulong(self) -> ULONG {
        // SAFETY: both members are the same 4 bytes, any bit pattern valid.
        unsafe { self.AsUlong }
    }
}

/// `DRIVER_PROXY_ENDPOINT_FUNCTION`: `VOID DriverProxyEndpointFunction();` — a type-erased
/// code address (`docs/ddi.md#driver_proxy_endpoint_function`). Endpoints have any signature;
/// the host never calls one through this type, it only carries the address.
pub type DRIVER_PROXY_ENDPOINT_FUNCTION = unsafe extern "system" fn();
/// `PDRIVER_PROXY_ENDPOINT_FUNCTION`: a C function pointer, so NULL is representable.
pub type PDRIVER_PROXY_ENDPOINT_FUNCTION = Option<DRIVER_PROXY_ENDPOINT_FUNCTION>;
/// `PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION`: the wrapper the kernel hands back, "a pointer to
/// a `DRIVER_PROXY_ENDPOINT_FUNCTION` wrapper" (`docs/ddi.md#pdriver_proxy_wrapped_endpoint_function`;
/// the typedef itself is unpublished).
pub type PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION = Option<DRIVER_PROXY_ENDPOINT_FUNCTION>;

/// `DRIVER_PROXY_ENDPOINT_FUNCTION_ID` (V1): 4 bytes, unsigned (the symbol dump's `unsigned
/// long`; `docs/ddi.md#driver_proxy_endpoint_function_id`).
pub type DRIVER_PROXY_ENDPOINT_FUNCTION_ID = ULONG;

/// `DRIVER_PROXY_ENDPOINT_INFORMATION` (V1, `docs/ddi.md#driver_proxy_endpoint_information`):
///
/// ```c
/// typedef struct _DRIVER_PROXY_ENDPOINT_INFORMATION {
///   DRIVER_PROXY_ENDPOINT_FUNCTION_ID Id;
///   PDRIVER_PROXY_ENDPOINT_FUNCTION   EndpointFunction;
///   ULONG                             ParameterCount;
/// } DRIVER_PROXY_ENDPOINT_INFORMATION, *PDRIVER_PROXY_ENDPOINT_INFORMATION;
/// ```
///
/// Size 0x18: `Id` at 0, `EndpointFunction` at 8, `ParameterCount` at 0x10.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DRIVER_PROXY_ENDPOINT_INFORMATION {
    /// The endpoint's id.
    pub Id: DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
    /// The endpoint, type-erased.
    pub EndpointFunction: PDRIVER_PROXY_ENDPOINT_FUNCTION,
    /// How many parameters the endpoint takes.
    pub ParameterCount: ULONG,
}
/// `PDRIVER_PROXY_ENDPOINT_INFORMATION`.
pub type PDRIVER_PROXY_ENDPOINT_INFORMATION = *mut DRIVER_PROXY_ENDPOINT_INFORMATION;

/// `DRIVER_PROXY_REGISTER_CALLBACK_PHASE` (`docs/ddi.md#driver_proxy_register_callback_phase`):
///
/// ```c
/// typedef enum _DRIVER_PROXY_REGISTER_CALLBACK_PHASE {
///   DriverProxyRegisterCallbackPreProcess,
///   DriverProxyRegisterCallbackProxyStalled,
///   DriverProxyRegisterCallbackPostProcess,
///   DriverProxyRegisterCallbackMax
/// } DRIVER_PROXY_REGISTER_CALLBACK_PHASE;
/// ```
///
/// A C enum without initialisers: an `int`, numbered from 0 in order.
pub type DRIVER_PROXY_REGISTER_CALLBACK_PHASE = core::ffi::c_int;
/// `DriverProxyRegisterCallbackPreProcess`.
pub const DriverProxyRegisterCallbackPreProcess: DRIVER_PROXY_REGISTER_CALLBACK_PHASE = 0;
/// `DriverProxyRegisterCallbackProxyStalled`.
pub const DriverProxyRegisterCallbackProxyStalled: DRIVER_PROXY_REGISTER_CALLBACK_PHASE =
    DriverProxyRegisterCallbackPreProcess + 1;
/// `DriverProxyRegisterCallbackPostProcess`.
pub const DriverProxyRegisterCallbackPostProcess: DRIVER_PROXY_REGISTER_CALLBACK_PHASE =
    DriverProxyRegisterCallbackProxyStalled + 1;
/// `DriverProxyRegisterCallbackMax`: the sentinel, never delivered.
pub const DriverProxyRegisterCallbackMax: DRIVER_PROXY_REGISTER_CALLBACK_PHASE =
    DriverProxyRegisterCallbackPostProcess + 1;

/// `DRIVER_PROXY_REGISTER_CALLBACK` (`docs/ddi.md#driver_proxy_register_callback`):
/// `NTSTATUS DriverProxyRegisterCallback(DRIVER_PROXY_REGISTER_CALLBACK_PHASE Phase, PVOID
/// Context);`
pub type DRIVER_PROXY_REGISTER_CALLBACK = unsafe extern "system" fn(
    Phase: DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
    Context: PVOID,
) -> NTSTATUS;
/// `PDRIVER_PROXY_REGISTER_CALLBACK` (`[in, optional]` in the registration: nullable).
pub type PDRIVER_PROXY_REGISTER_CALLBACK = Option<DRIVER_PROXY_REGISTER_CALLBACK>;

/// `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE` (`docs/ddi.md#driver_proxy_hotswap_worker_routine`):
/// `BOOLEAN DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE(PVOID WorkerContext, NTSTATUS WaitStatus);`
pub type DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE =
    unsafe extern "system" fn(WorkerContext: PVOID, WaitStatus: NTSTATUS) -> BOOLEAN;
/// `PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE`.
pub type PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE = Option<DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE>;

/// `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT`
/// (`docs/ddi.md#driver_proxy_hotswap_worker_routine_start_context`):
///
/// ```c
/// typedef struct _DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
///   PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE WorkerRoutine;
///   PVOID                                Context;
///   WAIT_TYPE                            WaitType;
///   KWAIT_REASON                         WaitReason;
///   KPROCESSOR_MODE                      WaitMode;
///   BOOLEAN                              Altertable;   /* sic */
///   BOOLEAN                              HasTimeout;
///   LARGE_INTEGER                        Timeout;
///   ULONG                                EventCount;
///   PKEVENT                              Events[ANYSIZE_ARRAY];
/// } DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT;
/// ```
///
/// `Events` is a C flexible array (`ANYSIZE_ARRAY` = 1): here a zero-length array at its
/// offset, 0x30, with `EventCount` entries following. The C `sizeof` (one entry) is 0x38.
#[repr(C)]
#[derive(Debug)]
pub struct DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
    /// The wrapper of the worker routine.
    pub WorkerRoutine: PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
    /// Passed to the routine.
    pub Context: PVOID,
    /// `WaitAll` or `WaitAny`.
    pub WaitType: WAIT_TYPE,
    /// The wait reason.
    pub WaitReason: KWAIT_REASON,
    /// `KernelMode` or `UserMode`.
    pub WaitMode: KPROCESSOR_MODE,
    /// Whether the wait is alertable (the header's spelling).
    pub Altertable: BOOLEAN,
    /// Whether `Timeout` applies.
    pub HasTimeout: BOOLEAN,
    /// 100 ns units; negative relative, positive absolute.
    pub Timeout: LARGE_INTEGER,
    /// How many entries `Events` has.
    pub EventCount: ULONG,
    /// The events, `EventCount` of them from here on.
    pub Events: [PKEVENT; 0],
}
/// `PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT`.
pub type PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT =
    *mut DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT;

/// `sizeof` of a start context with `events` entries in `Events`:
/// `FIELD_OFFSET(DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT, Events[events])`.
#[must_use]
pub const fn start_context_size(events: usize) -> usize {
    offset_of!(DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT, Events)
        + events * size_of::<PKEVENT>()
}

const _: () = {
    type Start = DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT;
    assert!(size_of::<PDRIVER_PROXY_EXTENSION>() == 8);
    assert!(size_of::<DRIVER_PROXY_FEATURE_FLAGS>() == 4);
    assert!(align_of::<DRIVER_PROXY_FEATURE_FLAGS>() == 4);
    assert!(size_of::<DRIVER_PROXY_EXTENSION_CREATION_FLAGS>() == 4);
    assert!(align_of::<DRIVER_PROXY_EXTENSION_CREATION_FLAGS>() == 4);
    assert!(size_of::<PDRIVER_PROXY_ENDPOINT_FUNCTION>() == 8);
    assert!(size_of::<PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION>() == 8);
    assert!(size_of::<DRIVER_PROXY_ENDPOINT_FUNCTION_ID>() == 4);
    assert!(size_of::<DRIVER_PROXY_REGISTER_CALLBACK_PHASE>() == 4);
    assert!(size_of::<DRIVER_PROXY_ENDPOINT_INFORMATION>() == 0x18);
    assert!(align_of::<DRIVER_PROXY_ENDPOINT_INFORMATION>() == 8);
    assert!(offset_of!(DRIVER_PROXY_ENDPOINT_INFORMATION, Id) == 0);
    assert!(offset_of!(DRIVER_PROXY_ENDPOINT_INFORMATION, EndpointFunction) == 8);
    assert!(offset_of!(DRIVER_PROXY_ENDPOINT_INFORMATION, ParameterCount) == 0x10);
    assert!(offset_of!(Start, WorkerRoutine) == 0);
    assert!(offset_of!(Start, Context) == 8);
    assert!(offset_of!(Start, WaitType) == 0x10);
    assert!(offset_of!(Start, WaitReason) == 0x14);
    assert!(offset_of!(Start, WaitMode) == 0x18);
    assert!(offset_of!(Start, Altertable) == 0x19);
    assert!(offset_of!(Start, HasTimeout) == 0x1A);
    assert!(offset_of!(Start, Timeout) == 0x20);
    assert!(offset_of!(Start, EventCount) == 0x28);
    assert!(offset_of!(Start, Events) == 0x30);
    assert!(size_of::<Start>() == 0x30 && align_of::<Start>() == 8);
    // The public-symbol dump's `Size=0x38` (one event); acpi.sys's 0x40-byte block (two).
    assert!(start_context_size(1) == 0x38);
    assert!(start_context_size(2) == 0x40);
};
