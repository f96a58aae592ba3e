//! A small deterministic mutator for the bounded run on stable: the same seed gives the
//! same inputs on every machine, so a failure in CI repeats here with its seed.

/// xorshift64* (Vigna): fast, good enough to pick mutations, fully determined by its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Bytes parsers trip on: boundaries of lengths and signs, separators of the text formats.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, b'\n', b'\r', b',', b'"', b':', b'=', b'.', b'[', b']', b' ',
];

/// One to four mutations of `input`; `others` gives splicing material (the rest of the
/// corpus).
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            // Flip a bit.
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            // An interesting byte in place of one.
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            // Cut a range out.
            2 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                out.drain(a..b);
            }
            // Repeat a range (lengths and counts that disagree with the content).
            3 if len > 0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(32)).min(len);
                let piece = out[a..b].to_vec();
                let at = rng.below(len + 1);
                for _ in 0..1 + rng.below(3) {
                    out.splice(at..at, piece.iter().copied());
                }
            }
            // Insert random bytes.
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                out.splice(at..at, bytes);
            }
            // Truncate.
            5 if len > 0 => out.truncate(rng.below(len)),
            // Splice in a piece of another corpus file.
            6 if !others.is_empty() => {
                let other = &others[rng.below(others.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(64)).min(other.len());
                    let at = rng.below(len + 1);
                    out.splice(at..at, other[a..b].iter().copied());
                }
            }
            // Overwrite a 16-bit field with a boundary value (binary lengths).
            _ if len >= 2 => {
                let i = rng.below(len - 1);
                let v: u16 = [0, 1, 0x7fff, 0x8000, 0xffff, len as u16][rng.below(6)];
                out[i..i + 2].copy_from_slice(&v.to_be_bytes());
            }
            _ => out.push(rng.next_u64() as u8),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_inputs() {
        let corpus = vec![b"v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n".to_vec()];
        let run = |seed| {
            let mut rng = Rng::new(seed);
            (0..100)
                .map(|_| mutate(&mut rng, &corpus[0], &corpus))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
        // Mutations change the input (nearly always).
        let changed = run(42).iter().filter(|m| **m != corpus[0]).count();
        assert!(
            changed >= 95,
            "only {changed} of 100 mutations changed the input"
        );
    }
}
