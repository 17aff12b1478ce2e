//! Every signature class in both x86-64 conventions through a wrapper, and the registers each
//! convention requires preserved, checked with canaries by an assembly harness (with a
//! negative control showing the harness detects a clobber). The wrapper's slow paths
//! (first call on a thread, a call held by a stall, a call leaving during a stall) are
//! checked with the same harness.

// Exact float comparisons are the point (bits must pass through untouched); signatures with
// a dozen one-letter parameters are the clearest way to write 12-argument endpoints.
#![allow(
    clippy::float_cmp,
    clippy::cast_precision_loss,
    clippy::many_single_char_names,
    clippy::items_after_statements,
    clippy::similar_names,
    clippy::too_many_arguments
)]

#[macro_use]
mod engine_common;

use std::ffi::{c_char, c_int};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use driver_proxy_host::engine::{Engine, EngineConfig, WrapperId};
use engine_common::wrapper;

fn engine() -> Engine {
    Engine::new(EngineConfig::default()).expect("engine")
}

fn mix(args: &[u64]) -> u64 {
    args.iter()
        .enumerate()
        .fold(args.len() as u64, |acc, (i, a)| {
            acc.wrapping_mul(31).wrapping_add(a ^ (i as u64 + 1))
        })
}

fn value(i: usize) -> u64 {
    0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1) ^ 0x8000_0000_0000_0000
}

// ---- 0..=12 integer arguments, both conventions, typed calls and the harness ----

macro_rules! arity {
    ($test:ident, $abi:literal, $conv:expr; $($arg:ident),*) => {
        #[test]
        fn $test() {
            extern $abi fn ep($($arg: u64),*) -> u64 {
                mix(&[$($arg),*])
            }
            let e = engine();
            let id = e.add_endpoint(code!(ep)).unwrap();
            let mut values = (0..).map(value);
            $(let $arg = values.next().unwrap();)*
            let _ = &mut values;
            let expected = mix(&[$($arg),*]);
            // SAFETY: the wrapper forwards to `ep`, of this very type.
            let f: extern $abi fn($(arity!(@u64 $arg)),*) -> u64 = unsafe { wrapper(&e, id) };
            assert_eq!(f($($arg),*), expected);
            let args: Vec<Arg> = vec![$(Arg::I($arg)),*];
            let (out, mask) = call_harness($conv, e.wrapper_address(id), &args, None, 0);
            assert_eq!(mask, 0, "callee-saved registers clobbered: {}", describe(mask));
            assert_eq!(out.rax, expected);
            assert_eq!(e.in_flight(), 0);
        }
    };
    (@u64 $a:ident) => { u64 };
}

arity!(sysv_0_args, "C", Conv::SysV;);
arity!(sysv_1_arg, "C", Conv::SysV; a1);
arity!(sysv_2_args, "C", Conv::SysV; a1, a2);
arity!(sysv_3_args, "C", Conv::SysV; a1, a2, a3);
arity!(sysv_4_args, "C", Conv::SysV; a1, a2, a3, a4);
arity!(sysv_5_args, "C", Conv::SysV; a1, a2, a3, a4, a5);
arity!(sysv_6_args, "C", Conv::SysV; a1, a2, a3, a4, a5, a6);
arity!(sysv_7_args_one_on_the_stack, "C", Conv::SysV; a1, a2, a3, a4, a5, a6, a7);
arity!(sysv_8_args, "C", Conv::SysV; a1, a2, a3, a4, a5, a6, a7, a8);
arity!(sysv_9_args, "C", Conv::SysV; a1, a2, a3, a4, a5, a6, a7, a8, a9);
arity!(sysv_10_args, "C", Conv::SysV; a1, a2, a3, a4, a5, a6, a7, a8, a9, a10);
arity!(sysv_11_args, "C", Conv::SysV; a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11);
arity!(sysv_12_args_six_on_the_stack, "C", Conv::SysV; a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12);
arity!(win64_0_args, "win64", Conv::Win64;);
arity!(win64_1_arg, "win64", Conv::Win64; a1);
arity!(win64_2_args, "win64", Conv::Win64; a1, a2);
arity!(win64_3_args, "win64", Conv::Win64; a1, a2, a3);
arity!(win64_4_args, "win64", Conv::Win64; a1, a2, a3, a4);
arity!(win64_5_args_one_on_the_stack, "win64", Conv::Win64; a1, a2, a3, a4, a5);
arity!(win64_6_args, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6);
arity!(win64_7_args, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6, a7);
arity!(win64_8_args, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6, a7, a8);
arity!(win64_9_args, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6, a7, a8, a9);
arity!(win64_10_args, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6, a7, a8, a9, a10);
arity!(win64_11_args, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11);
arity!(win64_12_args_eight_on_the_stack, "win64", Conv::Win64; a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12);

// ---- floats, mixed, wide and struct returns ----

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct Pair {
    a: u64,
    b: u64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq)]
struct FPair {
    a: f64,
    b: f64,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Big {
    a: u64,
    b: u64,
    c: u64,
}

macro_rules! float_fns {
    ($abi:literal, $floats12:ident, $mixed12:ident, $big12:ident, $f32ret:ident) => {
        extern $abi fn $floats12(
            a: f64, b: f64, c: f64, d: f64, e: f64, f: f64, g: f64, h: f64, i: f64, j: f64,
            k: f64, l: f64,
        ) -> f64 {
            [a, b, c, d, e, f, g, h, i, j, k, l]
                .iter()
                .enumerate()
                .map(|(n, x)| x * (n as f64 + 1.0))
                .sum()
        }
        extern $abi fn $mixed12(
            a: u64, b: f64, c: u64, d: f32, e: u64, f: f64, g: u64, h: f64, i: u64, j: f64,
            k: u64, l: f64,
        ) -> f64 {
            (a + 2 * c + 3 * e + 4 * g + 5 * i + 6 * k) as f64
                + b * 7.0 + f64::from(d) * 8.0 + f * 9.0 + h * 10.0 + j * 11.0 + l * 12.0
        }
        extern $abi fn $big12(
            a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64, i: u64, j: u64,
            k: u64, l: u64,
        ) -> Big {
            let m = mix(&[a, b, c, d, e, f, g, h, i, j, k, l]);
            Big { a: m, b: m ^ l, c: m.wrapping_add(a) }
        }
        extern $abi fn $f32ret(a: f32, b: u64) -> f32 {
            a * 2.0 + b as f32
        }
    };
}

float_fns!("C", sysv_floats12, sysv_mixed12, sysv_big12, sysv_f32ret);
float_fns!(
    "win64",
    win64_floats12,
    win64_mixed12,
    win64_big12,
    win64_f32ret
);

extern "C" fn sysv_u128(a: u64, b: u64, c: u64, d: u64, e: u64, f: u64, g: u64, h: u64) -> u128 {
    (u128::from(mix(&[a, b, c, d])) << 64) | u128::from(mix(&[e, f, g, h]))
}
extern "C" fn sysv_pair(a: u64, b: f64) -> Pair {
    Pair {
        a: a ^ 0x55,
        b: b.to_bits().rotate_left(7),
    }
}
extern "C" fn sysv_fpair(a: f64, b: u64) -> FPair {
    FPair {
        a: a * 3.0,
        b: b as f64 - 0.5,
    }
}
extern "win64" fn win64_pair(a: u64, b: f64) -> Pair {
    Pair {
        a: a ^ 0x55,
        b: b.to_bits().rotate_left(7),
    }
}

fn floats() -> [f64; 12] {
    core::array::from_fn(|i| 1.5 + i as f64 * 0.25)
}

#[test]
fn twelve_floats_four_on_the_stack_in_both_conventions() {
    let e = engine();
    let s = e.add_endpoint(code!(sysv_floats12)).unwrap();
    let w = e.add_endpoint(code!(win64_floats12)).unwrap();
    let x = floats();
    let expected = sysv_floats12(
        x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11],
    );
    type S = extern "C" fn(f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64) -> f64;
    type W = extern "win64" fn(f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64, f64) -> f64;
    // SAFETY: the wrappers forward to endpoints of exactly these types.
    let (fs, fw): (S, W) = unsafe { (wrapper(&e, s), wrapper(&e, w)) };
    assert_eq!(
        fs(
            x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11]
        ),
        expected
    );
    assert_eq!(
        fw(
            x[0], x[1], x[2], x[3], x[4], x[5], x[6], x[7], x[8], x[9], x[10], x[11]
        ),
        expected
    );
    let args: Vec<Arg> = x.iter().map(|&f| Arg::F(f)).collect();
    for (conv, id) in [(Conv::SysV, s), (Conv::Win64, w)] {
        let (out, mask) = call_harness(conv, e.wrapper_address(id), &args, None, 8);
        assert_eq!(mask, 0, "{conv:?}: {}", describe(mask));
        assert_eq!(f64::from_bits(out.xmm0[0]), expected, "{conv:?}");
    }
}

#[test]
fn twelve_mixed_integer_and_float_arguments_in_both_conventions() {
    let e = engine();
    let s = e.add_endpoint(code!(sysv_mixed12)).unwrap();
    let w = e.add_endpoint(code!(win64_mixed12)).unwrap();
    let expected = sysv_mixed12(1, 2.5, 3, 4.25, 5, 6.5, 7, 8.75, 9, 10.5, 11, 12.25);
    type S = extern "C" fn(u64, f64, u64, f32, u64, f64, u64, f64, u64, f64, u64, f64) -> f64;
    type W = extern "win64" fn(u64, f64, u64, f32, u64, f64, u64, f64, u64, f64, u64, f64) -> f64;
    // SAFETY: exact types.
    let (fs, fw): (S, W) = unsafe { (wrapper(&e, s), wrapper(&e, w)) };
    assert_eq!(
        fs(1, 2.5, 3, 4.25, 5, 6.5, 7, 8.75, 9, 10.5, 11, 12.25),
        expected
    );
    assert_eq!(
        fw(1, 2.5, 3, 4.25, 5, 6.5, 7, 8.75, 9, 10.5, 11, 12.25),
        expected
    );
    let args = vec![
        Arg::I(1),
        Arg::F(2.5),
        Arg::I(3),
        Arg::F32(4.25),
        Arg::I(5),
        Arg::F(6.5),
        Arg::I(7),
        Arg::F(8.75),
        Arg::I(9),
        Arg::F(10.5),
        Arg::I(11),
        Arg::F(12.25),
    ];
    for (conv, id) in [(Conv::SysV, s), (Conv::Win64, w)] {
        let (out, mask) = call_harness(conv, e.wrapper_address(id), &args, None, 6);
        assert_eq!(mask, 0, "{conv:?}: {}", describe(mask));
        assert_eq!(f64::from_bits(out.xmm0[0]), expected, "{conv:?}");
    }
}

#[test]
fn struct_return_through_a_hidden_pointer_with_twelve_arguments_in_both_conventions() {
    let e = engine();
    let s = e.add_endpoint(code!(sysv_big12)).unwrap();
    let w = e.add_endpoint(code!(win64_big12)).unwrap();
    let v: [u64; 12] = core::array::from_fn(value);
    let expected = sysv_big12(
        v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11],
    );
    type S = extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64) -> Big;
    type W = extern "win64" fn(u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64) -> Big;
    // SAFETY: exact types.
    let (fs, fw): (S, W) = unsafe { (wrapper(&e, s), wrapper(&e, w)) };
    assert_eq!(
        fs(
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]
        ),
        expected
    );
    assert_eq!(
        fw(
            v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11]
        ),
        expected
    );
    let args: Vec<Arg> = v.iter().map(|&x| Arg::I(x)).collect();
    for (conv, id) in [(Conv::SysV, s), (Conv::Win64, w)] {
        let mut big = Big::default();
        let (out, mask) = call_harness(conv, e.wrapper_address(id), &args, Some(&raw mut big), 0);
        assert_eq!(mask, 0, "{conv:?}: {}", describe(mask));
        assert_eq!(big, expected, "{conv:?}");
        assert_eq!(
            out.rax,
            (&raw const big) as u64,
            "{conv:?}: rax must return the hidden pointer"
        );
    }
}

#[test]
fn two_register_returns_u128_pair_and_float_pair_sysv_and_small_returns_both() {
    let e = engine();
    let u = e.add_endpoint(code!(sysv_u128)).unwrap();
    let p = e.add_endpoint(code!(sysv_pair)).unwrap();
    let fp = e.add_endpoint(code!(sysv_fpair)).unwrap();
    let f32s = e.add_endpoint(code!(sysv_f32ret)).unwrap();
    let f32w = e.add_endpoint(code!(win64_f32ret)).unwrap();
    let pw = e.add_endpoint(code!(win64_pair)).unwrap();
    let v: [u64; 8] = core::array::from_fn(value);
    // SAFETY: exact types for each wrapper.
    unsafe {
        let f: extern "C" fn(u64, u64, u64, u64, u64, u64, u64, u64) -> u128 = wrapper(&e, u);
        assert_eq!(
            f(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]),
            sysv_u128(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
        );
        let f: extern "C" fn(u64, f64) -> Pair = wrapper(&e, p);
        assert_eq!(f(7, 2.5), sysv_pair(7, 2.5));
        let f: extern "C" fn(f64, u64) -> FPair = wrapper(&e, fp);
        assert_eq!(f(1.25, 9), sysv_fpair(1.25, 9));
        let f: extern "C" fn(f32, u64) -> f32 = wrapper(&e, f32s);
        assert_eq!(f(1.5, 3), 6.0);
        let f: extern "win64" fn(f32, u64) -> f32 = wrapper(&e, f32w);
        assert_eq!(f(1.5, 3), 6.0);
        let f: extern "win64" fn(u64, f64) -> Pair = wrapper(&e, pw);
        assert_eq!(f(7, 2.5), win64_pair(7, 2.5));
    }
    let args: Vec<Arg> = v.iter().map(|&x| Arg::I(x)).collect();
    let (out, mask) = call_harness(Conv::SysV, e.wrapper_address(u), &args, None, 0);
    assert_eq!(mask, 0, "{}", describe(mask));
    let got = (u128::from(out.rdx) << 64) | u128::from(out.rax);
    assert_eq!(
        got,
        sysv_u128(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7])
    );
    let (out, mask) = call_harness(
        Conv::SysV,
        e.wrapper_address(fp),
        &[Arg::F(1.25), Arg::I(9)],
        None,
        1,
    );
    assert_eq!(mask, 0, "{}", describe(mask));
    let want = sysv_fpair(1.25, 9);
    assert_eq!(
        (f64::from_bits(out.xmm0[0]), f64::from_bits(out.xmm1[0])),
        (want.a, want.b)
    );
}

unsafe extern "C" {
    fn snprintf(buf: *mut c_char, len: usize, fmt: *const c_char, ...) -> c_int;
}

#[test]
fn a_sysv_variadic_call_keeps_al_and_its_stack_arguments() {
    let e = engine();
    let id = e.add_endpoint(code!(snprintf)).unwrap();
    type Snprintf = unsafe extern "C" fn(*mut c_char, usize, *const c_char, ...) -> c_int;
    // SAFETY: the wrapper forwards to snprintf, a C variadic function of this type.
    let f: Snprintf = unsafe { wrapper(&e, id) };
    let mut buf = [0u8; 256];
    let fmt = c"%d %.2f %s %lu %.1f %lu %lu %lu %.3f %lu";
    // SAFETY: the arguments match the format.
    let n = unsafe {
        f(
            buf.as_mut_ptr().cast(),
            buf.len(),
            fmt.as_ptr(),
            42 as c_int,
            1.5f64,
            c"x".as_ptr(),
            7u64,
            2.25f64,
            8u64,
            9u64,
            10u64,
            0.125f64,
            11u64,
        )
    };
    let s = core::str::from_utf8(&buf[..usize::try_from(n).unwrap()]).unwrap();
    assert_eq!(s, "42 1.50 x 7 2.2 8 9 10 0.125 11");
    // The same through the harness, with al = 3 (vector registers used) and canaries.
    let mut buf2 = [0u8; 256];
    let fmt2 = c"%lu %lu %lu %lu %.1f %.1f %.1f";
    let args = [
        Arg::I(buf2.as_mut_ptr() as u64),
        Arg::I(256),
        Arg::I(fmt2.as_ptr() as u64),
        Arg::I(1),
        Arg::I(2),
        Arg::I(3),
        Arg::F(0.5),
        Arg::F(1.5),
        Arg::F(2.5),
        Arg::I(4),
    ];
    let (out, mask) = call_harness(Conv::SysV, e.wrapper_address(id), &args, None, 3);
    assert_eq!(mask, 0, "{}", describe(mask));
    let s = core::str::from_utf8(&buf2[..usize::try_from(out.rax).unwrap()]).unwrap();
    assert_eq!(s, "1 2 3 4 0.5 1.5 2.5");
}

core::arch::global_asm!(
    ".pushsection .text.engine_test_asm,\"ax\",@progbits",
    // Microsoft x64 "va_start" style endpoint: spills rcx/rdx/r8/r9 into the caller's home
    // area, then reads all 12 argument slots from the stack: sum of arg[i] * (i + 1).
    ".globl engine_test_win64_va_sum",
    "engine_test_win64_va_sum:",
    "mov [rsp + 8], rcx",
    "mov [rsp + 16], rdx",
    "mov [rsp + 24], r8",
    "mov [rsp + 32], r9",
    "xor eax, eax",
    ".set eva_i, 0",
    ".rept 12",
    "mov r10, [rsp + 8 + eva_i * 8]",
    "imul r10, r10, eva_i + 1",
    "add rax, r10",
    ".set eva_i, eva_i + 1",
    ".endr",
    "ret",
    // Negative controls.
    ".globl engine_test_clobber_r12",
    "engine_test_clobber_r12:",
    "xor r12d, r12d",
    "ret",
    ".globl engine_test_clobber_win64_nonvolatile",
    "engine_test_clobber_win64_nonvolatile:",
    "xor esi, esi",
    "xor edi, edi",
    "pxor xmm6, xmm6",
    "pxor xmm15, xmm15",
    "ret",
    ".popsection",
);

unsafe extern "C" {
    fn engine_test_win64_va_sum();
    fn engine_test_clobber_r12();
    fn engine_test_clobber_win64_nonvolatile();
}

#[test]
fn a_win64_variadic_style_endpoint_finds_its_home_area_and_stack_arguments() {
    let e = engine();
    let id = e.add_endpoint(code!(engine_test_win64_va_sum)).unwrap();
    type W = extern "win64" fn(u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64, u64) -> u64;
    // SAFETY: the endpoint reads 12 integer arguments the Win64 way.
    let f: W = unsafe { wrapper(&e, id) };
    let expected: u64 = (1..=12u64).map(|i| i * (100 + i)).sum();
    assert_eq!(
        f(101, 102, 103, 104, 105, 106, 107, 108, 109, 110, 111, 112),
        expected
    );
    let args: Vec<Arg> = (1..=12u64).map(|i| Arg::I(100 + i)).collect();
    let (out, mask) = call_harness(Conv::Win64, e.wrapper_address(id), &args, None, 0);
    assert_eq!(mask, 0, "{}", describe(mask));
    assert_eq!(out.rax, expected);
}

#[test]
fn negative_control_the_harness_detects_clobbered_callee_saved_registers() {
    // Directly and through a wrapper: the harness must see the clobber.
    let e = engine();
    let r12 = e.add_endpoint(code!(engine_test_clobber_r12)).unwrap();
    let win = e
        .add_endpoint(code!(engine_test_clobber_win64_nonvolatile))
        .unwrap();
    for target in [code!(engine_test_clobber_r12), e.wrapper_address(r12)] {
        let (_, mask) = call_harness(Conv::SysV, target, &[], None, 0);
        assert_eq!(mask, 1 << 2, "r12 clobber not seen: {}", describe(mask));
    }
    for target in [
        code!(engine_test_clobber_win64_nonvolatile),
        e.wrapper_address(win),
    ] {
        let (_, mask) = call_harness(Conv::Win64, target, &[], None, 0);
        assert_eq!(
            mask,
            (1 << 6) | (1 << 7) | (1 << 8) | (1 << 17),
            "{}",
            describe(mask)
        );
    }
    // A SysV harness does not treat rsi/rdi/xmm as preserved: the same function is fine there.
    let (_, mask) = call_harness(
        Conv::SysV,
        code!(engine_test_clobber_win64_nonvolatile),
        &[],
        None,
        0,
    );
    assert_eq!(mask, 0);
}

// ---- the slow paths keep every register too ----

struct Gate {
    inside: AtomicU64,
    go: AtomicBool,
}

static GATE: Gate = Gate {
    inside: AtomicU64::new(0),
    go: AtomicBool::new(false),
};

/// v1 of the slow-path test: blocks (when asked) until `GATE.go`, then the mixed checksum.
extern "win64" fn slow_v1(
    block: u64,
    b: f64,
    c: u64,
    d: f32,
    e: u64,
    f: f64,
    g: u64,
    h: f64,
    i: u64,
    j: f64,
    k: u64,
    l: f64,
) -> f64 {
    if block != 0 {
        GATE.inside.fetch_add(1, Ordering::SeqCst);
        while !GATE.go.load(Ordering::SeqCst) {
            thread::sleep(Duration::from_millis(1));
        }
    }
    win64_mixed12(block, b, c, d, e, f, g, h, i, j, k, l)
}

/// v2: the checksum plus 1000.
extern "win64" fn slow_v2(
    a: u64,
    b: f64,
    c: u64,
    d: f32,
    e: u64,
    f: f64,
    g: u64,
    h: f64,
    i: u64,
    j: f64,
    k: u64,
    l: f64,
) -> f64 {
    win64_mixed12(a, b, c, d, e, f, g, h, i, j, k, l) + 1000.0
}

extern "C" fn slow_sysv_v2(
    a: u64,
    b: f64,
    c: u64,
    d: f32,
    e: u64,
    f: f64,
    g: u64,
    h: f64,
    i: u64,
    j: f64,
    k: u64,
    l: f64,
) -> f64 {
    sysv_mixed12(a, b, c, d, e, f, g, h, i, j, k, l) + 1000.0
}

fn slow_args(block: u64) -> Vec<Arg> {
    vec![
        Arg::I(block),
        Arg::F(2.5),
        Arg::I(3),
        Arg::F32(4.25),
        Arg::I(5),
        Arg::F(6.5),
        Arg::I(7),
        Arg::F(8.75),
        Arg::I(9),
        Arg::F(10.5),
        Arg::I(11),
        Arg::F(12.25),
    ]
}

fn harness_on_thread(conv: Conv, target: usize, args: Vec<Arg>) -> thread::JoinHandle<(Out, u64)> {
    thread::spawn(move || call_harness(conv, target, &args, None, 6))
}

#[test]
fn slow_paths_first_call_held_call_and_exit_during_a_stall_preserve_every_register() {
    let e = Arc::new(engine());
    let id: WrapperId = e.add_endpoint(code!(slow_v1)).unwrap();
    let sysv_id: WrapperId = e.add_endpoint(code!(sysv_mixed12)).unwrap();
    let w = e.wrapper_address(id);
    let ws = e.wrapper_address(sysv_id);
    let base = win64_mixed12(0, 2.5, 3, 4.25, 5, 6.5, 7, 8.75, 9, 10.5, 11, 12.25);
    let base_blocking = win64_mixed12(1, 2.5, 3, 4.25, 5, 6.5, 7, 8.75, 9, 10.5, 11, 12.25);
    // First call on a fresh thread: the registering slow path.
    let (out, mask) = harness_on_thread(Conv::Win64, w, slow_args(0))
        .join()
        .unwrap();
    assert_eq!(mask, 0, "first call: {}", describe(mask));
    assert_eq!(f64::from_bits(out.xmm0[0]), base);
    // A call inside v1 that will leave during the stall (exit slow path).
    let blocked = harness_on_thread(Conv::Win64, w, slow_args(1));
    let t = Instant::now();
    while GATE.inside.load(Ordering::SeqCst) == 0 {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(1));
    }
    let swapper = {
        let e = e.clone();
        thread::spawn(move || {
            e.swap(
                &[(id, code!(slow_v2)), (sysv_id, code!(slow_sysv_v2))],
                &mut |_| Ok(()),
            )
        })
    };
    while !e.is_stalled() {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(1));
    }
    // Calls held by the stall (entry slow path, in Rust, possibly asleep in the kernel).
    let held = [
        harness_on_thread(Conv::Win64, w, slow_args(0)),
        harness_on_thread(Conv::SysV, ws, slow_args(0)),
    ];
    while e.held_callers() < 2 {
        assert!(t.elapsed() < Duration::from_secs(10));
        thread::sleep(Duration::from_millis(1));
    }
    GATE.go.store(true, Ordering::SeqCst);
    let (out, mask) = blocked.join().unwrap();
    assert_eq!(mask, 0, "exit during the stall: {}", describe(mask));
    assert_eq!(f64::from_bits(out.xmm0[0]), base_blocking);
    swapper.join().unwrap().expect("swap");
    let [win, sysv] = held;
    let (out, mask) = win.join().unwrap();
    assert_eq!(mask, 0, "held Win64 call: {}", describe(mask));
    assert_eq!(
        f64::from_bits(out.xmm0[0]),
        base + 1000.0,
        "held call must reach v2"
    );
    let (out, mask) = sysv.join().unwrap();
    assert_eq!(mask, 0, "held SysV call: {}", describe(mask));
    assert_eq!(
        f64::from_bits(out.xmm0[0]),
        base + 1000.0,
        "held call must reach v2"
    );
}

// ---- the harness ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Conv {
    SysV,
    Win64,
}

#[derive(Debug, Clone, Copy)]
enum Arg {
    I(u64),
    F(f64),
    F32(f32),
}

/// Register and stack image the harness loads before the call.
#[repr(C)]
#[derive(Default)]
struct Frame {
    /// System V: rdi, rsi, rdx, rcx, r8, r9. Win64: rcx, rdx, r8, r9.
    gpr: [u64; 6],
    rax: u64,
    pad: u64,
    xmm: [[u64; 2]; 8],
    /// The outgoing stack area: slot 0 is [rsp] at the call (Win64: home area slots 0..4).
    stack: [u64; 16],
}

/// What the call returned.
#[repr(C)]
#[derive(Default, Debug, Clone, Copy)]
struct Out {
    rax: u64,
    rdx: u64,
    xmm0: [u64; 2],
    xmm1: [u64; 2],
}

static XMM_CANARIES: [u64; 20] = [
    0x6666_0000_0000_6666,
    0x6666_1111_1111_6666,
    0x7777_0000_0000_7777,
    0x7777_1111_1111_7777,
    0x8888_0000_0000_8888,
    0x8888_1111_1111_8888,
    0x9999_0000_0000_9999,
    0x9999_1111_1111_9999,
    0xaaaa_0000_0000_aaaa,
    0xaaaa_1111_1111_aaaa,
    0xbbbb_0000_0000_bbbb,
    0xbbbb_1111_1111_bbbb,
    0xcccc_0000_0000_cccc,
    0xcccc_1111_1111_cccc,
    0xdddd_0000_0000_dddd,
    0xdddd_1111_1111_dddd,
    0xeeee_0000_0000_eeee,
    0xeeee_1111_1111_eeee,
    0xffff_0000_0000_ffff,
    0xffff_1111_1111_ffff,
];

const REGS: [&str; 18] = [
    "rbx", "rbp", "r12", "r13", "r14", "r15", "rsi", "rdi", "xmm6", "xmm7", "xmm8", "xmm9",
    "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15",
];

fn describe(mask: u64) -> String {
    REGS.iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, r)| *r)
        .collect::<Vec<_>>()
        .join(",")
}

macro_rules! harness_asm {
    () => {
        concat!(
            "push rbp\n",
            "push rbx\n",
            "push r12\n",
            "push r13\n",
            "push r14\n",
            "push r15\n",
            "push rdx\n",
            "push rdi\n",
            "sub rsp, 136\n",
            ".set ehi, 0\n",
            ".rept 16\n",
            "mov rax, [rsi + 192 + ehi * 8]\n",
            "mov [rsp + ehi * 8], rax\n",
            ".set ehi, ehi + 1\n",
            ".endr\n",
            "movdqu xmm0, [rsi + 64]\n",
            "movdqu xmm1, [rsi + 80]\n",
            "movdqu xmm2, [rsi + 96]\n",
            "movdqu xmm3, [rsi + 112]\n",
            "movdqu xmm4, [rsi + 128]\n",
            "movdqu xmm5, [rsi + 144]\n",
            "movdqu xmm6, [rsi + 160]\n",
            "movdqu xmm7, [rsi + 176]\n",
            "movabs rbx, 0x0b0b0b0b0b0b0b0b\n",
            "movabs rbp, 0x0c0c0c0c0c0c0c0c\n",
            "movabs r12, 0x1212121212121212\n",
            "movabs r13, 0x1313131313131313\n",
            "movabs r14, 0x1414141414141414\n",
            "movabs r15, 0x1515151515151515\n",
            "mov r11, [rsp + 136]\n",
        )
    };
}

macro_rules! harness_check_gprs {
    () => {
        concat!(
            "mov r11, [rsp + 144]\n",
            "mov [r11], rax\n",
            "mov [r11 + 8], rdx\n",
            "movdqu [r11 + 16], xmm0\n",
            "movdqu [r11 + 32], xmm1\n",
            "xor eax, eax\n",
            "movabs r10, 0x0b0b0b0b0b0b0b0b\n",
            "cmp rbx, r10\n",
            "je 1f\n",
            "or eax, 1\n",
            "1:\n",
            "movabs r10, 0x0c0c0c0c0c0c0c0c\n",
            "cmp rbp, r10\n",
            "je 1f\n",
            "or eax, 2\n",
            "1:\n",
            "movabs r10, 0x1212121212121212\n",
            "cmp r12, r10\n",
            "je 1f\n",
            "or eax, 4\n",
            "1:\n",
            "movabs r10, 0x1313131313131313\n",
            "cmp r13, r10\n",
            "je 1f\n",
            "or eax, 8\n",
            "1:\n",
            "movabs r10, 0x1414141414141414\n",
            "cmp r14, r10\n",
            "je 1f\n",
            "or eax, 16\n",
            "1:\n",
            "movabs r10, 0x1515151515151515\n",
            "cmp r15, r10\n",
            "je 1f\n",
            "or eax, 32\n",
            "1:\n",
        )
    };
}

macro_rules! harness_epilogue {
    () => {
        concat!(
            "add rsp, 152\n",
            "pop r15\n",
            "pop r14\n",
            "pop r13\n",
            "pop r12\n",
            "pop rbx\n",
            "pop rbp\n",
            "ret\n"
        )
    };
}

core::arch::global_asm!(
    ".pushsection .text.engine_test_harness,\"ax\",@progbits",
    // fn(target, frame, out) -> clobber mask, calling `target` the SysV way.
    ".globl engine_test_harness_sysv",
    "engine_test_harness_sysv:",
    harness_asm!(),
    "mov rdi, [rsi]",
    "mov rdx, [rsi + 16]",
    "mov rcx, [rsi + 24]",
    "mov r8, [rsi + 32]",
    "mov r9, [rsi + 40]",
    "mov rax, [rsi + 48]",
    "mov rsi, [rsi + 8]",
    "call r11",
    harness_check_gprs!(),
    harness_epilogue!(),
    // fn(target, frame, out) -> clobber mask, calling `target` the Microsoft x64 way, with
    // canaries also in rsi, rdi and xmm6-15.
    ".globl engine_test_harness_win64",
    "engine_test_harness_win64:",
    harness_asm!(),
    "lea r10, [rip + {xmm}]",
    "movdqu xmm6, [r10 + 0]",
    "movdqu xmm7, [r10 + 16]",
    "movdqu xmm8, [r10 + 32]",
    "movdqu xmm9, [r10 + 48]",
    "movdqu xmm10, [r10 + 64]",
    "movdqu xmm11, [r10 + 80]",
    "movdqu xmm12, [r10 + 96]",
    "movdqu xmm13, [r10 + 112]",
    "movdqu xmm14, [r10 + 128]",
    "movdqu xmm15, [r10 + 144]",
    "mov rcx, [rsi]",
    "mov rdx, [rsi + 8]",
    "mov r8, [rsi + 16]",
    "mov r9, [rsi + 24]",
    "mov rax, [rsi + 48]",
    "movabs rdi, 0x0d0d0d0d0d0d0d0d",
    "movabs rsi, 0x0e0e0e0e0e0e0e0e",
    "call r11",
    harness_check_gprs!(),
    "movabs r10, 0x0e0e0e0e0e0e0e0e",
    "cmp rsi, r10",
    "je 1f",
    "or eax, 64",
    "1:",
    "movabs r10, 0x0d0d0d0d0d0d0d0d",
    "cmp rdi, r10",
    "je 1f",
    "or eax, 128",
    "1:",
    "lea r10, [rip + {xmm}]",
    ".set ehx, 0",
    ".irp reg, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14, xmm15",
    "movdqu xmm0, [r10 + ehx * 16]",
    "pcmpeqb xmm0, \\reg",
    "pmovmskb r11d, xmm0",
    "cmp r11d, 0xffff",
    "je 1f",
    "or eax, 1 << (8 + ehx)",
    "1:",
    ".set ehx, ehx + 1",
    ".endr",
    harness_epilogue!(),
    ".popsection",
    xmm = sym XMM_CANARIES,
);

unsafe extern "C" {
    fn engine_test_harness_sysv(target: usize, frame: *const Frame, out: *mut Out) -> u64;
    fn engine_test_harness_win64(target: usize, frame: *const Frame, out: *mut Out) -> u64;
}

/// Calls `target` the `conv` way with `args` (and a hidden struct-return pointer first if
/// `ret_ptr`), `al` = `vector_count`; returns what came back and the clobber mask.
fn call_harness(
    conv: Conv,
    target: usize,
    args: &[Arg],
    ret_ptr: Option<*mut Big>,
    vector_count: u64,
) -> (Out, u64) {
    let mut frame = Frame {
        rax: vector_count,
        ..Frame::default()
    };
    let mut all: Vec<Arg> = ret_ptr.map(|p| Arg::I(p as u64)).into_iter().collect();
    all.extend_from_slice(args);
    let bits = |a: Arg| match a {
        Arg::I(v) => v,
        Arg::F(f) => f.to_bits(),
        Arg::F32(f) => u64::from(f.to_bits()),
    };
    match conv {
        Conv::SysV => {
            let (mut gi, mut fi, mut si) = (0, 0, 0);
            for a in all {
                match a {
                    Arg::I(v) if gi < 6 => {
                        frame.gpr[gi] = v;
                        gi += 1;
                    }
                    Arg::F(_) | Arg::F32(_) if fi < 8 => {
                        frame.xmm[fi] = [bits(a), 0];
                        fi += 1;
                    }
                    _ => {
                        frame.stack[si] = bits(a);
                        si += 1;
                    }
                }
            }
        }
        Conv::Win64 => {
            for (i, a) in all.into_iter().enumerate() {
                match a {
                    Arg::I(v) if i < 4 => frame.gpr[i] = v,
                    Arg::F(_) | Arg::F32(_) if i < 4 => frame.xmm[i] = [bits(a), 0],
                    _ => frame.stack[i] = bits(a),
                }
            }
        }
    }
    let mut out = Out::default();
    // SAFETY: the harness calls `target` with the registers/stack built above; every target
    // used in this file reads only the arguments its signature declares.
    let mask = unsafe {
        match conv {
            Conv::SysV => engine_test_harness_sysv(target, &raw const frame, &raw mut out),
            Conv::Win64 => engine_test_harness_win64(target, &raw const frame, &raw mut out),
        }
    };
    (out, mask)
}
