//! `vcompare report`: re-renders report.md and the charts from a results.json (so results
//! from another machine can be rendered anywhere), or compares two runs side by side.

use std::path::PathBuf;

use vcompare_bench::{report, Results};

/// `vcompare report DIR…` / `vcompare report --compare A B`.
pub fn report(dirs: &[PathBuf], compare: bool) -> anyhow::Result<i32> {
    if compare {
        anyhow::ensure!(
            dirs.len() == 2,
            "--compare needs exactly two results directories"
        );
        let a = Results::load(&dirs[0])?;
        let b = Results::load(&dirs[1])?;
        print!(
            "{}",
            report::markdown::compare(
                &a,
                &dirs[0].display().to_string(),
                &b,
                &dirs[1].display().to_string()
            )
        );
        return Ok(0);
    }
    anyhow::ensure!(
        !dirs.is_empty(),
        "give a results directory (one holding results.json)"
    );
    for d in dirs {
        let r = Results::load(d)?;
        let out = if d.is_dir() {
            d.clone()
        } else {
            d.parent().map(PathBuf::from).unwrap_or_else(|| ".".into())
        };
        let rendered = report::render(&r, &out)?;
        println!("report: {}", rendered.report.display());
        for n in &rendered.notes {
            println!("note: {n}");
        }
    }
    Ok(0)
}
