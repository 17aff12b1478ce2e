//! Shared helpers of the `wdm_*` tests: the model kernel's Microsoft x64 entry points as
//! typed function pointers (found the way a loader finds them), a register-canary harness,
//! and counted strings. Child processes: `common`.

#![allow(
    dead_code,
    unreachable_pub,
    non_snake_case,
    clippy::missing_panics_doc,
    clippy::must_use_candidate,
    clippy::similar_names,
    clippy::unnecessary_box_returns
)]

use std::sync::OnceLock;

use driver_proxy_host::ddi;
use driver_proxy_host::wdm::types::{DEVICE_OBJECT, DRIVER_OBJECT, IRP};
use driver_proxy_host::wdm::win64_routine;

/// A device-control code of the test drivers: device type 0x8000 (the range for vendors),
/// any access, function `function`, transfer type `method` (`METHOD_*`).
pub const fn ctl(function: u32, method: u32) -> u32 {
    (0x8000 << 16) | (function << 2) | method
}

/// The Microsoft x64 entry points the test drivers call.
pub struct Nt {
    pub IoCreateDevice: unsafe extern "win64" fn(
        *mut DRIVER_OBJECT,
        u32,
        *mut ddi::UNICODE_STRING,
        u32,
        u32,
        u8,
        *mut *mut DEVICE_OBJECT,
    ) -> ddi::NTSTATUS,
    pub IoDeleteDevice: unsafe extern "win64" fn(*mut DEVICE_OBJECT),
    pub IoCreateSymbolicLink: unsafe extern "win64" fn(
        *mut ddi::UNICODE_STRING,
        *mut ddi::UNICODE_STRING,
    ) -> ddi::NTSTATUS,
    pub IoDeleteSymbolicLink: unsafe extern "win64" fn(*mut ddi::UNICODE_STRING) -> ddi::NTSTATUS,
    pub IofCompleteRequest: unsafe extern "win64" fn(*mut IRP, i8),
    pub MmGetSystemRoutineAddress:
        unsafe extern "win64" fn(*mut ddi::UNICODE_STRING) -> *mut core::ffi::c_void,
    pub ZwClose: unsafe extern "win64" fn(ddi::HANDLE) -> ddi::NTSTATUS,
    pub ZwWaitForSingleObject:
        unsafe extern "win64" fn(ddi::HANDLE, u8, *mut ddi::LARGE_INTEGER) -> ddi::NTSTATUS,
    pub ExAllocatePool2: unsafe extern "win64" fn(u64, usize, u32) -> ddi::PVOID,
    pub ExFreePoolWithTag: unsafe extern "win64" fn(ddi::PVOID, u32),
    /// `DbgPrint` called with a format and seven 8-byte arguments (Microsoft x64 passes
    /// variadic integer arguments exactly like fixed ones).
    pub DbgPrint: unsafe extern "win64" fn(*const u8, u64, u64, u64, u64, u64, u64, u64) -> u32,
}

fn routine<F: Copy>(name: &str) -> F {
    assert_eq!(size_of::<F>(), size_of::<usize>());
    let address = win64_routine("ntoskrnl.exe", name).unwrap_or_else(|| panic!("{name}"));
    // SAFETY: F is the function-pointer type of the routine (each field above).
    unsafe { core::mem::transmute_copy::<usize, F>(&address) }
}

/// The entry points, resolved once.
pub fn nt() -> &'static Nt {
    static NT: OnceLock<Nt> = OnceLock::new();
    NT.get_or_init(|| Nt {
        IoCreateDevice: routine("IoCreateDevice"),
        IoDeleteDevice: routine("IoDeleteDevice"),
        IoCreateSymbolicLink: routine("IoCreateSymbolicLink"),
        IoDeleteSymbolicLink: routine("IoDeleteSymbolicLink"),
        IofCompleteRequest: routine("IofCompleteRequest"),
        MmGetSystemRoutineAddress: routine("MmGetSystemRoutineAddress"),
        ZwClose: routine("ZwClose"),
        ZwWaitForSingleObject: routine("ZwWaitForSingleObject"),
        ExAllocatePool2: routine("ExAllocatePool2"),
        ExFreePoolWithTag: routine("ExFreePoolWithTag"),
        DbgPrint: routine("DbgPrint"),
    })
}

/// A routine found through the Microsoft x64 `MmGetSystemRoutineAddress`, as an image's
/// library finds it.
///
/// # Safety
/// `F` must be the routine's Microsoft x64 function-pointer type.
pub unsafe fn resolve<F: Copy>(name: &str) -> F {
    let mut string = UString::new(name);
    // SAFETY: a valid counted string.
    let address = unsafe { (nt().MmGetSystemRoutineAddress)(string.as_ptr()) };
    assert!(!address.is_null(), "{name} not found");
    // SAFETY: caller contract.
    unsafe { core::mem::transmute_copy::<*mut core::ffi::c_void, F>(&address) }
}

/// A counted UTF-16 string with its buffer.
pub struct UString {
    string: ddi::UNICODE_STRING,
    _units: Box<[u16]>,
}

impl UString {
    pub fn new(text: &str) -> Box<Self> {
        let mut units: Box<[u16]> = text.encode_utf16().collect();
        let bytes = u16::try_from(units.len() * 2).unwrap();
        Box::new(Self {
            string: ddi::UNICODE_STRING {
                Length: bytes,
                MaximumLength: bytes,
                Buffer: units.as_mut_ptr(),
            },
            _units: units,
        })
    }

    pub fn as_ptr(&mut self) -> *mut ddi::UNICODE_STRING {
        &raw mut self.string
    }
}

/// Registers a Microsoft x64 callee must preserve, checked by [`call_with_canaries`].
pub const CANARY_REGISTERS: [&str; 12] = [
    "rdi", "rsi", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
    "xmm15",
];

/// Calls the Microsoft x64 function at `target` with four integer arguments, with canaries
/// in `rdi`, `rsi` and all 128 bits of `xmm6`–`xmm15`; returns its `rax` and the names of the
/// registers it did not preserve.
///
/// # Safety
/// `target` must be callable with the Microsoft x64 convention and these four arguments.
#[allow(clippy::too_many_lines)]
pub unsafe fn call_with_canaries(target: usize, args: [u64; 4]) -> (u64, Vec<&'static str>) {
    use core::arch::x86_64::{__m128i, _mm_set_epi64x, _mm_storeu_si128};
    let canary = |i: i64| -> __m128i {
        // SAFETY: SSE2 is part of x86-64.
        unsafe { _mm_set_epi64x(0x5A5A_0000_0000_0000 | i, 0x0123_4567_89AB_0000 | (i << 4)) }
    };
    let expected: Vec<__m128i> = (6..16).map(canary).collect();
    let (rdi_in, rsi_in) = (0xD1D1_D1D1_0000_0001_u64, 0x5151_5151_0000_0002_u64);
    let (mut x6, mut x7, mut x8, mut x9, mut x10) = (
        expected[0],
        expected[1],
        expected[2],
        expected[3],
        expected[4],
    );
    let (mut x11, mut x12, mut x13, mut x14, mut x15) = (
        expected[5],
        expected[6],
        expected[7],
        expected[8],
        expected[9],
    );
    let rdi_out: u64;
    let rsi_out: u64;
    let rax: u64;
    // SAFETY: caller contract; the stack is realigned to 16 with a 32-byte home area and
    // restored from r12; every register the callee may clobber is declared.
    unsafe {
        core::arch::asm!(
            "mov r12, rsp",
            "and rsp, -16",
            "sub rsp, 32",
            "call {target}",
            "mov rsp, r12",
            target = in(reg) target,
            inout("rcx") args[0] => _,
            inout("rdx") args[1] => _,
            inout("r8") args[2] => _,
            inout("r9") args[3] => _,
            inout("rdi") rdi_in => rdi_out,
            inout("rsi") rsi_in => rsi_out,
            out("rax") rax,
            out("r10") _, out("r11") _, out("r12") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            inout("xmm6") x6, inout("xmm7") x7, inout("xmm8") x8, inout("xmm9") x9,
            inout("xmm10") x10, inout("xmm11") x11, inout("xmm12") x12, inout("xmm13") x13,
            inout("xmm14") x14, inout("xmm15") x15,
        );
    }
    let bits = |x: __m128i| -> [u8; 16] {
        let mut out = [0u8; 16];
        // SAFETY: 16 writable bytes.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), x) };
        out
    };
    let mut clobbered = Vec::new();
    if rdi_out != rdi_in {
        clobbered.push("rdi");
    }
    if rsi_out != rsi_in {
        clobbered.push("rsi");
    }
    for (i, got) in [x6, x7, x8, x9, x10, x11, x12, x13, x14, x15]
        .into_iter()
        .enumerate()
    {
        if bits(got) != bits(expected[i]) {
            clobbered.push(CANARY_REGISTERS[i + 2]);
        }
    }
    (rax, clobbered)
}

/// The negative control of the harness: a `SysV` function that clobbers `rdi`, `rsi`, `xmm6`
/// and `xmm15` (which `SysV` allows).
#[unsafe(naked)]
pub extern "sysv64" fn sysv_clobberer() {
    core::arch::naked_asm!(
        "xor edi, edi",
        "xor esi, esi",
        "xorps xmm6, xmm6",
        "xorps xmm15, xmm15",
        "xor eax, eax",
        "ret"
    );
}

/// Completes `irp` with `status` and `information` (`IofCompleteRequest`, no boost): what
/// every test dispatch routine ends with.
///
/// # Safety
/// A live IRP the calling dispatch routine owns.
pub unsafe fn complete(irp: *mut IRP, status: ddi::NTSTATUS, information: usize) -> ddi::NTSTATUS {
    // SAFETY: caller contract.
    unsafe {
        (*irp).IoStatus.Status = status;
        (*irp).IoStatus.Information = information;
        (nt().IofCompleteRequest)(irp, 0);
    }
    status
}

/// The service name at the end of a test driver's registry path.
#[must_use]
pub fn name_of(registry_path: *mut ddi::UNICODE_STRING) -> String {
    // SAFETY: the I/O manager passes a valid registry path.
    let path = unsafe { driver_proxy_host::wdm::io::read_unicode(registry_path) }.unwrap();
    path.rsplit('\\').next().unwrap().to_owned()
}

/// `IoCreateDevice` of `\Device\<name>` with an extension of `extension_size` bytes: the
/// device, or the status.
///
/// # Safety
/// `driver` is the calling driver's own object, in its `DriverEntry`.
pub unsafe fn create_device(
    driver: *mut DRIVER_OBJECT,
    name: &str,
    extension_size: u32,
    device_type: u32,
    characteristics: u32,
    exclusive: bool,
) -> Result<*mut DEVICE_OBJECT, ddi::NTSTATUS> {
    let mut device_name = UString::new(&format!("\\Device\\{name}"));
    let mut device: *mut DEVICE_OBJECT = core::ptr::null_mut();
    // SAFETY: the driver's object (caller contract), a valid string and out-pointer.
    let status = unsafe {
        (nt().IoCreateDevice)(
            driver,
            extension_size,
            device_name.as_ptr(),
            device_type,
            characteristics,
            u8::from(exclusive),
            &raw mut device,
        )
    };
    if status == ddi::STATUS_SUCCESS {
        Ok(device)
    } else {
        Err(status)
    }
}

/// `IoDeleteDevice` of every device of `driver` (what the test drivers' unload routines do).
///
/// # Safety
/// `driver` is the calling driver's own object, with no request reaching its devices.
pub unsafe fn delete_devices(driver: *mut DRIVER_OBJECT) {
    // SAFETY: the driver's own devices (caller contract); the list shrinks as we go.
    unsafe {
        while !(*driver).DeviceObject.is_null() {
            (nt().IoDeleteDevice)((*driver).DeviceObject);
        }
    }
}
