//! `vcompare`: run the same OCI image as a KVM microVM or as a namespace container, and
//! measure what the difference costs. This binary is a thin CLI over the image store, the
//! instance records and the two backends (`vcompare-container`, `vcompare-vmm`).

mod artifacts;
mod backend;
mod cli;
mod commands;
mod default_image;
mod fsutil;
mod instance;
mod paths;
mod store;
mod volume;

use std::sync::atomic::{AtomicBool, Ordering};

use clap::Parser;

use cli::{Cli, Command};

/// Whether `--debug` stands in for an unset `RUST_LOG` (see [`child_log_filter`]).
static DEBUG_WITHOUT_RUST_LOG: AtomicBool = AtomicBool::new(false);

/// The filter `--debug` means when `RUST_LOG` is unset.
const DEBUG_FILTER: &str = "debug";

/// Installs this process's `tracing` subscriber: debug diagnostics on stderr, filtered by
/// `RUST_LOG` if set, else by `--debug` (everything from DEBUG up), else warnings only.
/// User-facing messages do not go through it: they are printed as they are.
fn init_logging(debug: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var_os(EnvFilter::DEFAULT_ENV) {
        Some(_) => EnvFilter::try_from_default_env().unwrap_or_else(|e| {
            eprintln!("vcompare: warning: ignoring RUST_LOG: {e}");
            EnvFilter::new("warn")
        }),
        None if debug => {
            DEBUG_WITHOUT_RUST_LOG.store(true, Ordering::Relaxed);
            EnvFilter::new(DEBUG_FILTER)
        }
        None => EnvFilter::new("warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// The `RUST_LOG` a child process (`vcompare-vmm`) must be given so it logs as this one
/// does: `Some` only for `--debug` without `RUST_LOG` (a set `RUST_LOG` is inherited).
pub(crate) fn child_log_filter() -> Option<&'static str> {
    DEBUG_WITHOUT_RUST_LOG
        .load(Ordering::Relaxed)
        .then_some(DEBUG_FILTER)
}

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    // Before the data directory is opened: the script comes from the CLI definition alone, and
    // installing it (often as root, at package time) must not create a data directory.
    if let Command::Completions { shell } = &cli.command {
        return commands::completions::completions(*shell);
    }
    let root = cli.root.clone().unwrap_or_else(paths::default_root);
    let ctx = commands::Ctx::open(root)?;
    use commands::*;
    // Any command first removes the network leftovers of instances that died with their
    // vcompare (SIGKILL, power loss); not the DNS responder, which is part of a live network.
    if !matches!(
        cli.command,
        Command::Network(cli::NetworkCommand::DnsServe { .. })
    ) {
        backend::network::cleanup_stale(
            &ctx.instances,
            &vcompare_network::Networks::open(&ctx.root),
        );
    }
    match &cli.command {
        Command::Run(a) => run::run(&ctx, a),
        Command::Monitor { id } => run::monitor(&ctx, id),
        Command::Start { ids, attach } => run::start(&ctx, ids, *attach),
        Command::Ps { all, quiet, format } => view::ps(&ctx, *all, *quiet, *format),
        Command::Stop { time, ids } => control::stop(&ctx, ids, *time),
        Command::Kill { signal, ids } => control::kill(&ctx, ids, signal),
        Command::Rm { force, ids } => control::rm(&ctx, ids, *force),
        Command::Logs { follow, id } => view::logs(&ctx, id, *follow),
        Command::Exec(a) => view::exec(&ctx, a),
        Command::Inspect { id, format } => view::inspect(&ctx, id, *format),
        Command::Image(c) => image::image(&ctx, c),
        Command::Volume(c) => volume::volume(&ctx, c),
        Command::Network(c) => network::network(&ctx, c),
        Command::Doctor { format } => doctor::doctor(&ctx, *format),
        Command::Demo { out } => demo::demo(&ctx, out.clone()),
        Command::Bench(a) => bench::bench(&ctx, a),
        Command::Report { dirs, compare } => report::report(dirs, *compare),
        Command::Completions { .. } => unreachable!("handled before the data directory is opened"),
    }
}

fn main() {
    backend::mark_process_start();
    // Rust ignores SIGPIPE; restore the Unix default, as in every CLI tool: `vcompare ps | head`
    // ends quietly instead of panicking on EPIPE, and workloads (which inherit the disposition
    // through exec) see the SIGPIPE they would see under Docker.
    // SAFETY: setting a signal disposition to its default before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    init_logging(cli.debug);
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            // One line: the outermost context and its causes, joined.
            eprintln!("vcompare: error: {e:#}");
            125
        }
    };
    std::process::exit(code);
}
