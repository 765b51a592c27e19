//! `vcompare-vmm JOB.json`: one microVM in a small dedicated process (see
//! `vcompare_vmm::process`). Exit status 0 means a result file was written. The diagnostics
//! switches (`VCOMPARE_VMM_*`) are read here, once, and passed down.

fn main() {
    // The VMM setup span (launch → first KVM_RUN) starts here.
    let launched = std::time::Instant::now();
    let debug = vcompare_vmm::DebugOptions::from_env();
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: vcompare-vmm JOB.json");
        std::process::exit(2);
    };
    let job = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(j) => j,
        Err(e) => {
            eprintln!(
                "vcompare-vmm: cannot read the job {}: {e}",
                std::path::Path::new(&path).display()
            );
            std::process::exit(2);
        }
    };
    if let Err(e) = vcompare_vmm::process::run_job(job, debug, launched) {
        eprintln!("vcompare-vmm: {e}");
        std::process::exit(1);
    }
}
