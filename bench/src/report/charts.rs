//! Charts rendered with plotters, each to SVG (scales on slides) and PNG (pastes anywhere):
//! startup phase timelines (stacked bars), startup CDF, CPU overhead and shared-directory
//! I/O ratios (grouped bars), memory density (lines), disk per instance (bars). 1280×720, large fonts, titles, units,
//! labelled axes and legends, so they stay readable on a projector; every chart with VM
//! figures carries the KVM backend caveat.
//!
//! PNG text needs a TrueType font: DejaVu Sans (Debian `fonts-dejavu-core`) is looked up at
//! run time; `VCOMPARE_FONT` may point to another .ttf. Without a font no chart is drawn and
//! the report says so.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::report::markdown::{density_slopes, fmt_bytes, share_slowdown, SHARE_FIGURES};
use crate::results::{is_vm_subject, Results};
use crate::stats::{cdf, median, ratio};

/// Chart size in pixels (16:9, projector friendly).
pub const SIZE: (u32, u32) = (1280, 720);
/// The font family name charts use once registered.
const FONT: &str = "sans-serif";

type ChartResult = Result<(), String>;

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
fn subject_color(s: &str) -> RGBColor {
    match s {
        "host" => RGBColor(90, 90, 90),
        "container" | "container bind" => RGBColor(31, 119, 180),
        "crun" => RGBColor(44, 160, 44),
        "runc" => RGBColor(148, 103, 189),
        "container volume" => RGBColor(23, 190, 207),
        "vm" | "vm 9p" => RGBColor(214, 39, 40),
        "vm root disk" => RGBColor(227, 119, 194),
        "qemu" => RGBColor(255, 127, 14),
        "qemu-rootdisk" => RGBColor(188, 189, 34),
        _ => RGBColor(140, 86, 75),
    }
}

const PHASE_COLORS: &[RGBColor] = &[
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

fn title_style() -> TextStyle<'static> {
    (FONT, 34).into_font().style(FontStyle::Bold).color(&BLACK)
}
fn label_style() -> TextStyle<'static> {
    (FONT, 22).into_font().color(&BLACK)
}
/// Label whose anchor is its bottom centre: sits on top of a bar.
fn bar_label_style() -> TextStyle<'static> {
    label_style().pos(plotters::style::text_anchor::Pos::new(
        plotters::style::text_anchor::HPos::Center,
        plotters::style::text_anchor::VPos::Bottom,
    ))
}
fn note_style() -> TextStyle<'static> {
    (FONT, 20).into_font().color(&RGBColor(170, 0, 0))
}

/// Splits off a footer line for the caveat (if any) and returns the plotting area.
fn with_caveat<DB: DrawingBackend>(
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

fn caveat_for(r: &Results, any_vm: bool) -> Option<String> {
    any_vm.then(|| r.environment.kvm_backend.clone())
}

/// Axis label for a category axis drawn on f64: the name at integer positions, else nothing.
fn category(names: &[String], v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 && v > -0.5 {
        names
            .get(v.round().abs() as usize)
            .cloned()
            .unwrap_or_default()
    } else {
        String::new()
    }
}

/// Median span per phase name, in the order phases occur, for one subject.
fn phase_medians(r: &Results, subject: &str) -> Vec<(String, f64)> {
    let Some(s) = r.startup.iter().find(|s| s.subject == subject) else {
        return Vec::new();
    };
    if s.runs.iter().all(|x| x.phases.is_empty()) {
        let total = median(&s.runs.iter().map(|x| x.wall_ns as f64).collect::<Vec<_>>());
        return total
            .map(|t| vec![("total (no phase marks)".to_string(), t)])
            .unwrap_or_default();
    }
    s.phase_medians_ns()
        .into_iter()
        .filter_map(|(name, m)| m.map(|m| (name, m)))
        .collect()
}

/// Stacked horizontal bars: one per subject, one segment per phase (median), in `unit`.
fn startup_phases<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Results,
    subjects: &[String],
    vm: bool,
) -> ChartResult {
    let (scale, unit) = if vm { (1e9, "s") } else { (1e6, "ms") };
    let area = with_caveat(root, caveat_for(r, vm).as_deref())?;
    let rows: Vec<(String, Vec<(String, f64)>)> = subjects
        .iter()
        .map(|s| (s.clone(), phase_medians(r, s)))
        .filter(|x| !x.1.is_empty())
        .collect();
    // Extra room on the right for the legend.
    let max = rows
        .iter()
        .map(|(_, p)| p.iter().map(|x| x.1).sum::<f64>())
        .fold(0.0, f64::max)
        / scale
        * 1.6;
    let n = rows.len();
    let title = if vm {
        "Startup phases, VMs (median of each phase)"
    } else {
        "Startup phases, host and containers (median of each phase)"
    };
    let mut chart = ChartBuilder::on(&area)
        .caption(title, title_style())
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(150)
        .build_cartesian_2d(0f64..max.max(1e-9), -0.6f64..n as f64 - 0.4)
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = rows.iter().map(|x| x.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(format!("time since spawn ({unit})"))
        .y_labels(30)
        .y_label_formatter(&|y| category(&names, *y))
        .label_style(label_style())
        .axis_desc_style(label_style())
        .draw()
        .map_err(|e| e.to_string())?;
    let mut phase_names: Vec<String> = Vec::new();
    for (_, phases) in &rows {
        for (p, _) in phases {
            if !phase_names.contains(p) {
                phase_names.push(p.clone());
            }
        }
    }
    for (pi, pname) in phase_names.iter().enumerate() {
        let color = PHASE_COLORS[pi % PHASE_COLORS.len()];
        let mut rects = Vec::new();
        for (i, (_, phases)) in rows.iter().enumerate() {
            let start: f64 = phases
                .iter()
                .take_while(|(p, _)| p != pname)
                .map(|x| x.1)
                .sum::<f64>()
                / scale;
            if let Some((_, d)) = phases.iter().find(|(p, _)| p == pname) {
                rects.push(Rectangle::new(
                    [(start, i as f64 - 0.3), (start + d / scale, i as f64 + 0.3)],
                    color.filled(),
                ));
            }
        }
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(pname.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 18, y + 8)], color.filled()));
    }
    for (i, (_, phases)) in rows.iter().enumerate() {
        let total: f64 = phases.iter().map(|x| x.1).sum::<f64>() / scale;
        let txt = if vm {
            format!("{total:.2} {unit}")
        } else {
            format!("{total:.1} {unit}")
        };
        chart
            .draw_series(std::iter::once(Text::new(
                txt,
                (total, i as f64 + 0.42),
                label_style(),
            )))
            .map_err(|e| e.to_string())?;
    }
    legend_and_present(&mut chart, SeriesLabelPosition::UpperRight, &area)
}

/// Empirical CDF of startup wall times, log-scaled x so ms and s fit on one chart.
fn startup_cdf<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
    let any_vm = r
        .startup
        .iter()
        .any(|s| is_vm_subject(&s.subject) && !s.runs.is_empty());
    let area = with_caveat(root, caveat_for(r, any_vm).as_deref())?;
    let all: Vec<f64> = r
        .startup
        .iter()
        .flat_map(|s| s.runs.iter().map(|x| x.wall_ns as f64 / 1e6))
        .collect();
    let lo = all.iter().cloned().fold(f64::INFINITY, f64::min).max(1e-3) * 0.8;
    let hi = all.iter().cloned().fold(0.0, f64::max) * 1.25;
    let mut chart = ChartBuilder::on(&area)
        .caption("Startup time distribution (CDF)", title_style())
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(90)
        .build_cartesian_2d((lo..hi.max(lo * 2.0)).log_scale(), 0f64..1.02)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("spawn → exit (ms, log scale)")
        .x_labels(20)
        .y_desc("fraction of runs ≤ x")
        .label_style(label_style())
        .axis_desc_style(label_style())
        .x_label_formatter(&|x| {
            if *x >= 1.0 {
                format!("{x:.0}")
            } else {
                format!("{x:.1}")
            }
        })
        .draw()
        .map_err(|e| e.to_string())?;
    for s in &r.startup {
        if s.runs.is_empty() {
            continue;
        }
        let color = subject_color(&s.subject);
        let pts = cdf(&s
            .runs
            .iter()
            .map(|x| x.wall_ns as f64 / 1e6)
            .collect::<Vec<_>>());
        let mut step = Vec::new();
        let mut prev = 0.0;
        for (x, y) in &pts {
            step.push((*x, prev));
            step.push((*x, *y));
            prev = *y;
        }
        let label = format!("{} (n={})", s.subject, s.runs.len());
        chart
            .draw_series(LineSeries::new(step, color.stroke_width(3)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pts.iter().map(|p| Circle::new(*p, 5, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    legend_and_present(&mut chart, SeriesLabelPosition::UpperMiddle, &area)
}

/// Grouped bars: per workload, container and VM median cost as a multiple of host's (log y).
fn cpu_overhead<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
    let any_vm = r.cpu.iter().any(|s| is_vm_subject(&s.subject));
    let mut workloads: Vec<String> = Vec::new();
    for s in &r.cpu {
        if !workloads.contains(&s.workload) {
            workloads.push(s.workload.clone());
        }
    }
    let subjects: Vec<String> = ["container", "vm"]
        .into_iter()
        .filter(|s| r.cpu.iter().any(|c| c.subject == *s))
        .map(str::to_string)
        .collect();
    let host = |w: &str| {
        median(
            &r.cpu
                .iter()
                .find(|s| {
                    s.subject == "host" && s.workload == crate::suites::cpu::reference_workload(w)
                })?
                .samples,
        )
    };
    let mut bars: Vec<(usize, usize, f64)> = Vec::new();
    for (wi, w) in workloads.iter().enumerate() {
        for (si, s) in subjects.iter().enumerate() {
            let m = r
                .cpu
                .iter()
                .find(|c| &c.subject == s && &c.workload == w)
                .and_then(|c| median(&c.samples));
            if let Some(x) = ratio(m, host(w)) {
                bars.push((wi, si, x));
            }
        }
    }
    ratio_bars(
        root,
        &RatioBars {
            caveat: caveat_for(r, any_vm),
            title: "CPU overhead: median cost per operation ÷ host",
            x_desc: "workload (probe)",
            groups: workloads,
            series: subjects,
            bars,
        },
    )
}

/// Grouped bars: per kind of I/O, each place's median cost as a multiple of the host's
/// (time per MiB for write and read, time per file for metadata; log y).
fn share<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
    let any_vm = r.share.iter().any(|s| is_vm_subject(&s.subject));
    let places: Vec<String> = r
        .share
        .iter()
        .filter(|s| s.place != "host")
        .map(|s| s.place.clone())
        .collect();
    let mut bars = Vec::new();
    for (fi, f) in SHARE_FIGURES.iter().enumerate() {
        for (pi, p) in places.iter().enumerate() {
            if let Some(x) = share_slowdown(r, p, f) {
                bars.push((fi, pi, x));
            }
        }
    }
    ratio_bars(
        root,
        &RatioBars {
            caveat: caveat_for(r, any_vm),
            title: "Shared directories and disks: median cost ÷ host",
            x_desc: "time per MiB written, per MiB read, per small file",
            groups: SHARE_FIGURES.iter().map(|f| f.to_string()).collect(),
            series: places,
            bars,
        },
    )
}

/// A grouped ratio bar chart: `bars` are (group index, series index, ratio to host).
struct RatioBars {
    /// Backend caveat for the footer, when VM figures are drawn.
    caveat: Option<String>,
    /// Chart title.
    title: &'static str,
    /// X axis description.
    x_desc: &'static str,
    /// Group names along x.
    groups: Vec<String>,
    /// Series names (one colour each, from [`subject_color`]).
    series: Vec<String>,
    /// (group, series, ratio) for every bar with data.
    bars: Vec<(usize, usize, f64)>,
}

/// Draws [`RatioBars`] with a log y axis and a line at 1 (= same as host).
fn ratio_bars<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, c: &RatioBars) -> ChartResult {
    let area = with_caveat(root, c.caveat.as_deref())?;
    let bars = &c.bars;
    let max = bars.iter().map(|b| b.2).fold(1.0, f64::max);
    let lo = bars.iter().map(|b| b.2).fold(1.0, f64::min) * 0.5;
    // Headroom above the tallest bar for its label and the legend (≈ 30 px per series of a
    // ≈ 540 px plot), so the legend never covers a bar.
    let f = ((40 + 30 * c.series.len()) as f64 / 540.0).min(0.6);
    let hi = max * ((max / lo).ln() * f / (1.0 - f)).exp() * 1.3;
    let n = c.groups.len();
    let mut chart = ChartBuilder::on(&area)
        .caption(c.title, title_style())
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(-0.6f64..n as f64 - 0.4, (lo..hi).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(c.x_desc)
        .y_desc("× host (log scale; 1 = no overhead)")
        .y_labels(12)
        .x_labels(30)
        .x_label_formatter(&|x| category(&c.groups, *x))
        .y_label_formatter(&|y| {
            if *y >= 10.0 {
                format!("{y:.0}")
            } else {
                format!("{y:.2}")
            }
        })
        .label_style(label_style())
        .axis_desc_style(label_style())
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(std::iter::once(PathElement::new(
            vec![(-0.6, 1.0), (n as f64 - 0.4, 1.0)],
            BLACK.stroke_width(2),
        )))
        .map_err(|e| e.to_string())?;
    let width = 0.7 / c.series.len().max(1) as f64;
    for (si, s) in c.series.iter().enumerate() {
        let color = subject_color(s);
        let x0 = |gi: usize| gi as f64 - 0.35 + si as f64 * width;
        let rects: Vec<_> = bars
            .iter()
            .filter(|b| b.1 == si)
            .map(|&(gi, _, v)| {
                Rectangle::new([(x0(gi), lo), (x0(gi) + width * 0.9, v)], color.filled())
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(s.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 8), (x + 18, y + 8)], color.filled()));
        chart
            .draw_series(bars.iter().filter(|b| b.1 == si).map(|&(gi, _, v)| {
                Text::new(
                    if v >= 10.0 {
                        format!("{v:.0}×")
                    } else {
                        format!("{v:.2}×")
                    },
                    (x0(gi) + width * 0.45, v * 1.03),
                    bar_label_style(),
                )
            }))
            .map_err(|e| e.to_string())?;
    }
    legend_and_present(&mut chart, SeriesLabelPosition::UpperLeft, &area)
}

/// Lines: host memory used by N idle instances (PSS sum solid, MemAvailable drop dashed).
fn memory_density<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
    let any_vm = r.density.iter().any(|s| is_vm_subject(&s.subject));
    let area = with_caveat(root, caveat_for(r, any_vm).as_deref())?;
    let mib = 1024.0 * 1024.0;
    let xmax = r
        .density
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.instances))
        .max()
        .unwrap_or(1) as f64;
    let ys: Vec<f64> = r
        .density
        .iter()
        .flat_map(|s| {
            s.points.iter().flat_map(|p| {
                [
                    p.pss_sum_bytes as f64 / mib,
                    p.available_drop_bytes as f64 / mib,
                ]
            })
        })
        .collect();
    let ymax = ys.iter().cloned().fold(1.0, f64::max) * 1.15;
    let ymin = ys.iter().cloned().fold(0.0, f64::min) * 1.15;
    let mut chart = ChartBuilder::on(&area)
        .caption(
            "Memory per instance: host memory used by N idle instances",
            title_style(),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(100)
        .build_cartesian_2d(0f64..xmax + 0.5, ymin..ymax)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("idle instances running")
        .y_desc("host memory (MiB)")
        .label_style(label_style())
        .axis_desc_style(label_style())
        .draw()
        .map_err(|e| e.to_string())?;
    for s in &r.density {
        let color = subject_color(&s.subject);
        let (slope, _) = density_slopes(r, &s.subject);
        let pss: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (p.instances as f64, p.pss_sum_bytes as f64 / mib))
            .collect();
        let avail: Vec<(f64, f64)> = s
            .points
            .iter()
            .map(|p| (p.instances as f64, p.available_drop_bytes as f64 / mib))
            .collect();
        let label = format!(
            "{} PSS sum ({} per instance)",
            s.subject,
            slope.map(fmt_bytes).unwrap_or_else(|| "–".into())
        );
        chart
            .draw_series(LineSeries::new(pss.clone(), color.stroke_width(3)))
            .map_err(|e| e.to_string())?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(pss.iter().map(|p| Circle::new(*p, 6, color.filled())))
            .map_err(|e| e.to_string())?;
        let light = color.mix(0.5);
        chart
            .draw_series(
                avail
                    .iter()
                    .map(|p| TriangleMarker::new(*p, 8, light.filled())),
            )
            .map_err(|e| e.to_string())?
            .label(format!("{} MemAvailable drop (noisy)", s.subject))
            .legend(move |(x, y)| TriangleMarker::new((x + 12, y), 8, light.filled()));
    }
    legend_and_present(&mut chart, SeriesLabelPosition::UpperLeft, &area)
}

/// Bars: host disk bytes per extra instance (allocated, median), log y in KiB.
fn disk<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
    let any_vm = r.disk.iter().any(|s| is_vm_subject(&s.subject));
    let area = with_caveat(root, caveat_for(r, any_vm).as_deref())?;
    let vals: Vec<(String, f64)> = r
        .disk
        .iter()
        .filter_map(|s| {
            median(
                &s.allocated_bytes
                    .iter()
                    .map(|&x| x as f64)
                    .collect::<Vec<_>>(),
            )
            .map(|m| (s.subject.clone(), (m / 1024.0).max(1.0)))
        })
        .collect();
    let hi = vals.iter().map(|v| v.1).fold(10.0, f64::max) * 3.0;
    let n = vals.len();
    let mut chart = ChartBuilder::on(&area)
        .caption(
            "Host disk per extra instance (allocated, median)",
            title_style(),
        )
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(110)
        .build_cartesian_2d(-0.6f64..n as f64 - 0.4, (0.5f64..hi).log_scale())
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = vals.iter().map(|v| v.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("instance kind")
        .y_desc("KiB on host disk (log scale)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_labels(30)
        .x_label_formatter(&|x| category(&names, *x))
        .label_style(label_style())
        .axis_desc_style(label_style())
        .draw()
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(vals.iter().enumerate().map(|(i, (s, v))| {
            Rectangle::new(
                [(i as f64 - 0.3, 0.5), (i as f64 + 0.3, *v)],
                subject_color(s).filled(),
            )
        }))
        .map_err(|e| e.to_string())?;
    chart
        .draw_series(vals.iter().enumerate().map(|(i, (_, v))| {
            Text::new(
                fmt_bytes(v * 1024.0),
                (i as f64, v * 1.05),
                bar_label_style(),
            )
        }))
        .map_err(|e| e.to_string())?;
    area.present().map_err(|e| e.to_string())
}

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
    (files, stems, notes)
}

/// The legend box every chart uses (readable on a projector), then the page is written out.
fn legend_and_present<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
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
