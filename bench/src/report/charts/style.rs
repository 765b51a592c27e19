//! The look every chart shares: the font lookup, fixed colours per subject and phase, text
//! styles, the KVM backend caveat footer, category axis labels and the legend box. Separate so
//! each chart family file only says what it plots.

use std::path::PathBuf;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{ChartResult, SIZE};
use crate::results::Results;

/// The font family name charts use once registered.
const FONT: &str = "sans-serif";

/// Candidate font files, in order.
fn font_candidates() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::env::var_os("VCOMPARE_FONT")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    v.extend(
        [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
            "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
        ]
        .iter()
        .map(PathBuf::from),
    );
    v
}

/// Registers a TrueType font with plotters once; Err says what to install.
pub fn ensure_font() -> Result<(), String> {
    static ONCE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        for p in font_candidates() {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    let bold = p.with_file_name(p.file_name().and_then(|n| n.to_str()).unwrap_or("").replace(".ttf", "-Bold.ttf"));
                    let bold_bytes: &'static [u8] = match std::fs::read(&bold) {
                        Ok(b) => Box::leak(b.into_boxed_slice()),
                        Err(_) => bytes,
                    };
                    let _ = plotters::style::register_font(FONT, FontStyle::Bold, bold_bytes);
                    return Ok(());
                }
            }
        }
        Err("no TrueType font found (install Debian's fonts-dejavu-core or set VCOMPARE_FONT=/path/to/font.ttf): charts not drawn".into())
    })
    .clone()
}

/// Fixed colours by subject and by phase, so the same thing has the same colour everywhere.
pub(super) fn subject_color(s: &str) -> RGBColor {
    match s {
        "host" => RGBColor(90, 90, 90),
        "container" | "container bind" | "container -p" => RGBColor(31, 119, 180),
        "container-container" => RGBColor(23, 190, 207),
        "crun" => RGBColor(44, 160, 44),
        "runc" => RGBColor(148, 103, 189),
        "container volume" => RGBColor(23, 190, 207),
        "vm" | "vm 9p" | "vm -p" => RGBColor(214, 39, 40),
        "vm root disk" | "container-vm" => RGBColor(227, 119, 194),
        "qemu" => RGBColor(255, 127, 14),
        "qemu-rootdisk" => RGBColor(188, 189, 34),
        _ => RGBColor(140, 86, 75),
    }
}

/// Phase colours, taken in the order phases first appear.
pub(super) const PHASE_COLORS: &[RGBColor] = &[
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
    RGBColor(127, 127, 127),
];

/// Chart title text.
pub(super) fn title_style() -> TextStyle<'static> {
    (FONT, 34).into_font().style(FontStyle::Bold).color(&BLACK)
}
/// Axis, tick and legend text.
pub(super) fn label_style() -> TextStyle<'static> {
    (FONT, 22).into_font().color(&BLACK)
}
/// Label whose anchor is its bottom centre: sits on top of a bar.
pub(super) fn bar_label_style() -> TextStyle<'static> {
    label_style().pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Bottom,
    ))
}
fn note_style() -> TextStyle<'static> {
    (FONT, 20).into_font().color(&RGBColor(170, 0, 0))
}

/// Splits off a footer line for the caveat (if any) and returns the plotting area.
pub(super) fn with_caveat<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    caveat: Option<&str>,
) -> Result<DrawingArea<DB, Shift>, String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    match caveat {
        Some(c) => {
            let (top, bottom) = root.split_vertically(SIZE.1 - 36);
            bottom
                .draw_text(&format!("VM figures: {c}"), &note_style(), (20, 6))
                .map_err(|e| e.to_string())?;
            Ok(top)
        }
        None => Ok(root.clone()),
    }
}

/// The KVM backend caveat when the chart draws VM figures.
pub(super) fn caveat_for(r: &Results, any_vm: bool) -> Option<String> {
    any_vm.then(|| r.environment.kvm_backend.clone())
}

/// Axis label for a category axis drawn on f64: the name at integer positions, else nothing.
pub(super) fn category(names: &[String], v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 && v > -0.5 {
        names
            .get(v.round().abs() as usize)
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// The legend box every chart uses (readable on a projector), then the page is written out.
pub(super) fn legend_and_present<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    area: &DrawingArea<DB, Shift>,
) -> ChartResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font(label_style())
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    area.present().map_err(|e| e.to_string())
}
