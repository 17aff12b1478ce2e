//! Little-endian field access at byte offsets, without panics and without reinterpreting
//! untrusted bytes as structures: every read and write returns `None` when the field does
//! not fit the buffer.
//!
//! The offsets passed in are the `offset_of!` of the `#[repr(C)]` wire structures, whose
//! layout is asserted at compile time, so the structure definitions *are* the wire format.

/// Reads the `N` bytes at `offset`.
fn bytes<const N: usize>(buf: &[u8], offset: usize) -> Option<[u8; N]> {
    buf.get(offset..)?.first_chunk::<N>().copied()
}

/// Writes `value` at `offset`.
fn put<const N: usize>(buf: &mut [u8], offset: usize, value: [u8; N]) -> Option<()> {
    *buf.get_mut(offset..)?.first_chunk_mut::<N>()? = value;
    Some(())
}

pub(crate) fn read_u16(buf: &[u8], offset: usize) -> Option<u16> {
    bytes(buf, offset).map(u16::from_le_bytes)
}

pub(crate) fn read_u32(buf: &[u8], offset: usize) -> Option<u32> {
    bytes(buf, offset).map(u32::from_le_bytes)
}

pub(crate) fn read_u64(buf: &[u8], offset: usize) -> Option<u64> {
    bytes(buf, offset).map(u64::from_le_bytes)
}

pub(crate) fn read_array<const N: usize>(buf: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes(buf, offset)
}

pub(crate) fn write_u16(buf: &mut [u8], offset: usize, value: u16) -> Option<()> {
    put(buf, offset, value.to_le_bytes())
}

pub(crate) fn write_u32(buf: &mut [u8], offset: usize, value: u32) -> Option<()> {
    put(buf, offset, value.to_le_bytes())
}

pub(crate) fn write_u64(buf: &mut [u8], offset: usize, value: u64) -> Option<()> {
    put(buf, offset, value.to_le_bytes())
}

pub(crate) fn write_array<const N: usize>(
    buf: &mut [u8],
    offset: usize,
    value: [u8; N],
) -> Option<()> {
    put(buf, offset, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_little_endian() {
        let buf = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
        assert_eq!(read_u16(&buf, 1), Some(0x0302));
        assert_eq!(read_u32(&buf, 0), Some(0x0403_0201));
        assert_eq!(read_u64(&buf, 0), Some(0x0807_0605_0403_0201));
        let mut out = [0u8; 8];
        write_u32(&mut out, 2, 0xA1B2_C3D4).unwrap();
        assert_eq!(out, [0, 0, 0xD4, 0xC3, 0xB2, 0xA1, 0, 0]);
    }

    #[test]
    fn out_of_range_fields_are_none_not_panics() {
        let buf = [0u8; 5];
        assert_eq!(read_u32(&buf, 2), None);
        assert_eq!(read_u64(&buf, 0), None);
        assert_eq!(read_u16(&buf, usize::MAX), None);
        assert_eq!(read_array::<6>(&buf, 0), None);
        let mut out = [0u8; 3];
        assert_eq!(write_u32(&mut out, 0, 1), None);
        assert_eq!(write_u16(&mut out, 2, 1), None);
        assert_eq!(write_u64(&mut out, 9, 1), None);
        assert_eq!(out, [0; 3], "a failed write changes nothing");
    }
}
