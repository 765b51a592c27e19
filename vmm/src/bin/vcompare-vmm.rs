//! `vcompare-vmm JOB.json`: one microVM in a small dedicated process (see
//! `vcompare_vmm::process`). Exit status 0 means a result file was written. The diagnostics
//! switches (`VCOMPARE_VMM_*`) are read here, once, and passed down; debug diagnostics go
//! through `tracing`, filtered by `RUST_LOG` (the CLI sets it for `--debug`).

/// Installs the `tracing` subscriber of this process (stderr, filtered by `RUST_LOG`) when
/// `RUST_LOG` is set, as the CLI does for `--debug`. Without it no subscriber is installed:
/// the VMM emits only debug events, and leaving the filter machinery out keeps it out of the
/// VMM's RSS and of the launch → first KVM_RUN span that the benchmark reports.
fn init_logging() {
    if std::env::var_os("RUST_LOG").is_none() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() {
    // The VMM setup span (launch → first KVM_RUN) starts here.
    let launched = std::time::Instant::now();
    init_logging();
    // After the subscriber: it decides whether the setup steps are traced.
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
