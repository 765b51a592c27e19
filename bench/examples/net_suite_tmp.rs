// TEMPORARY driver (to be deleted): runs the net suite through the library until the CLI accepts --suite net.
use std::path::PathBuf;
use vcompare_bench::harness::Harness;
use vcompare_bench::results::{Environment, Results, RunConfig};
use vcompare_bench::suites::{net, Plan};

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (exe, root, rootfs, modes, runs, out) =
        (&a[1], &a[2], &a[3], &a[4], a[5].parse().unwrap(), &a[6]);
    let mut h = Harness::new(
        PathBuf::from(exe),
        PathBuf::from(root),
        "vcompare/probe:latest".into(),
        PathBuf::from(rootfs),
        runs,
        1,
    )
    .unwrap();
    let plan = Plan {
        modes: modes.split(',').map(String::from).collect(),
        suites: vec!["net".into()],
        ..Plan::default()
    };
    let env = Environment {
        kvm_backend: "nested (PVM): guest kernel code emulated".into(),
        cpus: 2,
        ..Default::default()
    };
    let mut r = Results::new(
        env,
        RunConfig {
            suites: vec!["net".into()],
            modes: plan.modes.clone(),
            runs,
            ..Default::default()
        },
    );
    h.start_progress(net::estimate_ms(&h, &plan));
    let t = std::time::Instant::now();
    net::run(&mut h, &plan, &mut r);
    h.progress.finish_and_clear();
    r.config.duration_secs = t.elapsed().as_secs_f64();
    r.save(std::path::Path::new(out)).unwrap();
    let rendered = vcompare_bench::report::render(&r, std::path::Path::new(out)).unwrap();
    println!("{}", vcompare_bench::report::markdown::targets_text(&r));
    println!("skipped: {:?}", r.skipped);
    println!("report: {}", rendered.report.display());
}
