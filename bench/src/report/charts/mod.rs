//! Charts rendered with plotters, each to SVG (scales on slides) and PNG (pastes anywhere):
//! startup phase timelines (stacked bars), startup CDF, CPU overhead and shared-directory
//! I/O and network-path ratios (grouped bars), memory density (lines), disk per instance (bars). 1280×720, large fonts, titles, units,
//! labelled axes and legends, so they stay readable on a projector; every chart with VM
//! figures carries the KVM backend caveat.
//!
//! PNG text needs a TrueType font: DejaVu Sans (Debian `fonts-dejavu-core`) is looked up at
//! run time; `VCOMPARE_FONT` may point to another .ttf. Without a font no chart is drawn and
//! the report says so.
//!
//! This file holds the chart list ([`render_all`]) and the SVG + PNG writer; the shared look
//! (font, colours, text styles, caveat footer, legend) and each chart family have their own
//! file below.

mod footprint;
mod ratio_bars;
mod startup;
mod style;

pub use style::ensure_font;

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::results::{is_vm_subject, Results};
use crate::suites::net::paths::LOOPBACK;

use footprint::{disk, memory_density};
use ratio_bars::{cpu_overhead, net, share};
use startup::{startup_cdf, startup_phases};

/// Chart size in pixels (16:9, projector friendly).
pub const SIZE: (u32, u32) = (1280, 720);

/// What drawing one chart returns: Err carries the plotters error as text.
type ChartResult = Result<(), String>;

/// Draws one chart to `<stem>.svg` and `<stem>.png` in `dir`.
macro_rules! both {
    ($dir:expr, $stem:expr, $files:expr, $notes:expr, $stems:expr, |$area:ident| $body:expr) => {{
        let svg = $dir.join(format!("{}.svg", $stem));
        let png = $dir.join(format!("{}.png", $stem));
        let r1 = {
            let $area = SVGBackend::new(&svg, SIZE).into_drawing_area();
            $body
        };
        let r2 = {
            let $area = BitMapBackend::new(&png, SIZE).into_drawing_area();
            $body
        };
        match (r1, r2) {
            (Ok(()), Ok(())) => {
                $files.push(svg);
                $files.push(png);
                $stems.push($stem.to_string());
            }
            (a, b) => $notes.push(format!(
                "chart {}: {}",
                $stem,
                a.err().or(b.err()).unwrap_or_default()
            )),
        }
    }};
}

/// Renders every chart `r` has data for into `dir`; returns (files, stems drawn, notes).
pub fn render_all(r: &Results, dir: &Path) -> (Vec<PathBuf>, Vec<String>, Vec<String>) {
    let mut files = Vec::new();
    let mut stems: Vec<String> = Vec::new();
    let mut notes = Vec::new();
    if let Err(e) = ensure_font() {
        notes.push(e);
        return (files, stems, notes);
    }
    let non_vm: Vec<String> = r
        .startup
        .iter()
        .filter(|s| !is_vm_subject(&s.subject) && !s.runs.is_empty())
        .map(|s| s.subject.clone())
        .collect();
    let vm: Vec<String> = r
        .startup
        .iter()
        .filter(|s| is_vm_subject(&s.subject) && !s.runs.is_empty())
        .map(|s| s.subject.clone())
        .collect();
    if !non_vm.is_empty() {
        both!(dir, "startup_phases", files, notes, stems, |a| {
            startup_phases(&a, r, &non_vm, false)
        });
    }
    if !vm.is_empty() {
        both!(dir, "startup_phases_vm", files, notes, stems, |a| {
            startup_phases(&a, r, &vm, true)
        });
    }
    if !r.startup.is_empty() {
        both!(dir, "startup_cdf", files, notes, stems, |a| startup_cdf(
            &a, r
        ));
    }
    if r.cpu.iter().any(|s| s.subject == "host") && r.cpu.iter().any(|s| s.subject != "host") {
        both!(dir, "cpu_overhead", files, notes, stems, |a| cpu_overhead(
            &a, r
        ));
    }
    if r.density.iter().any(|s| !s.points.is_empty()) {
        both!(dir, "memory_density", files, notes, stems, |a| {
            memory_density(&a, r)
        });
    }
    if !r.disk.is_empty() {
        both!(dir, "disk", files, notes, stems, |a| disk(&a, r));
    }
    if r.share.iter().any(|s| s.place == "host") && r.share.len() > 1 {
        both!(dir, "share", files, notes, stems, |a| share(&a, r));
    }
    if r.net.iter().any(|s| s.path == LOOPBACK) && r.net.len() > 1 {
        both!(dir, "net", files, notes, stems, |a| net(&a, r));
    }
    (files, stems, notes)
}
