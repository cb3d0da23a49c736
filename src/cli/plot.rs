//! Charts of training runs, each drawn twice: as SVG and as PNG.
//!
//! Text is laid out with a TrueType font read at run time (plotters' ab_glyph backend), so
//! the charts look the same everywhere: $NEWTON_WGPU_FONT, else the first of a few common
//! system fonts (DejaVu Sans on Linux, Arial on macOS and Windows).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{anyhow, bail, Result};
use newton_wgpu::output;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

/// Newton-CG's colour in every chart; SGD's is [`SGD`].
pub const NEWTON: RGBColor = RGBColor(31, 119, 180);
pub const SGD: RGBColor = RGBColor(214, 39, 40);
pub const SGN: RGBColor = RGBColor(44, 160, 44);
/// The preconditioned variants of Newton-CG and SGN.
pub const NEWTON_PCG: RGBColor = RGBColor(148, 103, 189);
pub const SGN_PCG: RGBColor = RGBColor(255, 127, 14);
/// SGD's tuning runs.
pub const SGD_TUNING: RGBColor = RGBColor(240, 170, 170);

const SIZE: (u32, u32) = (960, 600);

const FONT_PATHS: [&str; 6] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "/Library/Fonts/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers the font once per process; fails with the places it looked.
fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let from_env = std::env::var_os("NEWTON_WGPU_FONT").map(PathBuf::from);
            let candidates: Vec<PathBuf> =
                from_env.clone().into_iter().chain(FONT_PATHS.iter().map(PathBuf::from)).collect();
            let Some((path, bytes)) = candidates.iter().find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
            else {
                return Err(format!(
                    "charts need a TrueType font: set NEWTON_WGPU_FONT to a .ttf file, or install one at {} \
                     (Debian: apt-get install fonts-dejavu-core)",
                    FONT_PATHS.join(", ")
                ));
            };
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                .map_err(|_| format!("{}: not a TrueType font plotters can read", path.display()))
        })
        .clone()
        .map_err(|message| anyhow!(message))
}

/// A chart that can be drawn on any plotters backend.
pub trait Chart {
    fn title(&self) -> &str;
    fn is_empty(&self) -> bool;
    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>>;

    /// Draws the chart as `stem.svg` and `stem.png` (in memory, then each file written
    /// atomically); returns the two paths.
    fn write(&self, stem: &Path) -> Result<Vec<PathBuf>> {
        ensure_font()?;
        if self.is_empty() {
            bail!("{}: nothing to plot", self.title());
        }
        let (svg_path, png_path) = (stem.with_extension("svg"), stem.with_extension("png"));
        let mut svg = String::new();
        self.draw(SVGBackend::with_string(&mut svg, SIZE).into_drawing_area())
            .map_err(|e| anyhow!("drawing {}: {e}", svg_path.display()))?;
        output::write(&svg_path, svg.as_bytes())?;
        let mut rgb = vec![0u8; 3 * SIZE.0 as usize * SIZE.1 as usize];
        self.draw(BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area())
            .map_err(|e| anyhow!("drawing {}: {e}", png_path.display()))?;
        output::write_with(&png_path, |file| encode_png(file, &rgb))?;
        Ok(vec![svg_path, png_path])
    }
}

/// Encodes an RGB image of [`SIZE`] as PNG.
fn encode_png(out: &mut dyn std::io::Write, rgb: &[u8]) -> std::io::Result<()> {
    let mut encoder = png::Encoder::new(out, SIZE.0, SIZE.1);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish().map_err(std::io::Error::other)
}

/// One line of a chart.
pub struct Series {
    /// The legend's text; an empty name has no legend entry.
    pub name: String,
    pub color: RGBColor,
    pub points: Vec<(f64, f64)>,
}

/// How the y axis is scaled.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    Log,
}

/// A line chart: `series` against training seconds (or any x), a marker at every point.
pub struct LineChart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series],
    pub scale: Scale,
    /// Where the legend goes (where the lines are not).
    pub legend: SeriesLabelPosition,
}

impl Chart for LineChart<'_> {
    fn title(&self) -> &str {
        self.title
    }

    fn is_empty(&self) -> bool {
        self.series.iter().all(|s| s.points.is_empty())
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        // A log axis is drawn as log10(y) on a linear one, labelled with y itself: plotters'
        // own log axis leaves a range within one decade without labels.
        let to_axis = |y: f64| if self.scale == Scale::Log { y.max(1e-300).log10() } else { y };
        let from_axis = |y: f64| if self.scale == Scale::Log { 10f64.powf(y) } else { y };
        let points = || self.series.iter().flat_map(|s| s.points.iter().map(|&(x, y)| (x, to_axis(y))));
        let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.02;
        let (lo, hi) = points().fold((f64::MAX, f64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        let pad = ((hi - lo) * 0.05).max(1e-3);
        let (y_lo, y_hi) = (lo - pad, hi + pad);
        // Labels at round values: 1, 2 and 5 × 10^k.
        let ticks = match self.scale {
            Scale::Linear => linear_ticks(y_lo, y_hi),
            Scale::Log => log_ticks(from_axis(y_lo), from_axis(y_hi)).into_iter().map(f64::log10).collect(),
        };
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, Ticked { range: (y_lo..y_hi).into(), ticks })?;
        let y_format = |y: &f64| label(from_axis(*y));
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .y_label_formatter(&y_format)
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()?;
        for s in self.series {
            let color = s.color;
            let line: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (x, to_axis(y))).collect();
            let drawn = chart.draw_series(LineSeries::new(line.iter().copied(), color.stroke_width(2)))?;
            if !s.name.is_empty() {
                drawn
                    .label(s.name.as_str())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], color.stroke_width(3)));
            }
            chart.draw_series(line.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .position(self.legend.clone())
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 18))
            .draw()?;
        root.present()
    }
}

/// A linear axis labelled at the given values (plotters' own key points fall where they may,
/// and its `WithKeyPoints` cannot take a label formatter).
struct Ticked {
    range: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.range.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // The labelled values as the bold lines; no light ones between them.
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.range()
    }
}

/// The multiples in [lo, hi] of the smallest 1-2-5 step that makes at most about ten.
fn linear_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let rough = (hi - lo) / 10.0;
    let decade = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0].into_iter().map(|m| m * decade).find(|&s| s >= rough).unwrap_or(decade);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|i| i as f64 * step).collect()
}

/// Round values in [lo, hi] (both > 0) for a log axis: 1, 2 and 5 × 10^k; every m × 10^k when
/// those are fewer than three; the linear 1-2-5 steps when the range lies within one of them.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let in_range = |mantissas: &[f64]| -> Vec<f64> {
        let (first, last) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
        (first..=last)
            .flat_map(|k| mantissas.iter().map(move |m| m * 10f64.powi(k)))
            .filter(|v| (lo..=hi).contains(v))
            .collect()
    };
    let ticks = in_range(&[1.0, 2.0, 5.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    let ticks = in_range(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if ticks.len() >= 3 {
        return ticks;
    }
    linear_ticks(lo, hi)
}

/// A tick's value as written: its few significant digits, without the float's noise
/// (0.30000000000000004 is 0.3).
fn label(value: f64) -> String {
    let rounded: f64 = format!("{value:.4e}").parse().expect("a formatted float parses");
    format!("{rounded}")
}

/// A bar chart: one horizontal bar per (label, value, colour).
pub struct BarChart<'a> {
    pub title: &'a str,
    pub value_label: &'a str,
    pub bars: &'a [(String, f64, RGBColor)],
}

impl Chart for BarChart<'_> {
    fn title(&self) -> &str {
        self.title
    }

    fn is_empty(&self) -> bool {
        self.bars.is_empty()
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: DrawingArea<DB, Shift>,
    ) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
        // Horizontal bars, so that the labels read across.
        let bars = self.bars;
        let lowest = bars.iter().map(|b| b.1).fold(f64::MAX, f64::min);
        let highest = bars.iter().map(|b| b.1).fold(f64::MIN, f64::max);
        let x_min = (lowest - 0.1 * (highest - lowest).max(1.0)).max(0.0);
        let x_max = highest + 0.05 * (highest - x_min).max(1.0);
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, ("sans-serif", 26))
            .margin(16)
            .x_label_area_size(50)
            .y_label_area_size(190)
            .build_cartesian_2d(x_min..x_max, (0..bars.len() - 1).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .x_desc(self.value_label)
            .y_labels(bars.len())
            .y_label_formatter(&|segment| match segment {
                SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                    bars.get(bars.len().wrapping_sub(i + 1)).map_or(String::new(), |b| b.0.clone())
                }
                SegmentValue::Last => String::new(),
            })
            .light_line_style(RGBColor(238, 238, 238))
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 18))
            .draw()?;
        // The first bar at the top.
        let row = |i: usize| bars.len() - 1 - i;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, value, color))| {
            let mut bar = Rectangle::new(
                [(x_min, SegmentValue::Exact(row(i))), (*value, SegmentValue::Exact(row(i) + 1))],
                color.filled(),
            );
            bar.set_margin(4, 4, 0, 0);
            bar
        }))?;
        root.present()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_axes_are_labelled_at_one_two_and_five_times_a_power_of_ten() {
        let labels = |lo, hi| log_ticks(lo, hi).into_iter().map(label).collect::<Vec<_>>();
        assert_eq!(labels(0.31, 3.2), ["0.5", "1", "2"]);
        assert_eq!(labels(0.004, 2.5), ["0.005", "0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2"]);
        assert_eq!(labels(0.31, 0.99), ["0.4", "0.5", "0.6", "0.7", "0.8", "0.9"]);
        assert_eq!(labels(0.361, 0.397), ["0.365", "0.37", "0.375", "0.38", "0.385", "0.39", "0.395"]);
    }

    #[test]
    fn linear_axes_step_by_one_two_or_five_times_a_power_of_ten() {
        let labels = |lo, hi| linear_ticks(lo, hi).into_iter().map(label).collect::<Vec<_>>();
        assert_eq!(labels(8.3, 97.1), ["10", "20", "30", "40", "50", "60", "70", "80", "90"]);
        assert_eq!(
            labels(0.0, 1.0),
            ["0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1"]
        );
        assert_eq!(labels(-3.0, 3.0), ["-3", "-2", "-1", "0", "1", "2", "3"]);
    }
}
