//! Proof that calling a `Wrapped<F>` costs exactly one indirect call: builds the codegen
//! probe (`xtask/probe`) in release for `x86_64-pc-windows-msvc`, disassembles its two
//! functions from the object file, and requires the wrapper call to be instruction for
//! instruction the plain function-pointer call, with exactly one indirect call and no other.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, IntelFormatter};
use object::{Object, ObjectSection, ObjectSymbol};

const TARGET: &str = "x86_64-pc-windows-msvc";

/// Builds, disassembles and compares; prints the listing.
///
/// # Errors
/// When the probe does not build, a symbol is missing, or the call is not one indirect call.
pub fn check(root: &Path) -> Result<()> {
    let target_dir = root.join("target").join("xtask-disasm");
    crate::cargo(&[
        "rustc",
        "-p",
        "wrapped-call-probe",
        "--release",
        "--lib",
        "--target",
        TARGET,
        "--target-dir",
        target_dir.to_str().context("non-UTF-8 path")?,
        "--",
        "--emit=obj",
    ])?;
    let object_path = newest_object(&target_dir.join(TARGET).join("release").join("deps"))?;
    let data = std::fs::read(&object_path)
        .with_context(|| format!("reading {}", object_path.display()))?;
    let file = object::File::parse(&*data)?;
    let wrapped = disassemble(&file, "probe_call_wrapped")?;
    let plain = disassemble(&file, "probe_call_plain")?;
    println!("xtask: probe_call_wrapped ({}):", object_path.display());
    for line in &wrapped {
        println!("    {}", line.text);
    }
    ensure!(
        wrapped
            .iter()
            .map(|l| &l.text)
            .eq(plain.iter().map(|l| &l.text)),
        "a call through Wrapped<F> compiles differently from a plain fn-pointer call:\nwrapped: {:#?}\nplain: {:#?}",
        wrapped.iter().map(|l| &l.text).collect::<Vec<_>>(),
        plain.iter().map(|l| &l.text).collect::<Vec<_>>()
    );
    let indirect_calls = wrapped
        .iter()
        .filter(|l| l.flow == FlowControl::IndirectCall)
        .count();
    let other_transfers = wrapped
        .iter()
        .filter(|l| {
            matches!(
                l.flow,
                FlowControl::Call | FlowControl::IndirectBranch | FlowControl::UnconditionalBranch
            )
        })
        .count();
    ensure!(
        indirect_calls == 1,
        "expected exactly one indirect call, found {indirect_calls}"
    );
    ensure!(
        other_transfers == 0,
        "expected no other calls or jumps, found {other_transfers}"
    );
    println!(
        "xtask: Wrapped<F> call = plain indirect call ({} instructions, 1 indirect call)",
        wrapped.len()
    );
    Ok(())
}

struct Line {
    text: String,
    flow: FlowControl,
}

fn newest_object(dir: &Path) -> Result<PathBuf> {
    let mut objects: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "o")
                && p.file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("wrapped_call_probe"))
        })
        .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
        .collect();
    objects.sort();
    objects
        .pop()
        .map(|(_, p)| p)
        .context("the probe's object file was not produced")
}

fn disassemble(file: &object::File<'_>, name: &str) -> Result<Vec<Line>> {
    let symbol = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .with_context(|| format!("symbol {name} not found"))?;
    let section =
        file.section_by_index(symbol.section_index().context("symbol has no section")?)?;
    let data = section.data()?;
    let start = usize::try_from(symbol.address() - section.address())?;
    // rustc emits one section per function, so the function runs to the end of its section.
    let code = &data[start..];
    if code.is_empty() {
        bail!("{name} has no code");
    }
    let mut decoder = Decoder::with_ip(64, code, 0, DecoderOptions::NONE);
    let mut formatter = IntelFormatter::new();
    let mut lines = Vec::new();
    for instruction in &mut decoder {
        let mut text = String::new();
        formatter.format(&instruction, &mut text);
        let flow = instruction.flow_control();
        lines.push(Line { text, flow });
        if flow == FlowControl::Return {
            break;
        }
    }
    Ok(lines)
}
