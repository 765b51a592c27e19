//! `vcompare completions SHELL`: prints a shell completion script generated from the clap
//! definition in `cli.rs`, so subcommands and flags complete without a hand-kept script
//! that drifts from the real CLI.

use std::io::Write;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::cli::{Cli, CompletionShell};

/// The program name the scripts register for (`complete -F _vcompare vcompare`, …).
const BIN: &str = "vcompare";

/// Writes the completion script for `shell` to stdout; returns the exit status (0).
///
/// The script is built in memory and written in one go, so a write error is reported as one
/// error line instead of a panic half-way. A reader that goes away early (`| head`) ends the
/// process through SIGPIPE, whose default disposition `main` restores: quietly.
pub fn completions(shell: CompletionShell) -> anyhow::Result<i32> {
    let mut cmd = visible_command(Cli::command());
    let mut script = Vec::new();
    clap_complete::generate(generator(shell), &mut cmd, BIN, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("writing the completion script to stdout")?;
    Ok(0)
}

/// The CLI as completions should see it: `full` without its hidden subcommands.
///
/// clap_complete offers hidden subcommands like any other (a known limitation), so
/// `vcompare <TAB>` would propose the internal `__monitor`. clap cannot remove a subcommand,
/// so the root is assembled again from `full`'s own arguments and visible subcommands; only
/// the root settings that change what completes are carried over (its `--version` flag and
/// the propagation of it). Nothing of the CLI surface is restated here. Hidden subcommands
/// below the top level are not filtered (there are none).
fn visible_command(full: clap::Command) -> clap::Command {
    debug_assert_eq!(full.get_name(), BIN);
    let mut root = clap::Command::new(BIN).propagate_version(full.is_propagate_version_set());
    if full.get_version().is_some() {
        root = root.version(env!("CARGO_PKG_VERSION"));
    }
    if let Some(about) = full.get_about() {
        root = root.about(about.clone());
    }
    root = root.args(full.get_arguments().cloned());
    root.subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// The `clap_complete` generator for one of our shells.
fn generator(shell: CompletionShell) -> Shell {
    match shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rebuilt root keeps every visible subcommand and every root argument of the real
    /// CLI, and drops exactly the hidden subcommands.
    #[test]
    fn visible_command_drops_only_hidden_subcommands() {
        let full = Cli::command();
        let visible = visible_command(Cli::command());
        let names = |c: &clap::Command, hidden: bool| -> Vec<String> {
            c.get_subcommands()
                .filter(|s| s.is_hide_set() == hidden)
                .map(|s| s.get_name().to_string())
                .collect()
        };
        assert_eq!(names(&visible, false), names(&full, false));
        assert!(names(&visible, true).is_empty());
        assert!(names(&full, true).contains(&"__monitor".to_string()));
        let args = |c: &clap::Command| -> Vec<String> {
            c.get_arguments().map(|a| a.get_id().to_string()).collect()
        };
        assert_eq!(args(&visible), args(&full));
        visible.debug_assert();
    }
}
