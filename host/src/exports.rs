//! The kernel routines the host exports by their C names, and `MmGetSystemRoutineAddress`,
//! through which the library finds them at run time.
//!
//! `driver-proxy` imports `MmGetSystemRoutineAddress` statically; on a host build the linker
//! resolves it to the function below. The routine table says which routines this model of
//! the kernel exports: the seven documented DriverProxy routines, the kernel routines the
//! library resolves (events, the multi-object wait, system threads, `ZwClose`, pool) and
//! `ZwWaitForSingleObject`, all implemented in [`crate::kernel`], plus
//! `MmGetSystemRoutineAddress` itself. So by default the host is a kernel *with* Driver
//! Hot-Swap.
//!
//! These are the `extern "system"` (on this host: `SysV`) entry points, for drivers compiled
//! for the host. Code of a `.sys` image uses the Microsoft x64 entry points of
//! [`crate::wdm`] instead ([`crate::wdm::win64_routine`], and its own
//! `MmGetSystemRoutineAddress`, which answers with those).
//!
//! A test can hide any export ([`hide_export`]) to check the library's behaviour on a kernel
//! that lacks it (a kernel older than Driver Hot-Swap: hide the seven DriverProxy names).
//! The library resolves every routine once per process, on its first call, so the hiding must
//! come before any call into the library in that process: a test binary of its own, hiding
//! in a `std::sync::Once` at the top of every test.

use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::{Mutex, PoisonError};

use crate::ddi;

use crate::kernel::{driver_extensions, events, pool, proxy, threads};

/// A routine the host exports: its name and address.
struct ExportedRoutine {
    name: &'static str,
    address: *const c_void,
}

// SAFETY: the addresses are of functions, immutable and valid for the whole process.
unsafe impl Sync for ExportedRoutine {}

macro_rules! exported {
    ($($module:ident :: $name:ident),* $(,)?) => {
        &[$(ExportedRoutine {
            name: stringify!($name),
            address: $module::$name as *const c_void,
        }),*]
    };
}

/// The routines this model of the kernel exports.
static ROUTINES: &[ExportedRoutine] = exported![
    proxy::IoGetDriverProxyFeatures,
    proxy::IoCreateDriverProxyExtension,
    proxy::IoGetDriverProxyExtensionFromDriverObject,
    proxy::IoRegisterDriverProxyEndpoints,
    proxy::IoGetDriverProxyEndpointWrapper,
    proxy::IofGetDriverProxyWrapperFromEndpoint,
    proxy::IoDriverProxyCreateHotSwappableWorkerThread,
    events::KeInitializeEvent,
    events::KeSetEvent,
    events::KeClearEvent,
    events::KeResetEvent,
    events::KeReadStateEvent,
    events::KeWaitForMultipleObjects,
    threads::PsCreateSystemThread,
    threads::ZwClose,
    threads::ZwWaitForSingleObject,
    pool::ExAllocatePool2,
    pool::ExAllocatePoolWithTag,
    pool::ExFreePoolWithTag,
    driver_extensions::IoAllocateDriverObjectExtension,
    driver_extensions::IoGetDriverObjectExtension,
    self::MmGetSystemRoutineAddress,
];

static HIDDEN: Mutex<Option<HashSet<String>>> = Mutex::new(None);

/// Makes `MmGetSystemRoutineAddress` answer "not present" for `name` from now on in this
/// process. The library caches resolution once per process, so a test hides exports before
/// its first call into the library (one test binary per configuration).
pub fn hide_export(name: &str) {
    HIDDEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashSet::new)
        .insert(name.to_owned());
}

/// Whether `name` was hidden with [`hide_export`].
pub(crate) fn is_hidden(name: &str) -> bool {
    HIDDEN
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_ref()
        .is_some_and(|hidden| hidden.contains(name))
}

/// The exported routine called `name`, or null.
fn lookup(name: &str) -> *mut c_void {
    if is_hidden(name) {
        return std::ptr::null_mut();
    }
    ROUTINES
        .iter()
        .find(|routine| routine.name == name)
        .map_or(std::ptr::null_mut(), |routine| routine.address.cast_mut())
}

/// The routine name `MmGetSystemRoutineAddress` was asked for, in either convention: `None`
/// for a null string, a null buffer, an odd `Length`, a `Length` above `MaximumLength`, or
/// invalid UTF-16.
///
/// # Safety
/// `name` must be null or point to a `UNICODE_STRING` whose buffer holds `Length` bytes.
pub(crate) unsafe fn routine_name(name: ddi::PUNICODE_STRING) -> Option<String> {
    // SAFETY: caller contract: null or a valid UNICODE_STRING.
    let name = unsafe { name.as_ref() }?;
    if name.Buffer.is_null() || name.Length % 2 != 0 || name.Length > name.MaximumLength {
        return None;
    }
    // SAFETY: caller contract: `Buffer` holds `Length` bytes of UTF-16.
    let units = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    String::from_utf16(units).ok()
}

/// `PVOID MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName)`: the address of a
/// routine this host exports, or null (unknown name, hidden export, malformed string: a null
/// string or buffer, an odd `Length`, a `Length` above `MaximumLength`, invalid UTF-16).
///
/// # Safety
/// `name` must be null or point to a `UNICODE_STRING` whose buffer holds `Length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmGetSystemRoutineAddress(name: ddi::PUNICODE_STRING) -> *mut c_void {
    crate::kernel::irql::require(crate::kernel::irql::PASSIVE, "MmGetSystemRoutineAddress");
    // SAFETY: forwarded caller contract.
    unsafe { routine_name(name) }.map_or(std::ptr::null_mut(), |name| lookup(&name))
}

// The export has exactly the type of its prototype ([`crate::ddi`]).
const _: ddi::PFN_MmGetSystemRoutineAddress = MmGetSystemRoutineAddress;

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(name: &str) -> *mut c_void {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        let bytes = u16::try_from(units.len() * 2).unwrap();
        let mut string = ddi::UNICODE_STRING {
            Length: bytes,
            MaximumLength: bytes,
            Buffer: units.as_mut_ptr(),
        };
        // SAFETY: `string` describes `units`, alive for the call.
        unsafe { MmGetSystemRoutineAddress(&raw mut string) }
    }

    #[test]
    fn unknown_and_malformed_names_resolve_to_null() {
        assert!(ask("NoSuchRoutine").is_null());
        // SAFETY: null is allowed.
        assert!(unsafe { MmGetSystemRoutineAddress(std::ptr::null_mut()) }.is_null());
        let mut odd = ddi::UNICODE_STRING {
            Length: 3,
            MaximumLength: 4,
            Buffer: [0u16; 2].as_mut_ptr(),
        };
        // SAFETY: the buffer holds 4 bytes; the odd length is rejected before reading.
        assert!(unsafe { MmGetSystemRoutineAddress(&raw mut odd) }.is_null());
        let mut units: Vec<u16> = "ZwClose".encode_utf16().collect();
        let mut overlong = ddi::UNICODE_STRING {
            Length: 14,
            MaximumLength: 12,
            Buffer: units.as_mut_ptr(),
        };
        // SAFETY: the buffer holds 14 bytes; `Length` > `MaximumLength` is rejected.
        assert!(unsafe { MmGetSystemRoutineAddress(&raw mut overlong) }.is_null());
        overlong.MaximumLength = 14;
        // SAFETY: as above, now well-formed.
        assert!(!unsafe { MmGetSystemRoutineAddress(&raw mut overlong) }.is_null());
    }

    #[test]
    fn every_routine_of_the_ddi_is_exported_and_can_be_hidden() {
        let names: Vec<&str> = ddi::names::DRIVER_PROXY
            .iter()
            .chain(&ddi::names::KERNEL)
            .copied()
            .collect();
        let mut addresses: Vec<usize> = names.iter().map(|n| ask(n) as usize).collect();
        assert!(addresses.iter().all(|&a| a != 0), "{names:?}");
        assert_eq!(
            addresses[0],
            proxy::IoGetDriverProxyFeatures as *const () as usize
        );
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), names.len(), "distinct routines");
        assert_eq!(
            ROUTINES.len(),
            names.len() + 1,
            "and nothing else but MmGetSystemRoutineAddress"
        );
        assert_eq!(
            ask(ddi::names::MM_GET_SYSTEM_ROUTINE_ADDRESS) as usize,
            MmGetSystemRoutineAddress as *const () as usize
        );
        // The only test of this binary that hides anything, and nothing else here asks for it.
        hide_export("IoGetDriverProxyEndpointWrapper");
        assert!(ask("IoGetDriverProxyEndpointWrapper").is_null());
        assert!(!ask("IoGetDriverProxyFeatures").is_null());
    }
}
