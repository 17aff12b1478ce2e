//! `DbgPrint`: the image's `printf`-style debug output, captured into a per-process log.
//!
//! # Contract
//!
//! `ULONG DbgPrint(PCSTR Format, ...)` (a C variadic, Microsoft x64): formats the message and
//! returns `STATUS_SUCCESS`. On Windows the message goes to the kernel debugger; here it is
//! appended to a process-wide log that tests read ([`dbg_print_log`]) and clear
//! ([`take_dbg_print_log`], [`clear_dbg_print_log`]), and echoed to stderr when the
//! environment variable `HOST_KERNEL_DBGPRINT` is `1`. As on Windows, a message is cut to 512
//! bytes.
//!
//! # Varargs
//!
//! The entry point is a naked trampoline: it spills `rcx`, `rdx`, `r8`, `r9` into the home
//! area the caller reserved above its return address (what `va_start` does in Microsoft x64),
//! which turns all the arguments into one array of 8-byte slots following `Format`, and calls
//! the formatter with a pointer to the first slot after `Format`. Floating-point variadic
//! arguments are also passed in the integer registers in Microsoft x64, so the array holds
//! every argument. The formatter reads only as many slots as the format asks for.
//!
//! # Conversions (LLP64)
//!
//! `%[flags][width][.precision][size]type`, flags `-` `0` `+` space `#`, width and precision
//! as digits or `*` (an `int` argument).
//!
//! * 32-bit (the upper half of the slot is ignored: `0xFFFFFFFF_00000007` prints `7`): `%d`
//!   `%i` `%u` `%x` `%X` `%o`, with no size or `l`; `%hd`… read 16 bits, `%hhd`… 8 bits.
//! * 64-bit: `ll`, `I64`, `I` (pointer-sized), `z` (`size_t`); `%p` prints 16 uppercase hex
//!   digits without prefix, as the Windows kernel does.
//! * `%c` (a byte), `%C` / `%wc` / `%lc` (a UTF-16 unit); `%s` / `%hs` (NUL-terminated ANSI,
//!   bytes above 0x7F printed as Latin-1), `%S` / `%ws` / `%ls` (NUL-terminated UTF-16);
//!   `%Z` (`ANSI_STRING*`), `%wZ` (`UNICODE_STRING*`); a null string prints `(null)`.
//! * `%%`. An unknown conversion is printed as written (the Windows CRT's behaviour differs
//!   between versions; the model keeps the text visible).
//!
//! Not modelled: `%f`/`%e`/`%g` (kernel code rarely prints floating point; printed as
//! written), `%n` (never supported in the kernel), the IRQL rule for the Unicode conversions
//! (they are accepted at any IRQL here), component filtering (`DbgPrintEx` levels).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::ddi;

use crate::kernel::lock;

/// The longest message `DbgPrint` emits, in bytes (longer ones are cut, as on Windows).
pub const MAX_MESSAGE: usize = 512;

/// Every message, with its sequence number and the driver the printing thread ran for (0 for
/// none).
static LOG: Mutex<Vec<(u64, usize, String)>> = Mutex::new(Vec::new());
/// The sequence number of the next message (never reset, so that clearing the log does not
/// confuse [`log_of`]).
static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The sequence number the next message will get.
pub(crate) fn next_sequence() -> u64 {
    SEQUENCE.load(Ordering::SeqCst)
}

/// The messages printed so far in this process, in order (not cleared).
#[must_use]
pub fn dbg_print_log() -> Vec<String> {
    lock(&LOG).iter().map(|(_, _, text)| text.clone()).collect()
}

/// The messages printed so far in this process; the log is cleared.
#[must_use]
pub fn take_dbg_print_log() -> Vec<String> {
    std::mem::take(&mut *lock(&LOG))
        .into_iter()
        .map(|(_, _, text)| text)
        .collect()
}

/// The messages with a sequence number from `since` on, printed by threads running for the
/// driver object `driver` (its `DriverEntry`, dispatch routines, `DriverUnload`, work items
/// and system threads), in order.
pub(crate) fn log_of(driver: usize, since: u64) -> Vec<String> {
    lock(&LOG)
        .iter()
        .filter(|(sequence, owner, _)| *owner == driver && *sequence >= since)
        .map(|(_, _, text)| text.clone())
        .collect()
}

/// Clears the log.
pub fn clear_dbg_print_log() {
    lock(&LOG).clear();
}

/// 0 = not looked up, 1 = no echo, 2 = echo to stderr.
static ECHO: AtomicU8 = AtomicU8::new(0);

fn echo() -> bool {
    match ECHO.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("HOST_KERNEL_DBGPRINT").is_ok_and(|v| v == "1");
            ECHO.store(if on { 2 } else { 1 }, Ordering::Relaxed);
            on
        }
        value => value == 2,
    }
}

/// Records one message: cut to [`MAX_MESSAGE`] bytes, logged, echoed if asked.
pub(crate) fn emit(mut message: Vec<u8>) {
    message.truncate(MAX_MESSAGE);
    let text = String::from_utf8_lossy(&message).into_owned();
    if echo() {
        eprint!("{text}");
    }
    let mut log = lock(&LOG);
    let sequence = SEQUENCE.fetch_add(1, Ordering::SeqCst);
    log.push((sequence, crate::kernel::context::current(), text));
}

/// `DbgPrint`, the Microsoft x64 variadic entry point (module docs).
///
/// # Safety
/// Called by Microsoft x64 code as `ULONG DbgPrint(PCSTR Format, ...)`: `Format` null or a
/// NUL-terminated string whose conversions match the arguments that follow.
#[unsafe(naked)]
pub unsafe extern "win64" fn DbgPrint() {
    core::arch::naked_asm!(
        // Spill the register arguments into the caller's home area: [rsp+8] is Format, the
        // variadic arguments follow at [rsp+16], [rsp+24], … (then the caller's stack
        // arguments, contiguous).
        "mov [rsp + 8], rcx",
        "mov [rsp + 16], rdx",
        "mov [rsp + 24], r8",
        "mov [rsp + 32], r9",
        // 32 bytes of home area for the callee and 8 to realign (rsp was 8 mod 16).
        "sub rsp, 40",
        // rcx is still Format; rdx = &args[0] = the old [rsp+16].
        "lea rdx, [rsp + 56]",
        "call {format}",
        "add rsp, 40",
        "ret",
        format = sym dbg_print_varargs,
    );
}

/// The formatter behind the trampoline.
///
/// # Safety
/// `format` null or NUL-terminated; `args` the caller's argument slots, as many readable as
/// the conversions of `format` take.
unsafe extern "win64" fn dbg_print_varargs(format: *const u8, args: *const u64) -> ddi::ULONG {
    let mut slots = Slots { next: args };
    // SAFETY: forwarded caller contract.
    let message = unsafe { format_message(format, &mut slots) };
    emit(message);
    0 // STATUS_SUCCESS
}

/// A source of 8-byte argument slots.
pub trait ArgSource {
    /// The next slot.
    ///
    /// # Safety
    /// The caller of the formatter guarantees that the slot exists.
    unsafe fn next(&mut self) -> u64;
}

/// Slots in memory (the spilled home area and the caller's stack arguments).
struct Slots {
    next: *const u64,
}

impl ArgSource for Slots {
    unsafe fn next(&mut self) -> u64 {
        // SAFETY: caller contract: the slot exists.
        let value = unsafe { self.next.read_unaligned() };
        // SAFETY: one past the slot just read, inside or one past the argument area.
        self.next = unsafe { self.next.add(1) };
        value
    }
}

/// Slots from a slice (for formatting from Rust).
impl ArgSource for core::slice::Iter<'_, u64> {
    unsafe fn next(&mut self) -> u64 {
        Iterator::next(self).copied().unwrap_or(0)
    }
}

#[derive(Default)]
#[allow(clippy::struct_excessive_bools)] // the printf flags
struct Spec {
    left: bool,
    zero: bool,
    plus: bool,
    space: bool,
    alternate: bool,
    width: usize,
    precision: Option<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Size {
    Default,
    Byte,
    Short,
    Long,
    Wide64,
}

/// Formats `format` with the LLP64 rules of the module docs, taking arguments from `args`.
///
/// # Safety
/// `format` null or NUL-terminated; `args` yields as many slots as the conversions take, and
/// every string or `*STRING` argument is null or valid as its conversion requires.
pub unsafe fn format_message(format: *const u8, args: &mut dyn ArgSource) -> Vec<u8> {
    if format.is_null() {
        return b"(null)".to_vec();
    }
    // SAFETY: caller contract: NUL-terminated.
    let format = unsafe { core::ffi::CStr::from_ptr(format.cast()) }.to_bytes();
    let mut out = Vec::with_capacity(format.len() + 16);
    let mut i = 0;
    while i < format.len() {
        let byte = format[i];
        i += 1;
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let start = i - 1;
        let mut spec = Spec::default();
        while let Some(&flag) = format.get(i) {
            match flag {
                b'-' => spec.left = true,
                b'0' => spec.zero = true,
                b'+' => spec.plus = true,
                b' ' => spec.space = true,
                b'#' => spec.alternate = true,
                _ => break,
            }
            i += 1;
        }
        if format.get(i) == Some(&b'*') {
            i += 1;
            #[allow(clippy::cast_possible_truncation)] // an int: the low 32 bits
            // SAFETY: caller contract: `*` takes an int argument.
            let width = (unsafe { args.next() } as u32).cast_signed();
            if width < 0 {
                spec.left = true;
            }
            spec.width = width.unsigned_abs() as usize;
        } else {
            while let Some(digit) = format.get(i).filter(|b| b.is_ascii_digit()) {
                spec.width = spec.width * 10 + usize::from(digit - b'0');
                i += 1;
            }
        }
        if format.get(i) == Some(&b'.') {
            i += 1;
            if format.get(i) == Some(&b'*') {
                i += 1;
                #[allow(clippy::cast_possible_truncation)] // an int: the low 32 bits
                // SAFETY: caller contract: `.*` takes an int argument.
                let precision = (unsafe { args.next() } as u32).cast_signed();
                spec.precision = usize::try_from(precision).ok();
            } else {
                let mut precision = 0;
                while let Some(digit) = format.get(i).filter(|b| b.is_ascii_digit()) {
                    precision = precision * 10 + usize::from(digit - b'0');
                    i += 1;
                }
                spec.precision = Some(precision);
            }
        }
        let rest = &format[i..];
        let (size, wide_flag, taken) = if rest.starts_with(b"I64") {
            (Size::Wide64, false, 3)
        } else if rest.starts_with(b"I32") {
            (Size::Long, false, 3)
        } else if rest.starts_with(b"ll") {
            (Size::Wide64, false, 2)
        } else if rest.starts_with(b"hh") {
            (Size::Byte, false, 2)
        } else {
            match rest.first() {
                Some(b'I' | b'z' | b'j' | b't') => (Size::Wide64, false, 1),
                Some(b'l') => (Size::Long, true, 1),
                Some(b'w') => (Size::Default, true, 1),
                Some(b'h') => (Size::Short, false, 1),
                _ => (Size::Default, false, 0),
            }
        };
        i += taken;
        let Some(&conversion) = format.get(i) else {
            out.extend_from_slice(&format[start..]);
            break;
        };
        i += 1;
        // SAFETY: forwarded caller contract.
        let handled = unsafe { convert(&mut out, conversion, size, wide_flag, &spec, args) };
        if !handled {
            out.extend_from_slice(&format[start..i]);
        }
    }
    out
}

/// One conversion; false if it is not one this formatter knows (printed as written).
///
/// # Safety
/// As [`format_message`].
#[allow(clippy::cast_possible_truncation)] // 64-bit host: a slot is a pointer
unsafe fn convert(
    out: &mut Vec<u8>,
    conversion: u8,
    size: Size,
    wide_flag: bool,
    spec: &Spec,
    args: &mut dyn ArgSource,
) -> bool {
    match conversion {
        b'%' => out.push(b'%'),
        b'd' | b'i' => {
            // SAFETY: caller contract: an integer argument.
            let raw = unsafe { args.next() };
            #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
            let value: i64 = match size {
                Size::Wide64 => raw as i64,
                Size::Long | Size::Default => i64::from(raw as u32 as i32),
                Size::Short => i64::from(raw as u16 as i16),
                Size::Byte => i64::from(raw as u8 as i8),
            };
            let sign = if value < 0 {
                "-"
            } else if spec.plus {
                "+"
            } else if spec.space {
                " "
            } else {
                ""
            };
            pad_number(out, sign, &value.unsigned_abs().to_string(), spec);
        }
        b'u' | b'x' | b'X' | b'o' => {
            // SAFETY: caller contract: an integer argument.
            let raw = unsafe { args.next() };
            let value = match size {
                Size::Wide64 => raw,
                Size::Long | Size::Default => raw & 0xFFFF_FFFF,
                Size::Short => raw & 0xFFFF,
                Size::Byte => raw & 0xFF,
            };
            let (digits, prefix) = match conversion {
                b'u' => (value.to_string(), ""),
                b'x' => (format!("{value:x}"), "0x"),
                b'X' => (format!("{value:X}"), "0X"),
                _ => (format!("{value:o}"), "0"),
            };
            let prefix = if spec.alternate && value != 0 {
                prefix
            } else {
                ""
            };
            pad_number(out, prefix, &digits, spec);
        }
        b'p' => {
            // SAFETY: caller contract: a pointer argument.
            let value = unsafe { args.next() };
            pad(out, format!("{value:016X}").as_bytes(), spec);
        }
        b'c' | b'C' => {
            // SAFETY: caller contract: a character argument.
            let raw = unsafe { args.next() };
            let wide = conversion == b'C' || wide_flag;
            #[allow(clippy::cast_possible_truncation)]
            let text = if wide {
                String::from_utf16_lossy(&[raw as u16]).into_bytes()
            } else {
                vec![raw as u8]
            };
            pad(out, &text, spec);
        }
        b's' | b'S' => {
            // SAFETY: caller contract: a string argument.
            let pointer = unsafe { args.next() } as usize;
            // `%s` is narrow unless `l`/`w`; `%S` is wide unless `h`.
            let wide = if conversion == b's' {
                wide_flag
            } else {
                size != Size::Short
            };
            // SAFETY: caller contract: null or a NUL-terminated string of that width.
            let text = unsafe { read_c_string(pointer, wide, spec.precision) };
            pad(out, &text, spec);
        }
        b'Z' => {
            // SAFETY: caller contract: a counted-string pointer.
            let pointer = unsafe { args.next() } as usize;
            // SAFETY: caller contract: null or a valid ANSI_STRING / UNICODE_STRING.
            let text = unsafe { read_counted_string(pointer, wide_flag) };
            pad(out, &text, spec);
        }
        _ => return false,
    }
    true
}

fn pad(out: &mut Vec<u8>, text: &[u8], spec: &Spec) {
    let fill = spec.width.saturating_sub(text.len());
    if !spec.left {
        out.extend(std::iter::repeat_n(b' ', fill));
    }
    out.extend_from_slice(text);
    if spec.left {
        out.extend(std::iter::repeat_n(b' ', fill));
    }
}

fn pad_number(out: &mut Vec<u8>, prefix: &str, digits: &str, spec: &Spec) {
    let mut digits = digits.to_owned();
    if let Some(precision) = spec.precision {
        if precision == 0 && digits == "0" {
            digits.clear();
        }
        while digits.len() < precision {
            digits.insert(0, '0');
        }
    }
    let len = prefix.len() + digits.len();
    let fill = spec.width.saturating_sub(len);
    if spec.left {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(digits.as_bytes());
        out.extend(std::iter::repeat_n(b' ', fill));
    } else if spec.zero && spec.precision.is_none() {
        out.extend_from_slice(prefix.as_bytes());
        out.extend(std::iter::repeat_n(b'0', fill));
        out.extend_from_slice(digits.as_bytes());
    } else {
        out.extend(std::iter::repeat_n(b' ', fill));
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(digits.as_bytes());
    }
}

/// Latin-1 bytes to UTF-8.
fn latin1(bytes: &[u8]) -> Vec<u8> {
    bytes
        .iter()
        .map(|&b| char::from(b))
        .collect::<String>()
        .into_bytes()
}

/// A NUL-terminated string, at most `limit` characters.
///
/// # Safety
/// `pointer` 0 or a NUL-terminated string of bytes (`wide`: UTF-16 units) readable up to its
/// NUL or `limit` characters.
unsafe fn read_c_string(pointer: usize, wide: bool, limit: Option<usize>) -> Vec<u8> {
    if pointer == 0 {
        return b"(null)".to_vec();
    }
    let limit = limit.unwrap_or(usize::MAX);
    if wide {
        let mut units = Vec::new();
        let base = pointer as *const u16;
        while units.len() < limit {
            // SAFETY: caller contract: readable up to the NUL.
            let unit = unsafe { base.add(units.len()).read_unaligned() };
            if unit == 0 {
                break;
            }
            units.push(unit);
        }
        String::from_utf16_lossy(&units).into_bytes()
    } else {
        let mut bytes = Vec::new();
        let base = pointer as *const u8;
        while bytes.len() < limit {
            // SAFETY: caller contract: readable up to the NUL.
            let byte = unsafe { base.add(bytes.len()).read() };
            if byte == 0 {
                break;
            }
            bytes.push(byte);
        }
        latin1(&bytes)
    }
}

/// An `ANSI_STRING` (or `UNICODE_STRING` when `wide`): `Length` bytes of `Buffer`.
///
/// # Safety
/// `pointer` 0 or a counted string whose buffer holds `Length` bytes.
unsafe fn read_counted_string(pointer: usize, wide: bool) -> Vec<u8> {
    if pointer == 0 {
        return b"(null)".to_vec();
    }
    // SAFETY: caller contract. ANSI_STRING and UNICODE_STRING have the same layout.
    let string = unsafe { &*(pointer as *const ddi::UNICODE_STRING) };
    if string.Buffer.is_null() {
        return b"(null)".to_vec();
    }
    let length = usize::from(string.Length);
    if wide {
        // SAFETY: caller contract: `Length` bytes.
        let units = unsafe { std::slice::from_raw_parts(string.Buffer, length / 2) };
        String::from_utf16_lossy(units).into_bytes()
    } else {
        // SAFETY: caller contract: `Length` bytes.
        latin1(unsafe { std::slice::from_raw_parts(string.Buffer.cast::<u8>(), length) })
    }
}

/// Formats like `DbgPrint` from Rust, with the arguments as 8-byte slots (for tests and
/// tools).
///
/// # Safety
/// As [`format_message`]: every pointer slot a string conversion takes must be valid.
#[must_use]
pub unsafe fn format_slots(format: &core::ffi::CStr, args: &[u64]) -> String {
    // SAFETY: forwarded caller contract.
    let bytes = unsafe { format_message(format.as_ptr().cast(), &mut args.iter()) };
    String::from_utf8_lossy(&bytes).into_owned()
}
