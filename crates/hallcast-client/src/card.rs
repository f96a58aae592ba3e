//! The test card: an I420 picture rendered in Rust, one per frame.
//!
//! ```text
//! +------------------------------------------------------------+
//! | colour bars (75 %)            [moving box sweeps across]   |
//! |                                                            |
//! +-----------------------+------------------------------------+
//! | moving noise          |  LABEL                             |
//! | (scrolling texture +  |  HH:MM:SS.mmm      <- clock_rect() |
//! |  fresh snow)          |  FRAME 00001234                    |
//! |                       |  1280X720 30FPS CLOCK UTC          |
//! +-----------------------+------------------------------------+
//! ```
//!
//! The noise keeps the encoder busy at a realistic bitrate; a flat card would compress to almost
//! nothing and hide bandwidth problems. Rendering is deterministic given the frame index and the
//! wall-clock time passed in; nothing here reads a clock.

use std::time::Duration;

use openh264::formats::YUVSource;

use crate::font::{self, ADVANCE, GLYPH_H, GLYPH_W};

/// A rectangle in luma pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// A colour in limited-range BT.601 Y'CbCr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Yuv(u8, u8, u8);

const BLACK: Yuv = Yuv(16, 128, 128);
const PANEL: Yuv = Yuv(40, 128, 128);
const WHITE: Yuv = Yuv(235, 128, 128);
const ORANGE: Yuv = Yuv(152, 50, 188);
/// 75 % colour bars: white, yellow, cyan, green, magenta, red, blue.
const BARS: [Yuv; 7] = [
    Yuv(180, 128, 128),
    Yuv(162, 44, 142),
    Yuv(131, 156, 44),
    Yuv(112, 72, 58),
    Yuv(84, 184, 198),
    Yuv(65, 100, 212),
    Yuv(35, 212, 114),
];

/// A planar 4:2:0 picture (Y full size, U and V half size in both directions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: usize,
    height: usize,
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

impl I420Frame {
    /// A black picture. `width` and `height` must be even.
    pub fn new(width: usize, height: usize) -> Self {
        let (cw, ch) = (width / 2, height / 2);
        Self {
            width,
            height,
            y: vec![BLACK.0; width * height],
            u: vec![BLACK.1; cw * ch],
            v: vec![BLACK.2; cw * ch],
        }
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// The luma plane, `width * height` bytes, no padding.
    pub fn luma(&self) -> &[u8] {
        &self.y
    }

    /// Fills `r` (clipped to the picture) with `c`. Chroma covers every 2x2 block `r` touches.
    fn fill(&mut self, r: Rect, c: Yuv) {
        let x1 = (r.x + r.w).min(self.width);
        let y1 = (r.y + r.h).min(self.height);
        if r.x >= x1 || r.y >= y1 {
            return;
        }
        for row in r.y..y1 {
            self.y[row * self.width + r.x..row * self.width + x1].fill(c.0);
        }
        let cw = self.width / 2;
        let (cx0, cx1) = (r.x / 2, x1.div_ceil(2));
        for row in r.y / 2..y1.div_ceil(2) {
            self.u[row * cw + cx0..row * cw + cx1].fill(c.1);
            self.v[row * cw + cx0..row * cw + cx1].fill(c.2);
        }
    }

    /// Draws `text` with its top-left corner at `(x, y)`, each font pixel `scale` pixels square.
    fn text(&mut self, x: usize, y: usize, scale: usize, text: &str, c: Yuv) {
        for (i, ch) in text.chars().enumerate() {
            let gx = x + i * ADVANCE * scale;
            if gx >= self.width {
                break;
            }
            for (row, bits) in font::glyph(ch).iter().enumerate() {
                for col in 0..GLYPH_W {
                    if bits & (1 << (GLYPH_W - 1 - col)) != 0 {
                        let r = Rect {
                            x: gx + col * scale,
                            y: y + row * scale,
                            w: scale,
                            h: scale,
                        };
                        self.fill(r, c);
                    }
                }
            }
        }
    }
}

impl YUVSource for I420Frame {
    fn dimensions(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.width, self.width / 2, self.width / 2)
    }

    fn y(&self) -> &[u8] {
        &self.y
    }

    fn u(&self) -> &[u8] {
        &self.u
    }

    fn v(&self) -> &[u8] {
        &self.v
    }
}

/// Where everything goes, computed once from the picture size.
#[derive(Debug, Clone, Copy)]
struct Layout {
    bars: Rect,
    noise: Rect,
    /// The sub-rectangle of `noise` re-randomised every frame.
    snow: Rect,
    panel: Rect,
    box_size: usize,
    box_y: usize,
    label: TextLine,
    clock: TextLine,
    counter: TextLine,
    info: TextLine,
}

#[derive(Debug, Clone, Copy)]
struct TextLine {
    x: usize,
    y: usize,
    scale: usize,
    /// Characters that fit the panel at this scale.
    max_chars: usize,
}

impl TextLine {
    fn rect(&self, n_chars: usize) -> Rect {
        Rect {
            x: self.x,
            y: self.y,
            w: (n_chars * ADVANCE).saturating_sub(1) * self.scale,
            h: GLYPH_H * self.scale,
        }
    }
}

impl Layout {
    fn new(width: usize, height: usize) -> Self {
        let even = |v: usize| v & !1;
        let bars_h = even(height * 7 / 12);
        let bars = Rect {
            x: 0,
            y: 0,
            w: width,
            h: bars_h,
        };
        let noise = Rect {
            x: 0,
            y: bars_h,
            w: even(width * 2 / 5),
            h: height - bars_h,
        };
        let snow = Rect {
            x: noise.x + even(noise.w * 2 / 3),
            y: noise.y,
            w: noise.w - even(noise.w * 2 / 3),
            h: noise.h,
        };
        let panel = Rect {
            x: noise.w,
            y: bars_h,
            w: width - noise.w,
            h: height - bars_h,
        };

        // One "unit" is 1/72 of the height: 10 px at 720p.
        let unit = (height / 72).max(1);
        let pad = unit * 2;
        let avail = panel.w.saturating_sub(2 * pad);
        // The largest scale up to `scale` at which `n_chars` fit across the panel.
        let fit = |scale: usize, n_chars: usize| -> usize {
            scale.min(avail / (n_chars * ADVANCE - 1)).max(1)
        };
        let line = |y: usize, scale: usize| TextLine {
            x: panel.x + pad,
            y,
            scale,
            max_chars: ((avail + scale) / (ADVANCE * scale)).max(1),
        };
        let gap = unit + unit / 2;

        let label = line(panel.y + pad, (unit * 2 / 5).max(1));
        let clock_scale = fit(unit, "00:00:00.000".len());
        let clock = line(label.y + GLYPH_H * label.scale + gap, clock_scale);
        let counter = line(
            clock.y + GLYPH_H * clock.scale + gap,
            fit((unit * 3 / 5).max(1), "FRAME 00000000".len()),
        );
        let info = line(counter.y + GLYPH_H * counter.scale + gap, label.scale);

        let box_size = even((height / 6).max(4));
        Self {
            bars,
            noise,
            snow,
            panel,
            box_size,
            box_y: even(bars_h / 2).saturating_sub(box_size / 2),
            label,
            clock,
            counter,
            info,
        }
    }
}

/// Renders the test card frame after frame.
pub struct TestCard {
    fps: u32,
    background: I420Frame,
    frame: I420Frame,
    layout: Layout,
    label: String,
    info: String,
    /// Scrolling noise texture, the size of the noise area, wrapped around as it moves.
    texture: I420Frame,
    /// Current grey level of each snow block, row-major.
    snow: Vec<u8>,
    rng: SplitMix64,
}

/// Seconds the moving box takes to cross the picture one way.
const SWEEP_SECS: u64 = 4;
/// Texture scroll per frame, in luma pixels (even, so chroma moves in step).
const SCROLL_X: usize = 4;
const SCROLL_Y: usize = 2;
/// Snow is drawn in blocks of this many pixels square...
const SNOW_BLOCK: usize = 8;
/// ...of which one in this many changes every frame.
const SNOW_CHURN: u64 = 4;

impl TestCard {
    /// A card of `width` x `height` (both even, at least 16) for a stream at `fps`.
    pub fn new(width: usize, height: usize, fps: u32, label: &str) -> Self {
        let layout = Layout::new(width, height);
        let mut background = I420Frame::new(width, height);

        let bar_w = width / BARS.len();
        for (i, c) in BARS.iter().enumerate() {
            let x = i * bar_w;
            let w = if i + 1 == BARS.len() {
                width - x
            } else {
                bar_w
            };
            background.fill(
                Rect {
                    x,
                    h: layout.bars.h,
                    w,
                    y: 0,
                },
                *c,
            );
        }
        background.fill(layout.panel, PANEL);

        let label = truncate(label, layout.label.max_chars);
        background.text(
            layout.label.x,
            layout.label.y,
            layout.label.scale,
            &label,
            WHITE,
        );
        let info = truncate(
            &format!("{width}X{height} {fps}FPS CLOCK UTC"),
            layout.info.max_chars,
        );
        background.text(
            layout.info.x,
            layout.info.y,
            layout.info.scale,
            &info,
            WHITE,
        );

        let mut rng = SplitMix64(0x4841_4C4C_4341_5354);
        let texture = noise_texture(layout.noise.w, layout.noise.h, &mut rng);
        let n_snow = layout.snow.w.div_ceil(SNOW_BLOCK) * layout.snow.h.div_ceil(SNOW_BLOCK);
        let snow = (0..n_snow).map(|_| 16 + (rng.next() % 220) as u8).collect();

        Self {
            fps: fps.max(1),
            frame: background.clone(),
            background,
            layout,
            label,
            info,
            texture,
            snow,
            rng,
        }
    }

    /// Where the wall clock is drawn (its full width, whatever the digits).
    pub fn clock_rect(&self) -> Rect {
        self.layout.clock.rect("00:00:00.000".len())
    }

    /// Where the label is drawn.
    pub fn label_rect(&self) -> Rect {
        self.layout.label.rect(self.label.chars().count())
    }

    /// The colour-bar area (static, apart from the moving box crossing it).
    pub fn bars_rect(&self) -> Rect {
        self.layout.bars
    }

    /// Renders frame `index` showing `wall`, the time since the Unix epoch, as UTC time of day.
    pub fn render(&mut self, index: u64, wall: Duration) -> &I420Frame {
        let l = self.layout;
        self.frame.clone_from(&self.background);

        self.draw_noise(index);

        // The box sweeps left to right and back, SWEEP_SECS each way.
        let period = 2 * SWEEP_SECS * u64::from(self.fps);
        let phase = index % period;
        let half = period / 2;
        let travel = (l.bars.w.saturating_sub(l.box_size)) as u64;
        let along = if phase < half { phase } else { period - phase };
        let x = usize::try_from(travel * along / half.max(1)).unwrap_or(0) & !1;
        let outer = Rect {
            x,
            y: l.box_y,
            w: l.box_size,
            h: l.box_size,
        };
        self.frame.fill(outer, ORANGE);
        let inset = (l.box_size / 4) & !1;
        self.frame.fill(
            Rect {
                x: x + inset,
                y: l.box_y + inset,
                w: l.box_size - 2 * inset,
                h: l.box_size - 2 * inset,
            },
            WHITE,
        );

        let ms = wall.as_millis() % 86_400_000;
        let clock = format!(
            "{:02}:{:02}:{:02}.{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        );
        self.frame
            .text(l.clock.x, l.clock.y, l.clock.scale, &clock, WHITE);
        let counter = format!("FRAME {index:08}");
        self.frame
            .text(l.counter.x, l.counter.y, l.counter.scale, &counter, WHITE);
        &self.frame
    }

    /// The label as drawn (upper-cased, truncated to fit).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The info line as drawn.
    pub fn info(&self) -> &str {
        &self.info
    }

    fn draw_noise(&mut self, index: u64) {
        let n = self.layout.noise;
        let s = self.layout.snow;
        let (tw, th) = (self.texture.width, self.texture.height);
        if tw == 0 || th == 0 {
            return;
        }
        let step = usize::try_from(index % (tw * th) as u64).unwrap_or(0);
        let (ox, oy) = ((step * SCROLL_X) % tw, (step * SCROLL_Y) % th);
        let fw = self.frame.width;

        // Scrolling texture: luma rows copied in two pieces around the wrap.
        for row in 0..n.h.min(th) {
            let src_row = (row + oy) % th;
            let src = &self.texture.y[src_row * tw..(src_row + 1) * tw];
            let dst = &mut self.frame.y[(n.y + row) * fw + n.x..(n.y + row) * fw + n.x + tw];
            dst[..tw - ox].copy_from_slice(&src[ox..]);
            dst[tw - ox..].copy_from_slice(&src[..ox]);
        }
        let (ctw, cth, cfw) = (tw / 2, th / 2, fw / 2);
        let (cox, coy) = (ox / 2, oy / 2);
        for row in 0..cth {
            let src_row = (row + coy) % cth;
            let d0 = (n.y / 2 + row) * cfw + n.x / 2;
            for (plane, tex) in [
                (&mut self.frame.u, &self.texture.u),
                (&mut self.frame.v, &self.texture.v),
            ] {
                let src = &tex[src_row * ctw..(src_row + 1) * ctw];
                let dst = &mut plane[d0..d0 + ctw];
                dst[..ctw - cox].copy_from_slice(&src[cox..]);
                dst[ctw - cox..].copy_from_slice(&src[..cox]);
            }
        }

        // Snow: grey blocks of which a random share changes every frame, the part no motion
        // search can predict.
        let mut levels = self.snow.iter_mut();
        for by in (s.y..s.y + s.h).step_by(SNOW_BLOCK) {
            for bx in (s.x..s.x + s.w).step_by(SNOW_BLOCK) {
                let Some(level) = levels.next() else {
                    return;
                };
                let r = self.rng.next();
                if r.is_multiple_of(SNOW_CHURN) {
                    *level = 16 + ((r >> 8) % 220) as u8;
                }
                let level = *level;
                self.frame.fill(
                    Rect {
                        x: bx,
                        y: by,
                        w: SNOW_BLOCK.min(s.x + s.w - bx),
                        h: SNOW_BLOCK.min(s.y + s.h - by),
                    },
                    Yuv(level, 128, 128),
                );
            }
        }
    }
}

/// A coloured noise texture in 2x2 blocks, so it has detail without being pure white noise.
fn noise_texture(width: usize, height: usize, rng: &mut SplitMix64) -> I420Frame {
    let mut t = I420Frame::new(width, height);
    for by in (0..height).step_by(2) {
        for bx in (0..width).step_by(2) {
            let r = rng.next();
            let c = Yuv(
                40 + (r % 180) as u8,
                96 + ((r >> 16) % 64) as u8,
                96 + ((r >> 32) % 64) as u8,
            );
            t.fill(
                Rect {
                    x: bx,
                    y: by,
                    w: 2,
                    h: 2,
                },
                c,
            );
        }
    }
    t
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

/// SplitMix64: a tiny, fast, deterministic generator; statistical quality is plenty for snow.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region_diff(a: &I420Frame, b: &I420Frame, r: Rect) -> usize {
        let mut n = 0;
        for y in r.y..r.y + r.h {
            for x in r.x..r.x + r.w {
                let i = y * a.width() + x;
                n += usize::from(a.luma()[i] != b.luma()[i]);
            }
        }
        n
    }

    #[test]
    fn clock_shows_the_wall_time_and_only_the_clock_moves_with_it() {
        let mut card = TestCard::new(640, 360, 30, "test");
        let a = card.render(5, Duration::from_millis(45_296_789)).clone(); // 12:34:56.789
        let b = card.render(5, Duration::from_millis(45_297_789)).clone();
        let same = card.render(5, Duration::from_millis(45_296_789)).clone();
        assert!(region_diff(&a, &b, card.clock_rect()) > 0);
        // Same index, same time: everything but the snow is identical.
        assert_eq!(region_diff(&a, &same, card.clock_rect()), 0);
        assert_eq!(region_diff(&a, &b, card.bars_rect()), 0);
    }

    #[test]
    fn the_box_moves_and_the_card_fits_small_sizes() {
        let mut card = TestCard::new(640, 360, 30, "x");
        let a = card.render(0, Duration::ZERO).clone();
        let b = card.render(15, Duration::ZERO).clone();
        assert!(region_diff(&a, &b, card.bars_rect()) > 0);
        for (w, h) in [(16, 16), (64, 36), (320, 180), (1920, 1080)] {
            let mut c = TestCard::new(w, h, 30, "a label far too long for a tiny card");
            let f = c.render(1234, Duration::from_secs(99_999));
            assert_eq!(f.luma().len(), w * h);
        }
    }

    #[test]
    fn label_is_truncated_to_the_panel() {
        let card = TestCard::new(1280, 720, 30, &"X".repeat(200));
        assert!(card.label().len() < 60);
        assert!(card.info().contains("1280X720 30FPS"));
    }
}
