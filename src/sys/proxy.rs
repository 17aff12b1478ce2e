//! The DriverProxy types of `wdm.h` (`docs/ddi.md#types`), with compile-time layout
//! checks against the sizes and offsets given there for x64 (PDB dumps and
//! in-box drivers).

use core::mem::{align_of, offset_of, size_of};

use super::ntdef::{
    BOOLEAN, KPROCESSOR_MODE, KWAIT_REASON, LARGE_INTEGER, NTSTATUS, PKEVENT, PVOID, ULONG,
    WAIT_TYPE,
};

/// `DRIVER_PROXY_EXTENSION`: the opaque per-driver DriverProxy state. Never dereferenced.
///
/// The header is believed to declare `typedef struct _DRIVER_PROXY_EXTENSION
/// *PDRIVER_PROXY_EXTENSION;` (ntoskrnl symbols contain the tag); the exact form is
/// UNCONFIRMED and irrelevant to the ABI.
#[repr(C)]
pub struct DRIVER_PROXY_EXTENSION {
    _opaque: [u8; 0],
}
/// `PDRIVER_PROXY_EXTENSION`.
pub type PDRIVER_PROXY_EXTENSION = *mut DRIVER_PROXY_EXTENSION;

/// `DRIVER_PROXY_FEATURE_FLAGS`: output of `IoGetDriverProxyFeatures`.
///
/// ```c
/// typedef union _DRIVER_PROXY_FEATURE_FLAGS {
///   ULONG AsUlong;
///   struct { ULONG Enabled : 1; ULONG Reserved : 31; };
/// } DRIVER_PROXY_FEATURE_FLAGS;
/// ```
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DRIVER_PROXY_FEATURE_FLAGS {
    /// The whole union as one `ULONG`.
    pub AsUlong: ULONG,
}

impl DRIVER_PROXY_FEATURE_FLAGS {
    /// Bit 0, `Enabled`: the DriverProxy routines can succeed for the driver asked about.
    pub const ENABLED: ULONG = 1;

    /// The `Enabled` bit field.
    ///
    /// IRQL: any.
    #[must_use]
    pub const fn Enabled(self) -> bool {
        self.AsUlong & Self::ENABLED != 0
    }
}

/// `DRIVER_PROXY_EXTENSION_CREATION_FLAGS`: passed **by value** to
/// `IoCreateDriverProxyExtension`; no flag is defined and the value must be zero.
///
/// ```c
/// typedef union _DRIVER_PROXY_EXTENSION_CREATION_FLAGS {
///   ULONG AsUlong;
///   struct { ULONG ReservedZero : 32; };
/// } DRIVER_PROXY_EXTENSION_CREATION_FLAGS;
/// ```
/// A 4-byte union by value travels in a register exactly like a `ULONG` on x64 and ARM64,
/// hence `#[repr(transparent)]`.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DRIVER_PROXY_EXTENSION_CREATION_FLAGS {
    /// The whole union as one `ULONG`; must be 0.
    pub AsUlong: ULONG,
}

/// `DRIVER_PROXY_ENDPOINT_FUNCTION`: `VOID DriverProxyEndpointFunction()`. A type-erased
/// code pointer: real endpoints have any signature and are cast to and from this type.
pub type DRIVER_PROXY_ENDPOINT_FUNCTION = unsafe extern "system" fn();
/// `PDRIVER_PROXY_ENDPOINT_FUNCTION` (nullable).
pub type PDRIVER_PROXY_ENDPOINT_FUNCTION = Option<DRIVER_PROXY_ENDPOINT_FUNCTION>;

/// `PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION`: the wrapper the kernel hands back.
///
/// Its definition is UNCONFIRMED; the DDI text calls it "a pointer to a
/// `DRIVER_PROXY_ENDPOINT_FUNCTION` wrapper", so it is bound as the same nullable
/// type-erased code pointer.
pub type PDRIVER_PROXY_WRAPPED_ENDPOINT_FUNCTION = Option<DRIVER_PROXY_ENDPOINT_FUNCTION>;

/// `DRIVER_PROXY_ENDPOINT_FUNCTION_ID` (V1): a driver-chosen id, unique per extension.
///
/// Four bytes, unsigned (PDB: `unsigned long`). Whether the header spells it as a `ULONG`
/// typedef or an enum is UNCONFIRMED; the ABI is the same.
pub type DRIVER_PROXY_ENDPOINT_FUNCTION_ID = ULONG;

/// `DRIVER_PROXY_ENDPOINT_INFORMATION` (V1): one endpoint to register.
///
/// x64 layout (PDB): `Id` @0x00, `EndpointFunction` @0x08, `ParameterCount` @0x10, size 0x18.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DRIVER_PROXY_ENDPOINT_INFORMATION {
    /// The endpoint's id; registering an existing id again replaces its implementation.
    pub Id: DRIVER_PROXY_ENDPOINT_FUNCTION_ID,
    /// The endpoint, cast to the type-erased pointer.
    pub EndpointFunction: PDRIVER_PROXY_ENDPOINT_FUNCTION,
    /// Number of parameters the endpoint takes; must match on replacement.
    pub ParameterCount: ULONG,
}
/// `PDRIVER_PROXY_ENDPOINT_INFORMATION`.
pub type PDRIVER_PROXY_ENDPOINT_INFORMATION = *mut DRIVER_PROXY_ENDPOINT_INFORMATION;

/// `DRIVER_PROXY_REGISTER_CALLBACK_PHASE` (V1; C enum, 4 bytes).
///
/// The values 0..=3 follow the C default numbering of the documented declaration, which
/// shows no initialisers; not checked against a real header (UNCONFIRMED, very likely).
pub type DRIVER_PROXY_REGISTER_CALLBACK_PHASE = i32;
/// `DriverProxyRegisterCallbackPreProcess`: before switching; calls still flow.
pub const DriverProxyRegisterCallbackPreProcess: DRIVER_PROXY_REGISTER_CALLBACK_PHASE = 0;
/// `DriverProxyRegisterCallbackProxyStalled`: the rundown is held; no endpoint call runs.
pub const DriverProxyRegisterCallbackProxyStalled: DRIVER_PROXY_REGISTER_CALLBACK_PHASE = 1;
/// `DriverProxyRegisterCallbackPostProcess`: switching done; calls flow again.
pub const DriverProxyRegisterCallbackPostProcess: DRIVER_PROXY_REGISTER_CALLBACK_PHASE = 2;
/// `DriverProxyRegisterCallbackMax`: sentinel, never delivered.
pub const DriverProxyRegisterCallbackMax: DRIVER_PROXY_REGISTER_CALLBACK_PHASE = 3;

/// `DRIVER_PROXY_REGISTER_CALLBACK` (V1), called at `PASSIVE_LEVEL`:
/// `NTSTATUS DriverProxyRegisterCallback(DRIVER_PROXY_REGISTER_CALLBACK_PHASE Phase, PVOID Context)`.
pub type DRIVER_PROXY_REGISTER_CALLBACK = unsafe extern "system" fn(
    Phase: DRIVER_PROXY_REGISTER_CALLBACK_PHASE,
    Context: PVOID,
) -> NTSTATUS;
/// `PDRIVER_PROXY_REGISTER_CALLBACK` (nullable: the callback is optional).
pub type PDRIVER_PROXY_REGISTER_CALLBACK = Option<DRIVER_PROXY_REGISTER_CALLBACK>;

/// `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE`, run at `PASSIVE_LEVEL` by a hot-swappable worker
/// thread: `BOOLEAN Routine(PVOID WorkerContext, NTSTATUS WaitStatus)`; `TRUE` waits again,
/// `FALSE` ends the thread.
pub type DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE =
    unsafe extern "system" fn(WorkerContext: PVOID, WaitStatus: NTSTATUS) -> BOOLEAN;
/// `PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE` (nullable).
pub type PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE = Option<DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE>;

/// `DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT`: a variable-length structure whose
/// `Events` array holds `EventCount` entries. Its size for `n` events is
/// [`worker_start_context_size`]`(n)` = `0x30 + 8 * n`.
///
/// The field `Altertable` is spelled as in the header (sic). `Timeout` is a `LARGE_INTEGER`
/// by value (PDB and acpi.sys), in 100 ns units, negative = relative; ignored unless
/// `HasTimeout`.
#[repr(C)]
#[derive(Debug)]
pub struct DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT {
    /// Wrapper of the worker routine.
    pub WorkerRoutine: PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE,
    /// Passed to the routine unchanged.
    pub Context: PVOID,
    /// `WaitAll` or `WaitAny`.
    pub WaitType: WAIT_TYPE,
    /// Wait reason, as for `KeWaitForMultipleObjects`.
    pub WaitReason: KWAIT_REASON,
    /// `KernelMode` or `UserMode`.
    pub WaitMode: KPROCESSOR_MODE,
    /// Whether the wait is alertable (field name spelled as in `wdm.h`).
    pub Altertable: BOOLEAN,
    /// Whether `Timeout` applies.
    pub HasTimeout: BOOLEAN,
    /// Timeout in 100 ns units; negative = relative, positive = absolute.
    pub Timeout: LARGE_INTEGER,
    /// Number of entries in `Events`.
    pub EventCount: ULONG,
    /// The events to wait on: `EventCount` entries follow (C `ANYSIZE_ARRAY`).
    pub Events: [PKEVENT; 0],
}
/// `PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT`.
pub type PDRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT =
    *mut DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT;

/// `FIELD_OFFSET(DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT, Events)`.
pub const WORKER_START_CONTEXT_EVENTS_OFFSET: usize =
    offset_of!(DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT, Events);

/// Size in bytes of a start context holding `event_count` events:
/// `FIELD_OFFSET(..., Events) + event_count * sizeof(PKEVENT)`.
///
/// IRQL: any.
#[must_use]
pub const fn worker_start_context_size(event_count: usize) -> usize {
    WORKER_START_CONTEXT_EVENTS_OFFSET + event_count * size_of::<PKEVENT>()
}

const _: () = {
    type Start = DRIVER_PROXY_HOTSWAP_WORKER_ROUTINE_START_CONTEXT;
    assert!(size_of::<DRIVER_PROXY_FEATURE_FLAGS>() == 4);
    assert!(align_of::<DRIVER_PROXY_FEATURE_FLAGS>() == 4);
    assert!(size_of::<DRIVER_PROXY_EXTENSION_CREATION_FLAGS>() == 4);
    assert!(size_of::<PDRIVER_PROXY_ENDPOINT_FUNCTION>() == 8);
    assert!(size_of::<DRIVER_PROXY_ENDPOINT_FUNCTION_ID>() == 4);
    assert!(size_of::<DRIVER_PROXY_ENDPOINT_INFORMATION>() == 0x18);
    assert!(align_of::<DRIVER_PROXY_ENDPOINT_INFORMATION>() == 8);
    assert!(offset_of!(DRIVER_PROXY_ENDPOINT_INFORMATION, Id) == 0x00);
    assert!(offset_of!(DRIVER_PROXY_ENDPOINT_INFORMATION, EndpointFunction) == 0x08);
    assert!(offset_of!(DRIVER_PROXY_ENDPOINT_INFORMATION, ParameterCount) == 0x10);
    assert!(size_of::<DRIVER_PROXY_REGISTER_CALLBACK_PHASE>() == 4);
    assert!(offset_of!(Start, WorkerRoutine) == 0x00);
    assert!(offset_of!(Start, Context) == 0x08);
    assert!(offset_of!(Start, WaitType) == 0x10);
    assert!(offset_of!(Start, WaitReason) == 0x14);
    assert!(offset_of!(Start, WaitMode) == 0x18);
    assert!(offset_of!(Start, Altertable) == 0x19);
    assert!(offset_of!(Start, HasTimeout) == 0x1A);
    assert!(offset_of!(Start, Timeout) == 0x20);
    assert!(offset_of!(Start, EventCount) == 0x28);
    assert!(offset_of!(Start, Events) == 0x30);
    assert!(size_of::<Start>() == 0x30);
    assert!(align_of::<Start>() == 8);
    // PDB: "Size=0x38" with the one-element C array; acpi.sys allocates 0x40 for two events.
    assert!(worker_start_context_size(1) == 0x38);
    assert!(worker_start_context_size(2) == 0x40);
};
