//! Startup charts: the phase timelines (stacked bars, one chart for host and containers, one
//! for VMs) and the CDF of wall times. Separate as the one family drawn from startup runs.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{
    category, caveat_for, label_style, legend_and_present, subject_color, title_style, with_caveat,
    PHASE_COLORS,
};
use super::ChartResult;
use crate::results::{is_vm_subject, Results};
use crate::stats::{cdf, median};

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
pub(super) fn startup_phases<DB: DrawingBackend>(
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
pub(super) fn startup_cdf<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Results,
) -> ChartResult {
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
