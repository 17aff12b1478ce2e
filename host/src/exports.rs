//! The kernel routines the host exports by their C names, and `MmGetSystemRoutineAddress`,
//! through which the library finds them at run time.
//!
//! `driver-proxy` imports `MmGetSystemRoutineAddress` statically; on a host build the linker
//! resolves it to the function below. The routine table says which routines this model of
//! the kernel exports; a test can hide any of them ([`hide_export`]) to check the library's
//! behaviour on a kernel that lacks it. The DriverProxy routines themselves join the table
//! when the wrapper engine (`crate::engine`) is wired to them; until then this host models a
//! kernel older than Driver Hot-Swap, which exports none of them.

use std::collections::HashSet;
use std::ffi::c_void;
use std::sync::{Mutex, PoisonError};

use driver_proxy::sys;

/// A routine the host exports: its name and address.
struct ExportedRoutine {
    name: &'static str,
    address: *const c_void,
}

// SAFETY: the addresses are of functions, immutable and valid for the whole process.
unsafe impl Sync for ExportedRoutine {}

/// The routines this model of the kernel exports. Empty: no DriverProxy yet (see module docs).
static ROUTINES: &[ExportedRoutine] = &[];

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

fn is_hidden(name: &str) -> bool {
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

/// `PVOID MmGetSystemRoutineAddress(PUNICODE_STRING SystemRoutineName)`: the address of a
/// routine this host exports, or null (unknown name, hidden export, malformed string).
///
/// # Safety
/// `name` must be null or point to a `UNICODE_STRING` whose buffer holds `Length` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "system" fn MmGetSystemRoutineAddress(name: sys::PUNICODE_STRING) -> *mut c_void {
    // SAFETY: caller contract: null or a valid UNICODE_STRING.
    let Some(name) = (unsafe { name.as_ref() }) else {
        return std::ptr::null_mut();
    };
    if name.Buffer.is_null() || name.Length % 2 != 0 {
        return std::ptr::null_mut();
    }
    // SAFETY: caller contract: `Buffer` holds `Length` bytes of UTF-16.
    let units = unsafe { std::slice::from_raw_parts(name.Buffer, usize::from(name.Length) / 2) };
    String::from_utf16(units).map_or(std::ptr::null_mut(), |name| lookup(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(name: &str) -> *mut c_void {
        let mut units: Vec<u16> = name.encode_utf16().collect();
        let bytes = u16::try_from(units.len() * 2).unwrap();
        let mut string = sys::UNICODE_STRING {
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
        let mut odd = sys::UNICODE_STRING {
            Length: 3,
            MaximumLength: 4,
            Buffer: [0u16; 2].as_mut_ptr(),
        };
        // SAFETY: the buffer holds 4 bytes; the odd length is rejected before reading.
        assert!(unsafe { MmGetSystemRoutineAddress(&raw mut odd) }.is_null());
    }

    #[test]
    fn this_host_models_a_kernel_without_driver_proxy() {
        for name in [
            "IoGetDriverProxyFeatures",
            "IoCreateDriverProxyExtension",
            "IofGetDriverProxyWrapperFromEndpoint",
        ] {
            assert!(ask(name).is_null(), "{name}");
        }
    }
}
