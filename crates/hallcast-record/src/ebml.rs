//! The few EBML primitives a Matroska writer needs (RFC 8794): element ids, size vints,
//! unsigned / signed / float / string / binary elements and masters of known size.
//!
//! Sizes of masters written here are always known (the children are built first); the
//! muxer writes the Segment and its Clusters with the 8-byte "unknown" size and patches
//! it in place once known (see `mkv.rs`).

/// The 8-byte size meaning "unknown" (all value bits set).
pub const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

/// Appends an element id (ids carry their own length marker: written big-endian, without
/// leading zero bytes).
pub fn id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    out.extend_from_slice(&bytes[skip..]);
}

/// Appends a size as the shortest vint (1 to 8 bytes) that holds it. The all-ones value of
/// each length is reserved for "unknown", so it moves to the next length.
pub fn size(out: &mut Vec<u8>, n: u64) {
    let mut len = 1;
    while len < 8 && n >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    size_fixed(out, n, len);
}

/// Appends a size as a vint of exactly `len` bytes (`n` must fit in `7 * len` bits).
pub fn size_fixed(out: &mut Vec<u8>, n: u64, len: usize) {
    let marked = n | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// An 8-byte size vint, for sizes patched in place.
pub fn size8(n: u64) -> [u8; 8] {
    let mut v = Vec::with_capacity(8);
    size_fixed(&mut v, n.min((1u64 << 56) - 2), 8);
    let mut a = [0u8; 8];
    a.copy_from_slice(&v);
    a
}

pub fn binary(out: &mut Vec<u8>, element: u32, data: &[u8]) {
    id(out, element);
    size(out, data.len() as u64);
    out.extend_from_slice(data);
}

pub fn uint(out: &mut Vec<u8>, element: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    binary(out, element, &bytes[skip..]);
}

/// An unsigned integer always written on 8 bytes (an element patched later keeps its size).
pub fn uint8(out: &mut Vec<u8>, element: u32, v: u64) {
    binary(out, element, &v.to_be_bytes());
}

pub fn int(out: &mut Vec<u8>, element: u32, v: i64) {
    binary(out, element, &v.to_be_bytes());
}

pub fn float(out: &mut Vec<u8>, element: u32, v: f64) {
    binary(out, element, &v.to_be_bytes());
}

pub fn string(out: &mut Vec<u8>, element: u32, s: &str) {
    binary(out, element, s.as_bytes());
}

/// A master element whose children `build` appends.
pub fn master(out: &mut Vec<u8>, element: u32, build: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    build(&mut body);
    binary(out, element, &body);
}

/// A Void element of exactly `total` bytes (at least 2), reserving room to patch later.
pub fn void(out: &mut Vec<u8>, total: usize) {
    debug_assert!(total >= 2);
    // One size byte holds up to 126; beyond that, 8.
    let (len, payload) = if total - 2 <= 126 {
        (1, total - 2)
    } else {
        (8, total - 9)
    };
    id(out, 0xEC);
    size_fixed(out, payload as u64, len);
    out.resize(out.len() + payload, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vints_are_shortest_and_skip_the_reserved_value() {
        let v = |n| {
            let mut o = vec![];
            size(&mut o, n);
            o
        };
        assert_eq!(v(0), [0x80]);
        assert_eq!(v(126), [0xfe]);
        // 127 is "unknown" on one byte.
        assert_eq!(v(127), [0x40, 0x7f]);
        assert_eq!(v(16382), [0x7f, 0xfe]);
        assert_eq!(v(16383), [0x20, 0x3f, 0xff]);
        assert_eq!(size8(5), [0x01, 0, 0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn ids_elements_and_voids() {
        let mut o = vec![];
        id(&mut o, 0x1A45DFA3);
        id(&mut o, 0xA3);
        assert_eq!(o, [0x1A, 0x45, 0xDF, 0xA3, 0xA3]);
        let mut o = vec![];
        uint(&mut o, 0xD7, 1);
        assert_eq!(o, [0xD7, 0x81, 0x01]);
        let mut o = vec![];
        uint(&mut o, 0xD7, 0);
        assert_eq!(o, [0xD7, 0x81, 0x00]);
        for total in [2, 11, 100, 128, 129, 300] {
            let mut o = vec![];
            void(&mut o, total);
            assert_eq!(o.len(), total, "void of {total}");
        }
    }
}
