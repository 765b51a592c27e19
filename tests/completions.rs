//! End-to-end tests of `vcompare completions SHELL` through the real binary. The bash script
//! is loaded into a real bash and its completion function is called the way bash calls it on
//! TAB; zsh and fish are not installed on the test hosts, so their scripts are checked for the
//! subcommands in each shell's own syntax. Also: an unknown shell is a clap usage error, and a
//! reader that goes away early ends the command quietly. No data directory, root or KVM needed.

mod common;

use std::process::{Command, Output, Stdio};

use common::text;

/// Top-level subcommands every script must offer.
const SUBCOMMANDS: [&str; 6] = ["run", "image", "ps", "exec", "doctor", "completions"];

/// Subcommands of `image` every script must offer.
const IMAGE_SUBCOMMANDS: [&str; 3] = ["import", "build", "ls"];

/// `vcompare completions ARGS`, without `--root`: printing a script must need no data directory.
fn completions(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vcompare"))
        .arg("completions")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run vcompare completions")
}

/// Runs `completions SHELL`, asserts a clean success and a script of real size; returns it.
fn script(shell: &str) -> String {
    let o = completions(&[shell]);
    assert!(
        o.status.success(),
        "completions {shell} failed ({:?}): {}",
        o.status,
        text(&o.stderr)
    );
    assert!(
        o.stderr.is_empty(),
        "completions {shell} wrote to stderr: {}",
        text(&o.stderr)
    );
    let s = String::from_utf8(o.stdout).expect("the script is UTF-8");
    assert!(
        s.len() > 1000,
        "the {shell} script is suspiciously short:\n{s}"
    );
    s
}

/// Runs `bash -c PROGRAM`; asserts success and returns stdout.
fn bash(program: &str) -> String {
    let o = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", program])
        .stdin(Stdio::null())
        .output()
        .expect("bash is installed");
    assert!(
        o.status.success(),
        "bash failed: {}\n{program}",
        text(&o.stderr)
    );
    text(&o.stdout)
}

/// What the bash completion offers for the command line `words` with the cursor on a new,
/// empty last word (`vcompare image <TAB>` is `["vcompare", "image"]`): loads `script`, sets
/// COMP_WORDS/COMP_CWORD as bash does and calls the registered function with bash's three
/// arguments (command, current word, previous word).
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let quoted: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let program = format!(
        "{script}\n\
         COMP_WORDS=({} '')\n\
         COMP_CWORD={}\n\
         _vcompare vcompare '' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        quoted.join(" "),
        words.len(),
        words.last().unwrap()
    );
    bash(&program).lines().map(str::to_string).collect()
}

#[test]
fn bash_script_parses_and_completes_subcommands_and_values() {
    let s = script("bash");
    assert!(s.contains("_vcompare()"), "no _vcompare function:\n{s}");
    assert!(
        s.contains("complete -F _vcompare"),
        "no `complete -F _vcompare`:\n{s}"
    );
    // Syntax check of the script on its own, then its registration as bash sees it.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vcompare.bash");
    std::fs::write(&file, &s).unwrap();
    bash(&format!("bash -n '{}'", file.display()));
    let registered = bash(&format!(
        "source '{}'; complete -p vcompare",
        file.display()
    ));
    assert!(registered.contains("-F _vcompare"), "{registered}");

    let top = bash_complete(&s, &["vcompare"]);
    for sub in SUBCOMMANDS.iter().chain(&["--root"]) {
        assert!(
            top.iter().any(|w| w == sub),
            "`vcompare <TAB>` lacks {sub}: {top:?}"
        );
    }
    let image = bash_complete(&s, &["vcompare", "image"]);
    for sub in IMAGE_SUBCOMMANDS {
        assert!(
            image.iter().any(|w| w == sub),
            "`vcompare image <TAB>` lacks {sub}: {image:?}"
        );
    }
    let modes = bash_complete(&s, &["vcompare", "run", "--mode"]);
    assert_eq!(modes, ["container", "vm"], "`run --mode <TAB>`");
    let shells = bash_complete(&s, &["vcompare", "completions"]);
    for sh in ["bash", "zsh", "fish"] {
        assert!(
            shells.iter().any(|w| w == sh),
            "`completions <TAB>` lacks {sh}: {shells:?}"
        );
    }
}

#[test]
fn zsh_script_is_a_compdef_function_with_the_subcommands() {
    let s = script("zsh");
    assert!(
        s.starts_with("#compdef vcompare\n"),
        "no #compdef header:\n{s}"
    );
    assert!(s.contains("_vcompare() {"), "no _vcompare function");
    // Subcommands are `_describe` entries 'NAME:DESCRIPTION'.
    for sub in SUBCOMMANDS.iter().chain(&IMAGE_SUBCOMMANDS) {
        assert!(s.contains(&format!("\n'{sub}:")), "zsh script lacks {sub}");
    }
}

#[test]
fn fish_script_completes_the_subcommands() {
    let s = script("fish");
    let lines: Vec<&str> = s
        .lines()
        .filter(|l| l.starts_with("complete -c vcompare "))
        .collect();
    assert!(lines.len() > 50, "few `complete -c vcompare` lines:\n{s}");
    let offers = |condition: &str, word: &str| {
        lines
            .iter()
            .any(|l| l.contains(condition) && l.contains(&format!(" -a \"{word}\"")))
    };
    for sub in SUBCOMMANDS {
        assert!(
            offers("__fish_vcompare_needs_command", sub),
            "fish lacks {sub}"
        );
    }
    for sub in IMAGE_SUBCOMMANDS {
        assert!(
            offers("__fish_vcompare_using_subcommand image", sub),
            "fish lacks image {sub}"
        );
    }
}

/// The internal monitor subcommand is hidden from --help and must not be offered on TAB.
#[test]
fn hidden_monitor_is_not_offered() {
    for shell in ["bash", "zsh", "fish"] {
        let s = script(shell);
        assert!(
            !s.contains("__monitor"),
            "{shell} script offers the internal __monitor"
        );
    }
}

#[test]
fn unknown_shell_is_a_usage_error() {
    let o = completions(&["tcsh"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "clap's usage errors exit 2: {o:?}"
    );
    assert!(
        o.stdout.is_empty(),
        "nothing on stdout: {}",
        text(&o.stdout)
    );
    let err = text(&o.stderr);
    assert!(err.starts_with("error: invalid value 'tcsh'"), "{err}");
    assert!(err.contains("[possible values: bash, zsh, fish]"), "{err}");
}

/// A stdout whose reader is already gone (`vcompare completions bash | true`) ends the command
/// through SIGPIPE, with nothing on stderr: no panic, no error line.
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
    drop(read_end);
    let o = Command::new(env!("CARGO_BIN_EXE_vcompare"))
        .args(["completions", "bash"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write_end))
        .stderr(Stdio::piped())
        .output()
        .expect("run vcompare completions");
    assert!(o.stderr.is_empty(), "stderr: {}", text(&o.stderr));
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "{:?}", o.status);
}
