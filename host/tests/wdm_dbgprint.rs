//! `DbgPrint` through its Microsoft x64 entry point: varargs in registers and on the stack,
//! LLP64 conversions, the log, and register preservation.

mod wdm_common;

use driver_proxy_host::ddi;
use driver_proxy_host::wdm::dbgprint::{MAX_MESSAGE, format_slots};
use driver_proxy_host::wdm::{dbg_print_log, win64_routine};

use wdm_common::{call_with_canaries, nt, sysv_clobberer};

/// Prints through the win64 entry point and returns the message it logged (found by the
/// unique `marker` the format starts with).
fn print(format: &std::ffi::CStr, args: [u64; 7]) -> String {
    let marker = format
        .to_str()
        .unwrap()
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    // SAFETY: the formats below match their arguments.
    let status = unsafe {
        (nt().DbgPrint)(
            format.as_ptr().cast(),
            args[0],
            args[1],
            args[2],
            args[3],
            args[4],
            args[5],
            args[6],
        )
    };
    assert_eq!(status, 0, "STATUS_SUCCESS");
    dbg_print_log()
        .into_iter()
        .rev()
        .find(|m| m.starts_with(&marker))
        .unwrap_or_else(|| panic!("{marker} not logged"))
}

#[test]
fn int_conversions_are_32_bit_and_ignore_the_upper_half_of_the_slot() {
    let garbage = 0xFFFF_FFFF_0000_0000;
    assert_eq!(
        print(
            c"t1: %d %i %u %x %X %ld %lu",
            [
                garbage | 0x7,
                garbage | 0xFFFF_FFF9,
                garbage | 0x2A,
                garbage | 0xAB,
                garbage | 0xCD,
                garbage | 0xFFFF_FFFF,
                garbage | 5
            ]
        ),
        "t1: 7 -7 42 ab CD -1 5"
    );
    assert_eq!(
        print(
            c"t1b: %lx %hd %hhu",
            [garbage | 0x1234, 0xFFFF_8000, 0x1FF, 0, 0, 0, 0]
        ),
        "t1b: 1234 -32768 255"
    );
}

#[test]
fn wide_conversions_are_64_bit() {
    let big = 0x1234_5678_9ABC_DEF0_u64;
    let minus_two = (-2_i64).cast_unsigned();
    assert_eq!(
        print(
            c"t2: %I64x %llx %lld %I64d %p %zu %Iu",
            [
                big,
                big,
                minus_two,
                minus_two,
                0xFFFF_B00C_0000_1230,
                1 << 40,
                1 << 33
            ]
        ),
        "t2: 123456789abcdef0 123456789abcdef0 -2 -2 FFFFB00C00001230 1099511627776 8589934592"
    );
}

#[test]
fn strings_characters_and_counted_strings() {
    let wide: Vec<u16> = "wide\u{e9}".encode_utf16().chain([0]).collect();
    let mut units: Vec<u16> = "Counted\\Name".encode_utf16().collect();
    let counted = ddi::UNICODE_STRING {
        Length: u16::try_from(units.len() * 2).unwrap(),
        MaximumLength: u16::try_from(units.len() * 2).unwrap(),
        Buffer: units.as_mut_ptr(),
    };
    let ansi = b"ansi-counted-NOT";
    let ansi_string = ddi::UNICODE_STRING {
        Length: 12,
        MaximumLength: 16,
        Buffer: ansi.as_ptr().cast_mut().cast(),
    };
    assert_eq!(
        print(
            c"t3: %s|%S|%wZ|%Z|%c|%%|%s|%ws",
            [
                c"narrow".as_ptr() as u64,
                wide.as_ptr() as u64,
                (&raw const counted) as u64,
                (&raw const ansi_string) as u64,
                u64::from(b'Q') | 0xFF00,
                0,
                wide.as_ptr() as u64,
            ]
        ),
        "t3: narrow|wide\u{e9}|Counted\\Name|ansi-counted|Q|%|(null)|wide\u{e9}"
    );
}

#[test]
fn width_precision_and_flags() {
    assert_eq!(
        print(
            c"t4: [%5d][%-5d][%05d][%08X][%.3s][%*d]",
            [
                42,
                42,
                0xFFFF_FFFF_FFFF_FFF9,
                0xBEEF,
                c"abcdef".as_ptr() as u64,
                6,
                7
            ]
        ),
        "t4: [   42][42   ][-0007][0000BEEF][abc][     7]"
    );
    assert_eq!(
        print(
            c"t4b: [%#x][%-8s][%3c][%+d][% d][%.4u]",
            [255, c"ab".as_ptr() as u64, u64::from(b'z'), 7, 8, 9, 0]
        ),
        "t4b: [0xff][ab      ][  z][+7][ 8][0009]"
    );
}

#[test]
fn arguments_beyond_the_fourth_come_from_the_stack() {
    // Format in rcx, three arguments in rdx/r8/r9, four on the stack.
    assert_eq!(
        print(c"t5: %u %u %u %u %u %u %u", [1, 2, 3, 4, 5, 6, 7]),
        "t5: 1 2 3 4 5 6 7"
    );
}

#[test]
fn messages_are_cut_to_512_bytes() {
    let long = "x".repeat(1000);
    let format = std::ffi::CString::new(format!("t6: {long}")).unwrap();
    assert_eq!(print(&format, [0; 7]).len(), MAX_MESSAGE);
}

#[test]
fn unknown_conversions_are_printed_as_written() {
    // SAFETY: no argument is taken by the unknown conversions.
    let text = unsafe { format_slots(c"%f %q end %", &[]) };
    assert_eq!(text, "%f %q end %");
}

#[test]
fn dbg_print_preserves_the_win64_callee_saved_registers() {
    let format = c"t7: canary %u";
    let target = win64_routine("ntoskrnl.exe", "DbgPrint").unwrap();
    // SAFETY: DbgPrint with a format and one %u argument.
    let (status, clobbered) =
        unsafe { call_with_canaries(target, [format.as_ptr() as u64, 99, 0, 0]) };
    assert_eq!(status & 0xFFFF_FFFF, 0);
    assert!(clobbered.is_empty(), "DbgPrint clobbered {clobbered:?}");
    assert!(dbg_print_log().iter().any(|m| m == "t7: canary 99"));
}

#[test]
fn the_canary_harness_catches_a_sysv_function() {
    // SAFETY: the control takes no arguments and returns 0.
    let (_, clobbered) =
        unsafe { call_with_canaries(sysv_clobberer as *const () as usize, [0; 4]) };
    assert_eq!(clobbered, ["rdi", "rsi", "xmm6", "xmm15"]);
}
