//! Grouped ratio bars (median cost ÷ the reference's, log y): CPU overhead per workload,
//! shared directory / disk I/O per kind, and network paths against host loopback. Separate
//! because all three draw through one [`RatioBars`] chart.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{
    bar_label_style, category, caveat_for, label_style, legend_and_present, subject_color,
    title_style, with_caveat,
};
use super::ChartResult;
use crate::report::markdown::{
    net_is_vm, net_slowdown, share_slowdown, NET_FIGURES, SHARE_FIGURES,
};
use crate::results::{is_vm_subject, Results};
use crate::stats::{median, ratio};
use crate::suites::net::paths::LOOPBACK;

/// Grouped bars: per workload, container and VM median cost as a multiple of host's (log y).
pub(super) fn cpu_overhead<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Results,
) -> ChartResult {
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
            y_desc: HOST_Y,
            groups: workloads,
            series: subjects,
            bars,
        },
    )
}

/// Grouped bars: per kind of I/O, each place's median cost as a multiple of the host's
/// (time per MiB for write and read, time per file for metadata; log y).
pub(super) fn share<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
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
            y_desc: HOST_Y,
            groups: SHARE_FIGURES.iter().map(|f| f.to_string()).collect(),
            series: places,
            bars,
        },
    )
}

/// Grouped bars: per network figure (p50 and p99 transaction latency, time per MiB of bulk),
/// each path's median cost as a multiple of host loopback's (log y).
pub(super) fn net<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
    let any_vm = r.net.iter().any(net_is_vm);
    let paths: Vec<String> = r
        .net
        .iter()
        .filter(|s| s.path != LOOPBACK)
        .map(|s| s.path.clone())
        .collect();
    let mut bars = Vec::new();
    for (fi, f) in NET_FIGURES.iter().enumerate() {
        for (pi, p) in paths.iter().enumerate() {
            if let Some(x) = net_slowdown(r, p, f) {
                bars.push((fi, pi, x));
            }
        }
    }
    ratio_bars(
        root,
        &RatioBars {
            caveat: caveat_for(r, any_vm),
            title: "TCP over each path: median cost ÷ host loopback",
            x_desc: "p50 and p99 time per transaction (100 B → 200 B), time per MiB of bulk",
            y_desc: "× loopback (log scale; 1 = as fast as lo)",
            groups: NET_FIGURES.iter().map(|f| f.to_string()).collect(),
            series: paths,
            bars,
        },
    )
}

/// The y axis of the charts whose reference is the host.
const HOST_Y: &str = "× host (log scale; 1 = no overhead)";

/// A grouped ratio bar chart: `bars` are (group index, series index, ratio to the reference).
struct RatioBars {
    /// Backend caveat for the footer, when VM figures are drawn.
    caveat: Option<String>,
    /// Chart title.
    title: &'static str,
    /// X axis description.
    x_desc: &'static str,
    /// Y axis description: the reference the ratios divide by.
    y_desc: &'static str,
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
        .y_desc(c.y_desc)
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
