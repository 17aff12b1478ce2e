//! The scratch pad's protocol: names, control codes, the `INFO` answer and the checksum,
//! shared by the driver (`src/main.rs`) and its tests (`tests/`).
//!
//! The device `\Device\Scratchpad` (link `\DosDevices\Scratchpad`) holds [`CAPACITY`] bytes.
//!
//! | request | transfer | what |
//! |---|---|---|
//! | `IRP_MJ_WRITE` | direct I/O (an MDL of the caller's buffer) | stores the bytes at `ByteOffset`; past the end: `STATUS_DISK_FULL`, nothing stored; queues the flush work item |
//! | `IRP_MJ_READ` | direct I/O | the bytes at `ByteOffset`, as many as there are; at or past the end: `STATUS_END_OF_FILE` |
//! | [`IOCTL_INFO`] | `METHOD_BUFFERED` | an [`Info`] ([`INFO_SIZE`] bytes) |
//! | [`IOCTL_LOAD`] | `METHOD_IN_DIRECT` | input: a `u32` offset; the output buffer (read by the driver through its MDL) is stored there; `Information` = bytes stored |
//! | [`IOCTL_DUMP`] | `METHOD_OUT_DIRECT` | input: a `u32` offset; the output buffer is filled from there through its MDL; `Information` = bytes copied |
//! | [`IOCTL_CHECKSUM`] | `METHOD_NEITHER` | input (`Type3InputBuffer`, probed): bytes, or nothing for the whole store; output (`UserBuffer`, probed): a [`Checksum`] ([`CHECKSUM_SIZE`] bytes) |
//! | [`IOCTL_FLUSH`] | `METHOD_BUFFERED` | queues the flush work item now (`STATUS_SUCCESS`), or says it is queued already (`STATUS_PENDING` is never returned: `Information` 1) |
//!
//! Anything else: `STATUS_INVALID_DEVICE_REQUEST`. The flush work item (a hot-swappable
//! endpoint of its own) computes the store's checksum and counts itself.

#![no_std]

/// `FILE_DEVICE_UNKNOWN`.
pub const DEVICE_TYPE: u32 = 0x22;
/// The device's name.
pub const DEVICE_NAME: &str = "\\Device\\Scratchpad";
/// Its symbolic link.
pub const LINK_NAME: &str = "\\DosDevices\\Scratchpad";
/// What a client opens.
pub const WIN32_PATH: &str = "\\\\.\\Scratchpad";
/// The service name the tests load it as.
pub const SERVICE: &str = "Scratchpad";
/// Bytes the pad holds.
pub const CAPACITY: usize = 4096;
/// Pool tag of the store (`'SPdt'`).
pub const STORE_TAG: u32 = u32::from_le_bytes(*b"SPdt");
/// Pool tag of the block the test image of feature `test-leak-pool` leaks (`'Leak'`).
pub const LEAK_TAG: u32 = u32::from_le_bytes(*b"Leak");
/// Bytes of that block.
pub const LEAK_SIZE: usize = 32;

/// `CTL_CODE(DEVICE_TYPE, function, method, FILE_ANY_ACCESS)`.
const fn ctl(function: u32, method: u32) -> u32 {
    (DEVICE_TYPE << 16) | (function << 2) | method
}

/// `METHOD_BUFFERED`.
pub const METHOD_BUFFERED: u32 = 0;
/// `METHOD_IN_DIRECT`.
pub const METHOD_IN_DIRECT: u32 = 1;
/// `METHOD_OUT_DIRECT`.
pub const METHOD_OUT_DIRECT: u32 = 2;
/// `METHOD_NEITHER`.
pub const METHOD_NEITHER: u32 = 3;

/// The pad's counters and version ([`Info`]).
pub const IOCTL_INFO: u32 = ctl(0x800, METHOD_BUFFERED);
/// Store the direct buffer at an offset.
pub const IOCTL_LOAD: u32 = ctl(0x801, METHOD_IN_DIRECT);
/// Copy from an offset into the direct buffer.
pub const IOCTL_DUMP: u32 = ctl(0x802, METHOD_OUT_DIRECT);
/// Checksum of bytes, or of the store.
pub const IOCTL_CHECKSUM: u32 = ctl(0x803, METHOD_NEITHER);
/// Queue the flush work item.
pub const IOCTL_FLUSH: u32 = ctl(0x804, METHOD_BUFFERED);

/// `'SPad'`: the first field of [`Info`], and of the device extension.
pub const MAGIC: u32 = u32::from_le_bytes(*b"SPad");

/// The version this build of the driver is.
pub const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

/// The answer to [`IOCTL_INFO`]: little-endian `u32`s then `u64`s, [`INFO_SIZE`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Info {
    /// [`MAGIC`].
    pub magic: u32,
    /// The version of the image that answered.
    pub version: u32,
    /// Swaps the device has been through.
    pub swaps: u32,
    /// The version of the image that ran the last flush (0: none yet).
    pub last_flush_version: u32,
    /// Reads, writes and device controls served (this `INFO` included).
    pub requests: u64,
    /// Reads served.
    pub reads: u64,
    /// Writes served.
    pub writes: u64,
    /// Flushes run (work item routines).
    pub flushes: u64,
    /// The checksum the last flush computed.
    pub flushed_checksum: u64,
}

/// Bytes of an [`Info`].
pub const INFO_SIZE: usize = 4 * 4 + 5 * 8;

impl Info {
    /// The wire form.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; INFO_SIZE] {
        let mut bytes = [0u8; INFO_SIZE];
        let words = [
            self.magic,
            self.version,
            self.swaps,
            self.last_flush_version,
        ];
        for (chunk, word) in bytes[..16].chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        let longs = [
            self.requests,
            self.reads,
            self.writes,
            self.flushes,
            self.flushed_checksum,
        ];
        for (chunk, long) in bytes[16..].chunks_exact_mut(8).zip(longs) {
            chunk.copy_from_slice(&long.to_le_bytes());
        }
        bytes
    }

    /// The wire form read back; `None` when `bytes` is not [`INFO_SIZE`] long.
    #[must_use]
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != INFO_SIZE {
            return None;
        }
        let word = |i: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[i * 4..i * 4 + 4]);
            u32::from_le_bytes(b)
        };
        let long = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[16 + i * 8..16 + i * 8 + 8]);
            u64::from_le_bytes(b)
        };
        Some(Self {
            magic: word(0),
            version: word(1),
            swaps: word(2),
            last_flush_version: word(3),
            requests: long(0),
            reads: long(1),
            writes: long(2),
            flushes: long(3),
            flushed_checksum: long(4),
        })
    }
}

/// The answer to [`IOCTL_CHECKSUM`]: the checksum, the version that computed it, the number
/// of bytes; little-endian, [`CHECKSUM_SIZE`] bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Checksum {
    /// [`checksum`] of the bytes.
    pub value: u64,
    /// The version of the image that answered.
    pub version: u32,
    /// How many bytes.
    pub length: u32,
}

/// Bytes of a [`Checksum`].
pub const CHECKSUM_SIZE: usize = 16;

impl Checksum {
    /// The wire form.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; CHECKSUM_SIZE] {
        let mut bytes = [0u8; CHECKSUM_SIZE];
        bytes[..8].copy_from_slice(&self.value.to_le_bytes());
        bytes[8..12].copy_from_slice(&self.version.to_le_bytes());
        bytes[12..].copy_from_slice(&self.length.to_le_bytes());
        bytes
    }

    /// The wire form read back.
    #[must_use]
    pub fn from_bytes(bytes: &[u8; CHECKSUM_SIZE]) -> Self {
        let mut value = [0u8; 8];
        value.copy_from_slice(&bytes[..8]);
        let mut version = [0u8; 4];
        version.copy_from_slice(&bytes[8..12]);
        let mut length = [0u8; 4];
        length.copy_from_slice(&bytes[12..]);
        Self {
            value: u64::from_le_bytes(value),
            version: u32::from_le_bytes(version),
            length: u32::from_le_bytes(length),
        }
    }
}

/// `STATUS_END_OF_FILE`: a read at or past the end of the store.
pub const STATUS_END_OF_FILE: i32 = 0xC000_0011_u32.cast_signed();
/// `STATUS_DISK_FULL`: a write or a `LOAD` past the end of the store.
pub const STATUS_DISK_FULL: i32 = 0xC000_007F_u32.cast_signed();

/// The checksum of the protocol: 64-bit FNV-1a.
#[must_use]
pub fn checksum(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xCBF2_9CE4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01B3);
    }
    hash
}
