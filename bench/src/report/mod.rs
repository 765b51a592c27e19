//! Rendering a [`crate::Results`] into `report.md` and charts (SVG + PNG).

pub mod charts;
pub mod markdown;

use std::path::{Path, PathBuf};

use crate::error::{io_at, Result};
use crate::results::Results;

/// What [`render`] wrote.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The report.md path.
    pub report: PathBuf,
    /// Chart files written (SVG and PNG).
    pub charts: Vec<PathBuf>,
    /// Problems that did not stop the report (e.g. no font for PNGs).
    pub notes: Vec<String>,
}

/// Writes the charts and `report.md` for `r` into `dir`.
pub fn render(r: &Results, dir: &Path) -> Result<Rendered> {
    std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    let (charts, stems, notes) = charts::render_all(r, dir);
    let md = markdown::render(r, &stems);
    let report = dir.join("report.md");
    std::fs::write(&report, md).map_err(io_at(&report))?;
    Ok(Rendered {
        report,
        charts,
        notes,
    })
}
