//! The state that survives a hot swap, and the hand-over between the two builds.
//!
//! # What is carried
//!
//! [`State`] holds the counters the client can read (`STATS`): requests served per build,
//! requests rejected, worker ticks per build, the build whose worker ticked last, and how
//! many hand-overs the state has been through. Every counter is an atomic, so endpoints on
//! any number of processors update it without a lock.
//!
//! # How it crosses a swap
//!
//! Each build's image has its own `State`. A V1-style hot swap re-registers the endpoints
//! with a phased callback (`IoRegisterDriverProxyEndpoints`), and the kernel calls it
//! `PreProcess` → `ProxyStalled` → `PostProcess`. The hand-over happens in `ProxyStalled`:
//!
//! 1. the outgoing build's state is exported with [`State::export_handover`] into a
//!    [`HandOverSnapshot`] (a versioned `#[repr(C)]` record, 64 bytes, little-endian on the
//!    wire: [`HandOverSnapshot::to_bytes`]);
//! 2. the incoming build imports it with [`State::import_handover`] (or
//!    [`State::import_from`] on the bytes), which *adds* the snapshot's counts to its own
//!    state and records one more swap;
//! 3. the kernel repoints the wrappers and releases the held calls, which now reach the
//!    incoming build and its state.
//!
//! How the snapshot travels from one image to the other (for instance a buffer in the
//! device extension, which both images reach) is the front end's choice; this format is
//! what both builds agree on, and the only thing they must agree on.
//!
//! # Why this is exact
//!
//! The export is a set of separate atomic loads, not one atomic read of the whole state; it
//! is exact because of the guarantee `ProxyStalled` gives: the DriverProxy rundown is held, no
//! call is inside any endpoint of the extension and new calls are held at the wrappers.
//! Every routine of the sample that touches the state (the dispatch routines and the worker
//! routine) is such an endpoint, so nothing modifies either state during steps 1 and 2, and
//! the kernel's rundown acquisition orders every earlier update before the export (hence
//! `Relaxed` loads suffice). Every request served by the outgoing build before the stall is
//! in the snapshot and every request after the stall is counted by the incoming build:
//! **no count is lost and none is counted twice**.
//!
//! The export does not modify the outgoing state. If the swap fails after `ProxyStalled` and
//! the kernel rolls back, the outgoing build keeps running with its counters intact, and the
//! incoming build, its imported state with it, is discarded. A state accepts one import
//! only ([`HandOverError::AlreadyImported`]), so a snapshot cannot be counted twice into the
//! same state.
//!
//! Outside `ProxyStalled` an export is still memory-safe and each counter is exact, but the
//! counters are not a consistent cut: requests served concurrently may be missing.

use core::{
    fmt,
    mem::{offset_of, size_of},
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed},
};

use driver_proxy::NtStatus;

use crate::{
    protocol::StatsInfo,
    version::DriverVersion,
    wire::{read_u16, read_u32, read_u64, write_u16, write_u32, write_u64},
};

/// `magic` of a hand-over snapshot: the bytes `"HSHO"`.
pub const HANDOVER_MAGIC: u32 = u32::from_le_bytes(*b"HSHO");
/// The snapshot format both builds speak.
pub const HANDOVER_FORMAT_VERSION: u16 = 1;
/// Size of a snapshot on the wire.
pub const HANDOVER_SIZE: usize = size_of::<HandOverSnapshot>();

/// The `size` field of a snapshot.
const HANDOVER_SIZE_FIELD: u16 = 64;

/// The sample's counters. `const`-constructible, so a front end can keep it in a `static`.
#[derive(Debug, Default)]
pub struct State {
    served_v1: AtomicU64,
    served_v2: AtomicU64,
    rejected: AtomicU64,
    worker_ticks_v1: AtomicU64,
    worker_ticks_v2: AtomicU64,
    last_worker_version: AtomicU32,
    swaps: AtomicU32,
    imported: AtomicBool,
}

impl State {
    /// A state with every counter zero.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            served_v1: AtomicU64::new(0),
            served_v2: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            worker_ticks_v1: AtomicU64::new(0),
            worker_ticks_v2: AtomicU64::new(0),
            last_worker_version: AtomicU32::new(0),
            swaps: AtomicU32::new(0),
            imported: AtomicBool::new(false),
        }
    }

    const fn served(&self, version: DriverVersion) -> &AtomicU64 {
        match version {
            DriverVersion::V1 => &self.served_v1,
            DriverVersion::V2 => &self.served_v2,
        }
    }

    const fn ticks(&self, version: DriverVersion) -> &AtomicU64 {
        match version {
            DriverVersion::V1 => &self.worker_ticks_v1,
            DriverVersion::V2 => &self.worker_ticks_v2,
        }
    }

    /// Counts one request served by `version`.
    pub fn record_served(&self, version: DriverVersion) {
        self.served(version).fetch_add(1, Relaxed);
    }

    /// Counts one rejected request.
    pub fn record_rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }

    /// Counts one worker tick run by `version`.
    pub fn record_worker_tick(&self, version: DriverVersion) {
        self.ticks(version).fetch_add(1, Relaxed);
        self.last_worker_version
            .store(version.raw().into(), Relaxed);
    }

    /// The counters as `STATS` reports them.
    #[must_use]
    pub fn stats(&self) -> StatsInfo {
        let served_v1 = self.served_v1.load(Relaxed);
        let served_v2 = self.served_v2.load(Relaxed);
        let worker_ticks_v1 = self.worker_ticks_v1.load(Relaxed);
        let worker_ticks_v2 = self.worker_ticks_v2.load(Relaxed);
        StatsInfo {
            served: served_v1.wrapping_add(served_v2),
            served_v1,
            served_v2,
            rejected: self.rejected.load(Relaxed),
            worker_ticks: worker_ticks_v1.wrapping_add(worker_ticks_v2),
            worker_ticks_v1,
            worker_ticks_v2,
            swaps: self.swaps.load(Relaxed),
            last_worker_version: self.last_worker_version.load(Relaxed),
        }
    }

    /// `RESET`: zeroes the request and tick counters and returns what they held.
    ///
    /// Each counter is swapped with zero atomically, so under concurrent requests every
    /// increment lands either in the returned values or in the counters afterwards, never
    /// in neither. `swaps` and `last_worker_version` are not counters of requests and stay.
    pub fn take_stats(&self) -> StatsInfo {
        let served_v1 = self.served_v1.swap(0, Relaxed);
        let served_v2 = self.served_v2.swap(0, Relaxed);
        let worker_ticks_v1 = self.worker_ticks_v1.swap(0, Relaxed);
        let worker_ticks_v2 = self.worker_ticks_v2.swap(0, Relaxed);
        StatsInfo {
            served: served_v1.wrapping_add(served_v2),
            served_v1,
            served_v2,
            rejected: self.rejected.swap(0, Relaxed),
            worker_ticks: worker_ticks_v1.wrapping_add(worker_ticks_v2),
            worker_ticks_v1,
            worker_ticks_v2,
            swaps: self.swaps.load(Relaxed),
            last_worker_version: self.last_worker_version.load(Relaxed),
        }
    }

    /// Exports the state for the build that takes over. `exporter` is the build doing the
    /// export (recorded in the snapshot). Leaves `self` unchanged.
    ///
    /// Exact when called in the `ProxyStalled` phase (module docs).
    #[must_use]
    pub fn export_handover(&self, exporter: DriverVersion) -> HandOverSnapshot {
        HandOverSnapshot {
            magic: HANDOVER_MAGIC,
            format_version: HANDOVER_FORMAT_VERSION,
            size: HANDOVER_SIZE_FIELD,
            exported_by: exporter.raw(),
            reserved: 0,
            swaps: self.swaps.load(Relaxed),
            served_v1: self.served_v1.load(Relaxed),
            served_v2: self.served_v2.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            worker_ticks_v1: self.worker_ticks_v1.load(Relaxed),
            worker_ticks_v2: self.worker_ticks_v2.load(Relaxed),
            last_worker_version: self.last_worker_version.load(Relaxed),
            reserved2: 0,
        }
    }

    /// [`Self::export_handover`] written to the start of `out`; returns the bytes written
    /// ([`HANDOVER_SIZE`]).
    ///
    /// # Errors
    /// [`HandOverError::BufferTooSmall`] when `out` is shorter than [`HANDOVER_SIZE`]
    /// (nothing is written).
    pub fn export_to(
        &self,
        exporter: DriverVersion,
        out: &mut [u8],
    ) -> Result<usize, HandOverError> {
        let too_small = HandOverError::BufferTooSmall {
            needed: HANDOVER_SIZE,
            actual: out.len(),
        };
        let out = out.get_mut(..HANDOVER_SIZE).ok_or(too_small)?;
        out.copy_from_slice(&self.export_handover(exporter).to_bytes());
        Ok(HANDOVER_SIZE)
    }

    /// Imports the outgoing build's snapshot: adds its counts to this state's, takes its
    /// `last_worker_version` if this state has none, and sets `swaps` to the snapshot's + 1.
    ///
    /// Call it once, in the `ProxyStalled` phase, on the incoming build's state.
    ///
    /// # Errors
    /// [`HandOverError::AlreadyImported`] if this state has already imported a snapshot;
    /// the snapshot's own validation errors ([`HandOverSnapshot::validate`]). On error the
    /// state is unchanged.
    pub fn import_handover(&self, snapshot: &HandOverSnapshot) -> Result<(), HandOverError> {
        snapshot.validate()?;
        if self
            .imported
            .compare_exchange(false, true, Relaxed, Relaxed)
            .is_err()
        {
            return Err(HandOverError::AlreadyImported);
        }
        self.served_v1.fetch_add(snapshot.served_v1, Relaxed);
        self.served_v2.fetch_add(snapshot.served_v2, Relaxed);
        self.rejected.fetch_add(snapshot.rejected, Relaxed);
        self.worker_ticks_v1
            .fetch_add(snapshot.worker_ticks_v1, Relaxed);
        self.worker_ticks_v2
            .fetch_add(snapshot.worker_ticks_v2, Relaxed);
        // Keep this state's own value if its worker already ticked; otherwise inherit.
        let _ = self.last_worker_version.compare_exchange(
            0,
            snapshot.last_worker_version,
            Relaxed,
            Relaxed,
        );
        self.swaps.store(snapshot.swaps.wrapping_add(1), Relaxed);
        Ok(())
    }

    /// [`Self::import_handover`] of the snapshot encoded in `bytes`.
    ///
    /// # Errors
    /// [`HandOverSnapshot::from_bytes`]'s and [`Self::import_handover`]'s.
    pub fn import_from(&self, bytes: &[u8]) -> Result<(), HandOverError> {
        self.import_handover(&HandOverSnapshot::from_bytes(bytes)?)
    }

    /// Whether this state has imported a snapshot.
    #[must_use]
    pub fn has_imported(&self) -> bool {
        self.imported.load(Relaxed)
    }
}

/// The hand-over record (64 bytes, `#[repr(C)]`, little-endian on the wire).
///
/// | offset | field |
/// |---|---|
/// | 0 | `magic: u32` = [`HANDOVER_MAGIC`] |
/// | 4 | `format_version: u16` = [`HANDOVER_FORMAT_VERSION`] |
/// | 6 | `size: u16` = 64 |
/// | 8 | `exported_by: u16` (1 or 2) |
/// | 10 | `reserved: u16` = 0 |
/// | 12 | `swaps: u32` |
/// | 16 | `served_v1: u64` |
/// | 24 | `served_v2: u64` |
/// | 32 | `rejected: u64` |
/// | 40 | `worker_ticks_v1: u64` |
/// | 48 | `worker_ticks_v2: u64` |
/// | 56 | `last_worker_version: u32` (0, 1 or 2) |
/// | 60 | `reserved2: u32` = 0 |
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandOverSnapshot {
    /// [`HANDOVER_MAGIC`].
    pub magic: u32,
    /// [`HANDOVER_FORMAT_VERSION`].
    pub format_version: u16,
    /// [`HANDOVER_SIZE`].
    pub size: u16,
    /// The build that exported the snapshot.
    pub exported_by: u16,
    /// Zero.
    pub reserved: u16,
    /// Hand-overs the exporting state had been through.
    pub swaps: u32,
    /// Requests served by v1.
    pub served_v1: u64,
    /// Requests served by v2.
    pub served_v2: u64,
    /// Requests rejected.
    pub rejected: u64,
    /// Worker ticks run by v1.
    pub worker_ticks_v1: u64,
    /// Worker ticks run by v2.
    pub worker_ticks_v2: u64,
    /// The build whose worker ticked last (0: none).
    pub last_worker_version: u32,
    /// Zero.
    pub reserved2: u32,
}

const _: () = {
    assert!(size_of::<HandOverSnapshot>() == 64);
    assert!(offset_of!(HandOverSnapshot, magic) == 0);
    assert!(offset_of!(HandOverSnapshot, format_version) == 4);
    assert!(offset_of!(HandOverSnapshot, size) == 6);
    assert!(offset_of!(HandOverSnapshot, exported_by) == 8);
    assert!(offset_of!(HandOverSnapshot, reserved) == 10);
    assert!(offset_of!(HandOverSnapshot, swaps) == 12);
    assert!(offset_of!(HandOverSnapshot, served_v1) == 16);
    assert!(offset_of!(HandOverSnapshot, served_v2) == 24);
    assert!(offset_of!(HandOverSnapshot, rejected) == 32);
    assert!(offset_of!(HandOverSnapshot, worker_ticks_v1) == 40);
    assert!(offset_of!(HandOverSnapshot, worker_ticks_v2) == 48);
    assert!(offset_of!(HandOverSnapshot, last_worker_version) == 56);
    assert!(offset_of!(HandOverSnapshot, reserved2) == 60);
    assert!(HANDOVER_SIZE == HANDOVER_SIZE_FIELD as usize);
};

impl HandOverSnapshot {
    /// The wire encoding.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; HANDOVER_SIZE] {
        let mut out = [0u8; HANDOVER_SIZE];
        // Every offset is inside the 64 bytes (asserted above), so no write is skipped.
        let _ = self.write(&mut out);
        out
    }

    fn write(&self, out: &mut [u8; HANDOVER_SIZE]) -> Option<()> {
        write_u32(out, offset_of!(Self, magic), self.magic)?;
        write_u16(out, offset_of!(Self, format_version), self.format_version)?;
        write_u16(out, offset_of!(Self, size), self.size)?;
        write_u16(out, offset_of!(Self, exported_by), self.exported_by)?;
        write_u16(out, offset_of!(Self, reserved), self.reserved)?;
        write_u32(out, offset_of!(Self, swaps), self.swaps)?;
        write_u64(out, offset_of!(Self, served_v1), self.served_v1)?;
        write_u64(out, offset_of!(Self, served_v2), self.served_v2)?;
        write_u64(out, offset_of!(Self, rejected), self.rejected)?;
        write_u64(out, offset_of!(Self, worker_ticks_v1), self.worker_ticks_v1)?;
        write_u64(out, offset_of!(Self, worker_ticks_v2), self.worker_ticks_v2)?;
        write_u32(
            out,
            offset_of!(Self, last_worker_version),
            self.last_worker_version,
        )?;
        write_u32(out, offset_of!(Self, reserved2), self.reserved2)
    }

    /// Decodes and validates a snapshot from exactly [`HANDOVER_SIZE`] bytes.
    ///
    /// # Errors
    /// [`HandOverError::BadSize`] if `bytes` is not [`HANDOVER_SIZE`] long; then
    /// [`Self::validate`]'s errors.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HandOverError> {
        let bad_size = HandOverError::BadSize {
            expected: HANDOVER_SIZE,
            actual: bytes.len(),
        };
        if bytes.len() != HANDOVER_SIZE {
            return Err(bad_size);
        }
        let read = || {
            Some(Self {
                magic: read_u32(bytes, offset_of!(Self, magic))?,
                format_version: read_u16(bytes, offset_of!(Self, format_version))?,
                size: read_u16(bytes, offset_of!(Self, size))?,
                exported_by: read_u16(bytes, offset_of!(Self, exported_by))?,
                reserved: read_u16(bytes, offset_of!(Self, reserved))?,
                swaps: read_u32(bytes, offset_of!(Self, swaps))?,
                served_v1: read_u64(bytes, offset_of!(Self, served_v1))?,
                served_v2: read_u64(bytes, offset_of!(Self, served_v2))?,
                rejected: read_u64(bytes, offset_of!(Self, rejected))?,
                worker_ticks_v1: read_u64(bytes, offset_of!(Self, worker_ticks_v1))?,
                worker_ticks_v2: read_u64(bytes, offset_of!(Self, worker_ticks_v2))?,
                last_worker_version: read_u32(bytes, offset_of!(Self, last_worker_version))?,
                reserved2: read_u32(bytes, offset_of!(Self, reserved2))?,
            })
        };
        let snapshot = read().ok_or(bad_size)?;
        snapshot.validate()?;
        Ok(snapshot)
    }

    /// Checks every field.
    ///
    /// # Errors
    /// In this order: [`HandOverError::BadMagic`]; [`HandOverError::FormatMismatch`] for
    /// another `format_version`; [`HandOverError::BadSize`] for a `size` field other than
    /// [`HANDOVER_SIZE`]; [`HandOverError::BadField`] for an unknown `exported_by` or
    /// `last_worker_version` or non-zero reserved fields.
    pub fn validate(&self) -> Result<(), HandOverError> {
        if self.magic != HANDOVER_MAGIC {
            return Err(HandOverError::BadMagic(self.magic));
        }
        if self.format_version != HANDOVER_FORMAT_VERSION {
            return Err(HandOverError::FormatMismatch(self.format_version));
        }
        if usize::from(self.size) != HANDOVER_SIZE {
            return Err(HandOverError::BadSize {
                expected: HANDOVER_SIZE,
                actual: self.size.into(),
            });
        }
        if DriverVersion::from_raw(self.exported_by).is_none() {
            return Err(HandOverError::BadField("exported_by"));
        }
        let last_ok = self.last_worker_version == 0
            || u16::try_from(self.last_worker_version)
                .ok()
                .and_then(DriverVersion::from_raw)
                .is_some();
        if !last_ok {
            return Err(HandOverError::BadField("last_worker_version"));
        }
        if self.reserved != 0 || self.reserved2 != 0 {
            return Err(HandOverError::BadField("reserved"));
        }
        Ok(())
    }

    /// The build that exported it (`None` if the field is invalid).
    #[must_use]
    pub const fn exported_by(&self) -> Option<DriverVersion> {
        DriverVersion::from_raw(self.exported_by)
    }

    /// Requests served, all builds.
    #[must_use]
    pub const fn served(&self) -> u64 {
        self.served_v1.wrapping_add(self.served_v2)
    }
}

/// Why a hand-over failed; [`Self::status`] is what the phased callback returns (a failure
/// makes the kernel roll the swap back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandOverError {
    /// `magic` is not [`HANDOVER_MAGIC`]: `STATUS_INVALID_PARAMETER`.
    BadMagic(u32),
    /// Another snapshot format: `STATUS_REVISION_MISMATCH`.
    FormatMismatch(u16),
    /// The bytes or the `size` field are not [`HANDOVER_SIZE`]: `STATUS_INVALID_BUFFER_SIZE`.
    BadSize {
        /// [`HANDOVER_SIZE`].
        expected: usize,
        /// Size found.
        actual: usize,
    },
    /// A field out of range: `STATUS_INVALID_PARAMETER`.
    BadField(&'static str),
    /// The export buffer is too small: `STATUS_BUFFER_TOO_SMALL`.
    BufferTooSmall {
        /// [`HANDOVER_SIZE`].
        needed: usize,
        /// Bytes available.
        actual: usize,
    },
    /// This state has already imported a snapshot: `STATUS_INVALID_DEVICE_STATE`.
    AlreadyImported,
}

impl HandOverError {
    /// The NTSTATUS for this failure.
    #[must_use]
    pub const fn status(self) -> NtStatus {
        match self {
            Self::BadMagic(_) | Self::BadField(_) => NtStatus::INVALID_PARAMETER,
            Self::FormatMismatch(_) => NtStatus::REVISION_MISMATCH,
            Self::BadSize { .. } => NtStatus::INVALID_BUFFER_SIZE,
            Self::BufferTooSmall { .. } => NtStatus::BUFFER_TOO_SMALL,
            Self::AlreadyImported => NtStatus::INVALID_DEVICE_STATE,
        }
    }
}

impl fmt::Display for HandOverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadMagic(magic) => write!(f, "hand-over snapshot has bad magic {magic:#010X}"),
            Self::FormatMismatch(version) => write!(
                f,
                "hand-over snapshot format {version}, expected {HANDOVER_FORMAT_VERSION}"
            ),
            Self::BadSize { expected, actual } => {
                write!(
                    f,
                    "hand-over snapshot of {actual} bytes, expected {expected}"
                )
            }
            Self::BadField(field) => write!(f, "hand-over snapshot field {field} is out of range"),
            Self::BufferTooSmall { needed, actual } => {
                write!(f, "hand-over buffer of {actual} bytes, {needed} needed")
            }
            Self::AlreadyImported => f.write_str("this state has already imported a hand-over"),
        }?;
        write!(f, " ({})", self.status())
    }
}

impl core::error::Error for HandOverError {}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::{sync::Arc, thread, vec::Vec};

    use super::*;

    fn busy_state() -> State {
        let state = State::new();
        for _ in 0..5 {
            state.record_served(DriverVersion::V1);
        }
        state.record_served(DriverVersion::V2);
        state.record_rejected();
        state.record_rejected();
        for _ in 0..3 {
            state.record_worker_tick(DriverVersion::V1);
        }
        state
    }

    #[test]
    fn counters_add_up_in_stats() {
        let stats = busy_state().stats();
        assert_eq!((stats.served, stats.served_v1, stats.served_v2), (6, 5, 1));
        assert_eq!(stats.rejected, 2);
        assert_eq!(
            (
                stats.worker_ticks,
                stats.worker_ticks_v1,
                stats.worker_ticks_v2
            ),
            (3, 3, 0)
        );
        assert_eq!(stats.last_worker_version(), Some(DriverVersion::V1));
        assert_eq!(stats.swaps, 0);
        assert_eq!(stats.validate(), Ok(()));
    }

    #[test]
    fn snapshot_bytes_follow_the_documented_layout() {
        let snapshot = busy_state().export_handover(DriverVersion::V1);
        let bytes = snapshot.to_bytes();
        assert_eq!(&bytes[0..4], b"HSHO");
        assert_eq!(bytes[4..6], 1u16.to_le_bytes());
        assert_eq!(bytes[6..8], 64u16.to_le_bytes());
        assert_eq!(bytes[8..10], 1u16.to_le_bytes());
        assert_eq!(bytes[16..24], 5u64.to_le_bytes());
        assert_eq!(bytes[24..32], 1u64.to_le_bytes());
        assert_eq!(bytes[32..40], 2u64.to_le_bytes());
        assert_eq!(bytes[40..48], 3u64.to_le_bytes());
        assert_eq!(bytes[56..60], 1u32.to_le_bytes());
        assert_eq!(HandOverSnapshot::from_bytes(&bytes), Ok(snapshot));
    }

    #[test]
    fn hand_over_loses_no_count() {
        let v1 = busy_state();
        let before = v1.stats();
        let mut buffer = [0u8; 100];
        assert_eq!(
            v1.export_to(DriverVersion::V1, &mut buffer),
            Ok(HANDOVER_SIZE)
        );
        assert_eq!(
            v1.stats(),
            before,
            "export leaves the outgoing state unchanged"
        );

        let v2 = State::new();
        v2.import_from(&buffer[..HANDOVER_SIZE]).unwrap();
        let inherited = v2.stats();
        assert_eq!(inherited.served, before.served);
        assert_eq!(inherited.served_v1, before.served_v1);
        assert_eq!(inherited.rejected, before.rejected);
        assert_eq!(inherited.worker_ticks, before.worker_ticks);
        assert_eq!(inherited.last_worker_version, before.last_worker_version);
        assert_eq!(inherited.swaps, 1);

        v2.record_served(DriverVersion::V2);
        assert_eq!(v2.stats().served, before.served + 1);
        assert_eq!(v2.stats().served_v2, before.served_v2 + 1);
    }

    #[test]
    fn swaps_chain_v1_v2_v1() {
        let first = busy_state();
        let second = State::new();
        second
            .import_handover(&first.export_handover(DriverVersion::V1))
            .unwrap();
        second.record_served(DriverVersion::V2);
        second.record_worker_tick(DriverVersion::V2);
        let third = State::new();
        third
            .import_handover(&second.export_handover(DriverVersion::V2))
            .unwrap();
        let stats = third.stats();
        assert_eq!((stats.served_v1, stats.served_v2), (5, 2));
        assert_eq!((stats.worker_ticks_v1, stats.worker_ticks_v2), (3, 1));
        assert_eq!(stats.last_worker_version(), Some(DriverVersion::V2));
        assert_eq!(stats.swaps, 2);
    }

    #[test]
    fn a_state_imports_once() {
        let source = busy_state().export_handover(DriverVersion::V1);
        let target = State::new();
        target.import_handover(&source).unwrap();
        let after_first = target.stats();
        assert_eq!(
            target.import_handover(&source),
            Err(HandOverError::AlreadyImported)
        );
        assert_eq!(
            HandOverError::AlreadyImported.status(),
            NtStatus::INVALID_DEVICE_STATE
        );
        assert_eq!(
            target.stats(),
            after_first,
            "a refused import changes nothing"
        );
    }

    #[test]
    fn import_adds_to_counts_already_present() {
        let target = State::new();
        target.record_served(DriverVersion::V2);
        target.record_worker_tick(DriverVersion::V2);
        target
            .import_handover(&busy_state().export_handover(DriverVersion::V1))
            .unwrap();
        let stats = target.stats();
        assert_eq!((stats.served_v1, stats.served_v2), (5, 2));
        assert_eq!(
            stats.last_worker_version(),
            Some(DriverVersion::V2),
            "own value kept"
        );
    }

    #[test]
    fn malformed_snapshots_are_refused_with_their_status() {
        let good = busy_state().export_handover(DriverVersion::V1).to_bytes();
        let patched = |at: usize, value: u8| {
            let mut bytes = good;
            bytes[at] = value;
            bytes
        };
        let cases: Vec<(Vec<u8>, HandOverError, NtStatus)> = std::vec![
            (
                good[..63].to_vec(),
                HandOverError::BadSize {
                    expected: 64,
                    actual: 63
                },
                NtStatus::INVALID_BUFFER_SIZE
            ),
            (
                [&good[..], &[0]].concat(),
                HandOverError::BadSize {
                    expected: 64,
                    actual: 65
                },
                NtStatus::INVALID_BUFFER_SIZE
            ),
            (
                patched(0, b'X').to_vec(),
                HandOverError::BadMagic(u32::from_le_bytes(*b"XSHO")),
                NtStatus::INVALID_PARAMETER
            ),
            (
                patched(4, 2).to_vec(),
                HandOverError::FormatMismatch(2),
                NtStatus::REVISION_MISMATCH
            ),
            (
                patched(6, 65).to_vec(),
                HandOverError::BadSize {
                    expected: 64,
                    actual: 65
                },
                NtStatus::INVALID_BUFFER_SIZE
            ),
            (
                patched(8, 3).to_vec(),
                HandOverError::BadField("exported_by"),
                NtStatus::INVALID_PARAMETER
            ),
            (
                patched(10, 1).to_vec(),
                HandOverError::BadField("reserved"),
                NtStatus::INVALID_PARAMETER
            ),
            (
                patched(56, 9).to_vec(),
                HandOverError::BadField("last_worker_version"),
                NtStatus::INVALID_PARAMETER
            ),
            (
                patched(63, 1).to_vec(),
                HandOverError::BadField("reserved"),
                NtStatus::INVALID_PARAMETER
            ),
        ];
        for (bytes, error, status) in cases {
            let target = State::new();
            assert_eq!(target.import_from(&bytes), Err(error));
            assert_eq!(error.status(), status);
            assert!(
                !target.has_imported(),
                "a refused snapshot does not use up the import"
            );
            assert_eq!(target.stats(), StatsInfo::default());
        }
        let mut small = [0u8; 10];
        assert_eq!(
            busy_state().export_to(DriverVersion::V1, &mut small),
            Err(HandOverError::BufferTooSmall {
                needed: 64,
                actual: 10
            })
        );
    }

    /// RESET under concurrent requests: every increment ends up either in a RESET's report
    /// or in the final counters.
    #[test]
    fn reset_under_load_loses_no_increment() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 20_000;
        let state = Arc::new(State::new());
        let workers: Vec<_> = (0..THREADS)
            .map(|i| {
                let state = Arc::clone(&state);
                thread::spawn(move || {
                    let version = if i % 2 == 0 {
                        DriverVersion::V1
                    } else {
                        DriverVersion::V2
                    };
                    for _ in 0..PER_THREAD {
                        state.record_served(version);
                    }
                })
            })
            .collect();
        let mut reported = 0;
        while !workers.iter().all(thread::JoinHandle::is_finished) {
            reported += state.take_stats().served;
        }
        for worker in workers {
            worker.join().unwrap();
        }
        reported += state.take_stats().served;
        assert_eq!(reported, THREADS * PER_THREAD);
        assert_eq!(state.stats().served, 0);
    }
}
