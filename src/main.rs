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

use clap::Parser;

use cli::{Cli, Command};

fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    // Before the data directory is opened: the script comes from the CLI definition alone, and
    // installing it (often as root, at package time) must not create a data directory.
    if let Command::Completions { shell } = &cli.command {
        return commands::completions::completions(*shell);
    }
    let root = cli.root.clone().unwrap_or_else(paths::default_root);
    let ctx = commands::Ctx::open(root)?;
    use commands::*;
    match &cli.command {
        Command::Run(a) => run::run(&ctx, a),
        Command::Monitor { id } => run::monitor(&ctx, id),
        Command::Start { ids, attach } => run::start(&ctx, ids, *attach),
        Command::Ps { all, quiet, format } => view::ps(&ctx, *all, *quiet, *format),
        Command::Stop { time, ids } => control::stop(&ctx, ids, *time),
        Command::Kill { signal, ids } => control::kill(&ctx, ids, signal),
        Command::Rm { force, ids } => control::rm(&ctx, ids, *force),
        Command::Logs { follow, id } => view::logs(&ctx, id, *follow),
        Command::Exec {
            interactive,
            tty,
            id,
            cmd,
        } => view::exec(&ctx, id, cmd, *interactive, *tty),
        Command::Inspect { id, format } => view::inspect(&ctx, id, *format),
        Command::Image(c) => image::image(&ctx, c),
        Command::Volume(c) => volume::volume(&ctx, c),
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
