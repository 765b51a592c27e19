//! Per-instance footprint charts: memory density (host memory used by N idle instances) and
//! host disk per extra instance. Separate as the family that plots what an instance costs the
//! host, not how fast it is.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::style::{
    bar_label_style, category, caveat_for, label_style, legend_and_present, subject_color,
    title_style, with_caveat,
};
use super::ChartResult;
use crate::report::markdown::{density_slopes, fmt_bytes};
use crate::results::{is_vm_subject, Results};
use crate::stats::median;

/// Lines: host memory used by N idle instances (PSS sum solid, MemAvailable drop dashed).
pub(super) fn memory_density<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    r: &Results,
) -> ChartResult {
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
pub(super) fn disk<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, r: &Results) -> ChartResult {
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
