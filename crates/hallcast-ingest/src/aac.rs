//! AAC to Opus (sans-IO): AAC-LC frames are decoded (Symphonia), resampled to 48 kHz
//! (rubato) and encoded as 20 ms Opus packets (opus-rs), each stamped with the 48 kHz time
//! of its first sample.
//!
//! Timing: the first frame's timestamp (90 kHz) anchors the output clock; after that the
//! output counts samples, so Opus packets are exactly 960 ticks apart whatever the input's
//! timestamp jitter. A frame more than [`MAX_DRIFT_90K`] away from where the count expects
//! it (a gap in the source, a restarted encoder) re-anchors the clock and drops the partial
//! packet. The resampler's delay (a few ms) is not compensated.

use bytes::Bytes;
use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use symphonia_codec_aac::AacDecoder;
use symphonia_core::codecs::audio::well_known::CODEC_ID_AAC;
use symphonia_core::codecs::audio::{AudioCodecParameters, AudioDecoder, AudioDecoderOptions};
use symphonia_core::packet::PacketRef;
use symphonia_core::units::{Duration as SymDuration, Timestamp};

use crate::IngestError;

/// Opus output rate.
pub const OPUS_RATE: u32 = 48_000;
/// Samples (per channel) of one 20 ms Opus packet.
pub const OPUS_FRAME: usize = 960;
/// How far (90 kHz ticks) a frame's timestamp may be from the sample count's expectation
/// before the clock is re-anchored: 100 ms.
pub const MAX_DRIFT_90K: i64 = 9_000;
/// The sampling frequencies of the AudioSpecificConfig's 4-bit index.
const RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// What a 2-byte (or longer) AudioSpecificConfig (ISO 14496-3 1.6.2.1) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioConfig {
    pub object_type: u8,
    pub sample_rate: u32,
    pub channels: u8,
}

impl AudioConfig {
    /// Parses the leading fields; only AAC-LC (object type 2), 1 or 2 channels and an indexed
    /// sampling rate are accepted.
    pub fn parse(asc: &[u8]) -> Result<Self, IngestError> {
        if asc.len() < 2 {
            return Err(IngestError::Invalid(
                "AudioSpecificConfig shorter than 2 bytes".into(),
            ));
        }
        let object_type = asc[0] >> 3;
        let freq_index = ((asc[0] & 0x07) << 1) | (asc[1] >> 7);
        let channels = (asc[1] >> 3) & 0x0f;
        if object_type != 2 {
            return Err(IngestError::Unsupported(format!(
                "AAC object type {object_type} (only AAC-LC, type 2, is supported; HE-AAC is not)"
            )));
        }
        let sample_rate = *RATES.get(usize::from(freq_index)).ok_or_else(|| {
            IngestError::Unsupported(format!("AAC sampling frequency index {freq_index}"))
        })?;
        if !(1..=2).contains(&channels) {
            return Err(IngestError::Unsupported(format!(
                "AAC channel configuration {channels} (mono or stereo only)"
            )));
        }
        Ok(Self {
            object_type,
            sample_rate,
            channels,
        })
    }
}

/// One Opus packet out of [`AacToOpus::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusPacket {
    /// 48 kHz time of the packet's first sample.
    pub ts: i64,
    pub data: Bytes,
}

/// The AAC → Opus transcoder of one audio stream.
pub struct AacToOpus {
    config: AudioConfig,
    asc: Vec<u8>,
    decoder: AacDecoder,
    resampler: Option<Fft<f32>>,
    encoder: opus_rs::OpusEncoder,
    channels: usize,
    /// Decoded input not yet resampled (interleaved).
    input: Vec<f32>,
    /// 48 kHz samples not yet encoded (interleaved).
    pcm: Vec<f32>,
    scratch: Vec<f32>,
    resampled: Vec<f32>,
    /// The clock: 90 kHz time of the anchor, input frames decoded since, output samples
    /// encoded since.
    anchor_90k: Option<i64>,
    n_in: u64,
    n_out: u64,
    out: [u8; 1500],
}

impl std::fmt::Debug for AacToOpus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacToOpus")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl AacToOpus {
    /// A transcoder for the stream `asc` describes.
    pub fn new(asc: &[u8]) -> Result<Self, IngestError> {
        let config = AudioConfig::parse(asc)?;
        let mut params = AudioCodecParameters::new();
        params
            .for_codec(CODEC_ID_AAC)
            .with_extra_data(asc.to_vec().into_boxed_slice());
        let decoder = AacDecoder::try_new(&params, &AudioDecoderOptions::default())
            .map_err(|e| IngestError::Unsupported(format!("AAC decoder: {e}")))?;
        let channels = usize::from(config.channels);
        let resampler = if config.sample_rate == OPUS_RATE {
            None
        } else {
            Some(
                Fft::<f32>::new(
                    config.sample_rate as usize,
                    OPUS_RATE as usize,
                    1024,
                    channels,
                    FixedSync::Input,
                )
                .map_err(|e| IngestError::Unsupported(format!("resampler: {e}")))?,
            )
        };
        let mut encoder =
            opus_rs::OpusEncoder::new(OPUS_RATE as i32, channels, opus_rs::Application::Audio)
                .map_err(|e| IngestError::Unsupported(format!("Opus encoder: {e}")))?;
        encoder.bitrate_bps = if channels == 2 { 96_000 } else { 64_000 };
        Ok(Self {
            config,
            asc: asc.to_vec(),
            decoder,
            resampler,
            encoder,
            channels,
            input: Vec::new(),
            pcm: Vec::new(),
            scratch: Vec::new(),
            resampled: Vec::new(),
            anchor_90k: None,
            n_in: 0,
            n_out: 0,
            out: [0; 1500],
        })
    }

    /// The stream's configuration.
    pub fn config(&self) -> AudioConfig {
        self.config
    }

    /// Whether `asc` is the configuration this transcoder was made for.
    pub fn is_for(&self, asc: &[u8]) -> bool {
        self.asc == asc
    }

    /// Decodes one raw AAC frame stamped `pts_90k` and returns the Opus packets now complete
    /// (usually zero, one or two).
    pub fn push(&mut self, pts_90k: i64, frame: &[u8]) -> Result<Vec<OpusPacket>, IngestError> {
        let rate = i64::from(self.config.sample_rate);
        match self.anchor_90k {
            Some(anchor) => {
                let expected = anchor + (self.n_in as i64) * 90_000 / rate;
                if (pts_90k - expected).abs() > MAX_DRIFT_90K {
                    self.reanchor(pts_90k);
                }
            }
            None => self.reanchor(pts_90k),
        }
        let packet = PacketRef::new(0, Timestamp::new(0), SymDuration::new(1024), frame);
        let decoded = self
            .decoder
            .decode_ref(&packet)
            .map_err(|e| IngestError::Invalid(format!("AAC frame: {e}")))?;
        let n_frames = decoded.frames();
        decoded.copy_to_vec_interleaved(&mut self.scratch);
        self.scratch.truncate(n_frames * self.channels);
        self.n_in += n_frames as u64;
        match &mut self.resampler {
            None => self.pcm.extend_from_slice(&self.scratch),
            Some(resampler) => {
                self.input.extend_from_slice(&self.scratch);
                loop {
                    let need = resampler.input_frames_next();
                    if self.input.len() < need * self.channels {
                        break;
                    }
                    self.resampled
                        .resize(resampler.output_frames_max() * self.channels, 0.0);
                    let capacity = self.resampled.len() / self.channels;
                    let input = InterleavedSlice::new(&self.input, self.channels, need)
                        .map_err(|e| IngestError::Invalid(format!("resampler input: {e}")))?;
                    let mut output =
                        InterleavedSlice::new_mut(&mut self.resampled, self.channels, capacity)
                            .map_err(|e| IngestError::Invalid(format!("resampler output: {e}")))?;
                    let (n_read, n_written) = resampler
                        .process_into_buffer(&input, &mut output, None)
                        .map_err(|e| IngestError::Invalid(format!("resampling: {e}")))?;
                    self.input.drain(..n_read * self.channels);
                    self.pcm
                        .extend_from_slice(&self.resampled[..n_written * self.channels]);
                }
            }
        }
        let mut packets = Vec::new();
        let per_packet = OPUS_FRAME * self.channels;
        let anchor_48k = self.anchor_90k.unwrap_or(0) * 8 / 15;
        while self.pcm.len() >= per_packet {
            let n = self
                .encoder
                .encode(&self.pcm[..per_packet], OPUS_FRAME, &mut self.out)
                .map_err(|e| IngestError::Invalid(format!("Opus encoding: {e}")))?;
            self.pcm.drain(..per_packet);
            packets.push(OpusPacket {
                ts: anchor_48k + self.n_out as i64,
                data: Bytes::copy_from_slice(&self.out[..n]),
            });
            self.n_out += OPUS_FRAME as u64;
        }
        Ok(packets)
    }

    fn reanchor(&mut self, pts_90k: i64) {
        self.anchor_90k = Some(pts_90k);
        self.n_in = 0;
        self.n_out = 0;
        self.input.clear();
        self.pcm.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0.5 s of a 440 Hz tone (ffmpeg's `sine`, amplitude 1/8), AAC-LC in ADTS.
    const MONO_44K1: &[u8] = include_bytes!("../testdata/sine-440hz-44k1-mono.aac");
    const STEREO_48K: &[u8] = include_bytes!("../testdata/sine-440hz-48k-stereo.aac");

    /// The ADTS frames of a file: (AudioSpecificConfig, raw frame).
    fn frames(mut adts: &[u8]) -> Vec<([u8; 2], Vec<u8>)> {
        let mut out = Vec::new();
        while !adts.is_empty() {
            let f = crate::adts::parse(adts).expect("valid ADTS");
            out.push((f.asc, f.frame.to_vec()));
            adts = &adts[f.len..];
        }
        out
    }

    /// Transcodes a file (frame `i` stamped `start + i × 1024` samples, in 90 kHz) and returns
    /// the Opus packets.
    fn transcode(adts: &[u8], rate: i64, start_90k: i64) -> Vec<OpusPacket> {
        let frames = frames(adts);
        let mut t = AacToOpus::new(&frames[0].0).expect("supported");
        let mut packets = Vec::new();
        for (i, (_, f)) in frames.iter().enumerate() {
            let pts = start_90k + i as i64 * 1024 * 90_000 / rate;
            packets.extend(t.push(pts, f).expect("decodes"));
        }
        packets
    }

    /// The loudest sample of the decoded packets (0..1).
    fn peak(packets: &[OpusPacket], channels: usize) -> f32 {
        let mut d = opus_rs::OpusDecoder::new(48_000, channels).expect("decoder");
        let mut pcm = vec![0f32; OPUS_FRAME * channels];
        let mut peak = 0f32;
        for p in packets {
            let n = d.decode(&p.data, OPUS_FRAME, &mut pcm).expect("decodes");
            for s in &pcm[..n * channels] {
                peak = peak.max(s.abs());
            }
        }
        peak
    }

    #[test]
    fn aac_44k1_mono_becomes_20ms_opus_packets_on_a_steady_48k_clock() {
        // 10 s in: the output clock starts at the same instant in 48 kHz units.
        let packets = transcode(MONO_44K1, 44_100, 900_000);
        // About 0.5 s and the encoder priming (1024 samples): 26 packets, less what the
        // resampler still holds.
        assert!(
            (18..=28).contains(&packets.len()),
            "{} packets",
            packets.len()
        );
        assert_eq!(packets[0].ts, 480_000);
        for w in packets.windows(2) {
            assert_eq!(w[1].ts - w[0].ts, 960);
        }
        // The tone is there (amplitude 1/8), not silence.
        let p = peak(&packets, 1);
        assert!(p > 0.05 && p < 0.5, "peak {p}");
    }

    #[test]
    fn aac_48k_stereo_needs_no_resampling_and_keeps_both_channels() {
        let packets = transcode(STEREO_48K, 48_000, 0);
        assert!(
            (22..=28).contains(&packets.len()),
            "{} packets",
            packets.len()
        );
        let p = peak(&packets, 2);
        assert!(p > 0.05, "peak {p}");
    }

    #[test]
    fn a_gap_in_the_input_reanchors_the_clock() {
        let frames = frames(MONO_44K1);
        let mut t = AacToOpus::new(&frames[0].0).expect("supported");
        let mut last = None;
        for (i, (_, f)) in frames.iter().enumerate().take(10) {
            for p in t.push(i as i64 * 2090, f).expect("decodes") {
                last = Some(p.ts);
            }
        }
        let before = last.expect("packets before the gap");
        // 5 s later (a stalled encoder): the next packets start at the new time, not
        // right after the previous ones.
        let mut after = Vec::new();
        for (i, (_, f)) in frames.iter().enumerate().skip(10) {
            after.extend(t.push(450_000 + i as i64 * 2090, f).expect("decodes"));
        }
        let first = after.first().expect("packets after the gap").ts;
        assert!(first > before + 200_000, "{before} → {first}");
        assert_eq!(first, (450_000 + 10 * 2090) * 8 / 15);
        // Small jitter does not: a frame 20 ms late keeps the count.
        let mut t = AacToOpus::new(&frames[0].0).expect("supported");
        let mut ts = Vec::new();
        for (i, (_, f)) in frames.iter().enumerate() {
            let jitter = if i % 3 == 0 { 1800 } else { 0 };
            ts.extend(
                t.push(i as i64 * 2090 + jitter, f)
                    .expect("decodes")
                    .iter()
                    .map(|p| p.ts),
            );
        }
        for w in ts.windows(2) {
            assert_eq!(w[1] - w[0], 960);
        }
    }

    #[test]
    fn a_frame_that_does_not_decode_is_an_error_not_a_panic() {
        let frames = frames(MONO_44K1);
        let mut t = AacToOpus::new(&frames[0].0).expect("supported");
        for junk in [&[][..], &[0xff; 3], &[0x00, 0x11, 0x22, 0x33, 0x44, 0x55]] {
            let _ = t.push(0, junk);
        }
        // And it goes on decoding good frames afterwards.
        let mut n = 0;
        for (i, (_, f)) in frames.iter().enumerate() {
            n += t
                .push(100_000 + i as i64 * 2090, f)
                .map(|p| p.len())
                .unwrap_or(0);
        }
        assert!(n > 10, "{n} packets after junk");
    }

    #[test]
    fn audio_specific_configs_are_checked() {
        assert_eq!(
            AudioConfig::parse(&[0x12, 0x10]).expect("LC 44.1 stereo"),
            AudioConfig {
                object_type: 2,
                sample_rate: 44_100,
                channels: 2
            }
        );
        assert_eq!(
            AudioConfig::parse(&[0x11, 0x88]).map(|c| (c.sample_rate, c.channels)),
            Ok((48_000, 1))
        );
        // HE-AAC (5), 6 channels, a reserved rate, too short.
        for bad in [&[0x2b, 0x10][..], &[0x12, 0x30], &[0x17, 0x90], &[0x12]] {
            assert!(AudioConfig::parse(bad).is_err(), "{bad:?}");
        }
    }
}
