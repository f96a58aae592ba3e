//! Just enough STUN to route a datagram from an unknown address to its session: the
//! local ufrag in the USERNAME attribute of a binding request. Everything else about
//! STUN is the WebRTC stack's business.

/// Whether `buf` is a STUN message (RFC 7983: first byte 0–3, then the magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= 20 && buf[0] < 4 && buf[4..8] == [0x21, 0x12, 0xa4, 0x42]
}

/// The FINGERPRINT value (RFC 5389 §15.5) of a STUN message whose bytes up to the
/// FINGERPRINT attribute are `msg`: CRC-32 (IEEE) XOR `0x5354554e`. For tests that build or
/// edit messages a parser must accept.
pub fn fingerprint(msg: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in msg {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc ^ 0x5354_554e
}

/// Returns the local (relay-side) ufrag of a STUN binding request, if `buf` is one.
pub fn local_ufrag(buf: &[u8]) -> Option<&str> {
    // Header: type(2) length(2) magic cookie(4) transaction id(12).
    if buf.len() < 20 || buf[0] & 0xc0 != 0 || buf[4..8] != [0x21, 0x12, 0xa4, 0x42] {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let mut attrs = buf.get(20..20 + len)?;
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = usize::from(u16::from_be_bytes([attrs[2], attrs[3]]));
        let value = attrs.get(4..4 + alen)?;
        if typ == 0x0006 {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        let padded = (alen + 3) & !3;
        attrs = attrs.get(4 + padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(username: &[u8]) -> Vec<u8> {
        let mut attrs = vec![0x80, 0x2a, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]; // ICE-CONTROLLING
        attrs.extend_from_slice(&[0x00, 0x06, 0, username.len() as u8]);
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut b = vec![0x00, 0x01];
        b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        b.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        b.extend_from_slice(&[7; 12]);
        b.extend_from_slice(&attrs);
        b
    }

    #[test]
    fn finds_local_ufrag() {
        assert_eq!(local_ufrag(&request(b"srvA:cli")), Some("srvA"));
    }

    #[test]
    fn fingerprint_is_rfc_5389s_crc() {
        // CRC-32's check value ("123456789" → 0xcbf43926), XORed with "STUN".
        assert_eq!(fingerprint(b"123456789"), 0xcbf4_3926 ^ 0x5354_554e);
    }

    #[test]
    fn tells_stun_from_media() {
        assert!(is_stun(&request(b"srvA:cli")));
        let mut rtp = request(b"srvA:cli");
        rtp[0] = 0x80;
        assert!(!is_stun(&rtp));
        assert!(!is_stun(&[0, 1, 0, 0]));
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(local_ufrag(&[0x80, 1, 2, 3]), None);
        let mut r = request(b"srvA:cli");
        r[3] = 200; // length past the end
        assert_eq!(local_ufrag(&r), None);
        assert_eq!(local_ufrag(&[]), None);
    }
}
