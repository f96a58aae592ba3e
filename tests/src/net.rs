//! Loopback-only network helpers: a free UDP port, and garbage datagrams for the media port.

use std::net::UdpSocket;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

/// A UDP port on 127.0.0.1 that was free a moment ago (bound, read, released).
pub fn free_udp_port() -> Result<u16> {
    let socket = UdpSocket::bind("127.0.0.1:0").context("cannot bind a UDP socket on 127.0.0.1")?;
    Ok(socket.local_addr()?.port())
}

/// A small xorshift generator: varied test data without a dependency. Not for secrets.
pub struct Prng(u64);

impl Prng {
    pub fn new(seed: u64) -> Prng {
        Prng(seed | 1)
    }

    /// Seeded from the clock and the pid, so two offers never share ICE credentials.
    pub fn seeded() -> Prng {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        let mut p = Prng::new(nanos ^ (u64::from(std::process::id()) << 32));
        for _ in 0..4 {
            p.next_u64();
        }
        p
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// `n` characters from the ICE character set.
    pub fn token(&mut self, n: usize) -> String {
        const SET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        (0..n)
            .map(|_| SET[(self.next_u64() % SET.len() as u64) as usize] as char)
            .collect()
    }
}

/// What a garbage datagram imitates.
#[derive(Clone, Copy, Debug)]
enum Garbage {
    Empty,
    OneByte,
    Random,
    Jumbo,
    /// A STUN binding request for a username nobody has, with a bogus integrity attribute.
    Stun,
    /// A STUN header that claims more attributes than it carries.
    TruncatedStun,
    /// An RTP packet with a random SSRC.
    Rtp,
    /// An RTCP sender report with a random SSRC.
    Rtcp,
    /// A DTLS handshake record that stops half-way.
    Dtls,
}

const KINDS: [Garbage; 9] = [
    Garbage::Empty,
    Garbage::OneByte,
    Garbage::Random,
    Garbage::Jumbo,
    Garbage::Stun,
    Garbage::TruncatedStun,
    Garbage::Rtp,
    Garbage::Rtcp,
    Garbage::Dtls,
];

fn datagram(kind: Garbage, rng: &mut Prng, seq: u16) -> Vec<u8> {
    match kind {
        Garbage::Empty => Vec::new(),
        Garbage::OneByte => vec![rng.next_u64() as u8],
        Garbage::Random => {
            let len = 2 + (rng.next_u64() % 1200) as usize;
            rng.bytes(len)
        }
        Garbage::Jumbo => {
            let len = 1500 + (rng.next_u64() % 7000) as usize;
            rng.bytes(len)
        }
        Garbage::Stun => {
            let username = format!("{}:{}", rng.token(8), rng.token(4));
            let mut attrs = Vec::new();
            // USERNAME
            attrs.extend_from_slice(&0x0006u16.to_be_bytes());
            attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
            attrs.extend_from_slice(username.as_bytes());
            while attrs.len() % 4 != 0 {
                attrs.push(0);
            }
            // MESSAGE-INTEGRITY (20 random bytes: wrong by construction)
            attrs.extend_from_slice(&0x0008u16.to_be_bytes());
            attrs.extend_from_slice(&20u16.to_be_bytes());
            attrs.extend(rng.bytes(20));
            let mut p = Vec::new();
            p.extend_from_slice(&0x0001u16.to_be_bytes());
            p.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
            p.extend_from_slice(&0x2112_A442u32.to_be_bytes());
            p.extend(rng.bytes(12));
            p.extend(attrs);
            p
        }
        Garbage::TruncatedStun => {
            let mut p = Vec::new();
            p.extend_from_slice(&0x0001u16.to_be_bytes());
            p.extend_from_slice(&400u16.to_be_bytes());
            p.extend_from_slice(&0x2112_A442u32.to_be_bytes());
            p.extend(rng.bytes(12 + 8));
            p
        }
        Garbage::Rtp => {
            let mut p = vec![0x80, [96u8, 102, 111][(rng.next_u64() % 3) as usize]];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
            p.extend_from_slice(&(rng.next_u64() as u32).to_be_bytes());
            let len = (rng.next_u64() % 1100) as usize;
            p.extend(rng.bytes(len));
            p
        }
        Garbage::Rtcp => {
            let mut p = vec![0x80, 200, 0, 6];
            p.extend(rng.bytes(24));
            p
        }
        Garbage::Dtls => {
            let mut p = vec![0x16, 0xfe, 0xfd, 0, 0];
            p.extend(rng.bytes(6));
            p.extend_from_slice(&600u16.to_be_bytes());
            p.push(1);
            p.extend(rng.bytes(40));
            p
        }
    }
}

/// Sends `n` garbage datagrams of every kind to 127.0.0.1:`port`, from two sockets, paced at
/// about 1000 per second. Returns how many were sent.
pub fn spray_garbage(port: u16, n: usize) -> Result<usize> {
    let sockets = [
        UdpSocket::bind("127.0.0.1:0")?,
        UdpSocket::bind("127.0.0.1:0")?,
    ];
    let mut rng = Prng::new(0x9e37_79b9_7f4a_7c15);
    let mut sent = 0;
    for i in 0..n {
        let kind = KINDS[i % KINDS.len()];
        let payload = datagram(kind, &mut rng, i as u16);
        if sockets[i % 2]
            .send_to(&payload, ("127.0.0.1", port))
            .is_ok()
        {
            sent += 1;
        }
        if i % 50 == 49 {
            thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(sent)
}

/// A well-formed ICE binding request — USERNAME, PRIORITY, ICE-CONTROLLING, a
/// MESSAGE-INTEGRITY of random bytes, a correct FINGERPRINT — from someone who knows a
/// session's username fragment but not its password.
pub fn stun_binding_request(username: &str, rng: &mut Prng) -> Vec<u8> {
    fn attr(out: &mut Vec<u8>, typ: u16, value: &[u8]) {
        out.extend_from_slice(&typ.to_be_bytes());
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
        out.extend_from_slice(value);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut attrs = Vec::new();
    attr(&mut attrs, 0x0006, username.as_bytes());
    attr(&mut attrs, 0x0024, &(rng.next_u64() as u32).to_be_bytes());
    attr(&mut attrs, 0x802a, &rng.next_u64().to_be_bytes());
    attr(&mut attrs, 0x0008, &rng.bytes(20));
    let mut m = vec![0x00, 0x01];
    m.extend_from_slice(&((attrs.len() + 8) as u16).to_be_bytes());
    m.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    m.extend(rng.bytes(12));
    m.extend(attrs);
    let crc = hallcast_rtc::stun::fingerprint(&m);
    attr(&mut m, 0x8028, &crc.to_be_bytes());
    m
}

/// Sends `n` binding requests ([`stun_binding_request`]) to 127.0.0.1:`port` from four
/// sockets, the usernames in turn, as fast as the sockets take them with a 1 ms pause every
/// 100 (a flood, paced only so loopback's buffers do not drop most of it). Returns how many
/// were sent.
pub fn stun_flood(port: u16, usernames: &[String], n: usize) -> Result<usize> {
    let sockets: Vec<UdpSocket> = (0..4)
        .map(|_| UdpSocket::bind("127.0.0.1:0"))
        .collect::<std::io::Result<_>>()?;
    let mut rng = Prng::new(0x5eed_57a1);
    let mut sent = 0;
    for i in 0..n {
        let m = stun_binding_request(&usernames[i % usernames.len()], &mut rng);
        if sockets[i % sockets.len()]
            .send_to(&m, ("127.0.0.1", port))
            .is_ok()
        {
            sent += 1;
        }
        if i % 100 == 99 {
            thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_use_the_ice_alphabet() {
        let t = Prng::new(1).token(64);
        assert_eq!(t.len(), 64);
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/')
        );
    }

    #[test]
    fn a_flood_request_is_well_formed_stun() {
        let m = stun_binding_request("abcd:efgh", &mut Prng::new(5));
        assert_eq!(&m[0..2], &[0, 1]);
        assert_eq!(usize::from(u16::from_be_bytes([m[2], m[3]])), m.len() - 20);
        // FINGERPRINT last, and right (the value RFC 5769's check would compute).
        let n = m.len();
        assert_eq!(&m[n - 8..n - 4], &[0x80, 0x28, 0, 4]);
        let crc = hallcast_rtc::stun::fingerprint(&m[..n - 8]);
        assert_eq!(&m[n - 4..], &crc.to_be_bytes());
    }

    #[test]
    fn stun_garbage_has_a_stun_header() {
        let mut rng = Prng::new(3);
        let p = datagram(Garbage::Stun, &mut rng, 0);
        assert_eq!(&p[0..2], &[0, 1]);
        assert_eq!(&p[4..8], &0x2112_A442u32.to_be_bytes());
        assert_eq!(usize::from(u16::from_be_bytes([p[2], p[3]])), p.len() - 20);
    }
}
