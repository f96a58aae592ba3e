//! str0m's ninth hallcast patch (`vendor/str0m/PATCHES.md`): `Mid` and `Rid` deref to the
//! same text as upstream's `str::trim` of their bytes, trimmed by bytes for ASCII ids.

use str0m::media::{Mid, Rid};

fn upstream_mid(a: [u8; 16]) -> String {
    std::str::from_utf8(&a).unwrap().trim().to_string()
}

fn upstream_rid(a: [u8; 8]) -> String {
    std::str::from_utf8(&a).unwrap().trim().to_string()
}

#[test]
fn ids_deref_as_str_trim_did() {
    let mids: [&[u8; 16]; 7] = [
        b"0               ",
        b"video           ",
        b"  a b           ",
        b"\x0b\t\n\x0c\r x \r\n\t\x0b\x0c   ",
        b"                ",
        b"abcdefghijklmnop",
        b" \xc2\xa0x \xc2\xa0         ",
    ];
    for m in mids {
        assert_eq!(&*Mid::from_array(*m), upstream_mid(*m), "{m:?}");
    }
    let rids: [&[u8; 8]; 4] = [b"h       ", b" q r    ", b"        ", b"\x0bf\x0c     "];
    for r in rids {
        assert_eq!(&*Rid::from_array(*r), upstream_rid(*r), "{r:?}");
    }
    // As the relay makes and reads them.
    assert_eq!(&*Mid::from("1"), "1");
    assert_eq!(&*Rid::from("low"), "low");
}
