//! What the VM end-to-end tests (`tests/vm_e2e.rs`, `tests/vm_snapshot.rs`) share: a private
//! data root that runs the real `vcompare` in the test's network namespace and removes every
//! instance (VMs included) when dropped, the slow poll a nested boot needs, the readers of a
//! run's output that drop vcompare's informational notes, and the `require_vm!` check of the
//! machine and the build products a boot needs. Each test file adds its own methods to
//! [`VmRoot`] in its own `impl` block (an inherent impl may live anywhere in the test crate).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A private data root for one VM test (the `--root` of every command it runs), removed with
/// every instance in it on drop, so a failed test leaves no VM running and no directory.
/// The field is the directory: tests read files below it and use a spare root as a scratch
/// host directory (a share).
pub struct VmRoot(pub PathBuf);

impl VmRoot {
    /// `<temp dir>/<prefix>-<name>-<pid>`, emptied first: the pid keeps concurrent test
    /// processes apart, the emptying drops what a killed earlier run with the same pid left,
    /// and `prefix` (`vcmp-e2e`, `vcmp-snap`) tells which test file a leftover came from.
    pub fn new(prefix: &str, name: &str) -> VmRoot {
        let p = std::env::temp_dir().join(format!("{prefix}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        VmRoot(p)
    }

    /// `vcompare --root ROOT ARGS…` in the test's network namespace, not yet started; stdin
    /// is left to the caller (a test may feed it or give it a terminal).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = super::test_host::host_cmd(env!("CARGO_BIN_EXE_vcompare"));
        c.arg("--root").arg(&self.0).args(args);
        c
    }

    /// Runs [`VmRoot::cmd`] with stdin /dev/null and captures its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Runs and asserts exit status 0; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert_eq!(o.status.code(), Some(0), "vcompare {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// `inspect --format json Q`: how the tests see what a run did (exit, VMM pid, snapshot).
    pub fn inspect(&self, q: &str) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["inspect", "--format", "json", q])).unwrap()
    }

    /// The full id of the instance named (or id-prefixed) `q`.
    pub fn id_of(&self, q: &str) -> String {
        self.inspect(q)["id"].as_str().unwrap().to_string()
    }
}

impl Drop for VmRoot {
    /// Removes every instance first (`rm -f` kills a detached VM a failed test left running),
    /// then the directory.
    fn drop(&mut self) {
        if self.0.join("instances").is_dir() {
            let ids = self.run(&["ps", "-a", "-q"]);
            for id in String::from_utf8_lossy(&ids.stdout).split_whitespace() {
                let _ = self.run(&["rm", "-f", id]);
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `f` every 200 ms until it returns `Some`. The 10-minute guard only stops a hang (a
/// nested boot under load can take minutes); it is not a timing assertion.
pub fn wait_boot<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Exit status, stdout and stderr of a run, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "status={:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// True for the two informational notes vcompare may print around any run: the one-time
/// "building the default image" and, on PVM hosts only, the VMM's "KVM backend is nested
/// (PVM) …" line (a detached run's log holds the VMM's stderr too). Tests that assert exact
/// output drop them so they hold on every host.
pub fn is_note(line: &str) -> bool {
    line.starts_with("building the default image")
        || line.starts_with("vcompare: KVM backend is nested (PVM)")
}

/// `s` without the notes of [`is_note`], each remaining line ended by `\n`.
pub fn without_notes(s: &str) -> String {
    s.lines()
        .filter(|l| !is_note(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The lines of stderr, minus the notes of [`is_note`].
pub fn stderr_lines(o: &Output) -> Vec<String> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .filter(|l| !is_note(l))
        .map(String::from)
        .collect()
}

/// Where `scripts/build-static.sh` puts the static init and probe (next to the target
/// directory of the `vcompare` under test).
pub fn static_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_vcompare"))
        .parent()
        .unwrap()
        .join("../static/x86_64-unknown-linux-gnu/release")
}

/// Asserts the guest kernel and the static init/probe are built, and brings `vcompare-vmm`
/// up to date next to `vcompare` (build products are not machine capabilities: their
/// absence is a failure, not a skip).
pub fn require_vm_build() {
    let kernel_built = std::env::var_os("VCOMPARE_KERNEL").is_some()
        || Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("kernels/build.sh"))
            .arg("--print-path")
            .output()
            .is_ok_and(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).is_file());
    assert!(
        kernel_built,
        "the guest kernel is not built: run kernels/build.sh (scripts/test.sh does)"
    );
    let stat = static_dir();
    assert!(
        stat.join("vcompare-init").is_file() && stat.join("probe").is_file(),
        "static binaries missing: run scripts/build-static.sh (scripts/test.sh does)"
    );
    super::vmm_binary();
}

/// `require_vm!()`: skips the test (the shared convention of `skip.rs`) unless /dev/kvm is
/// usable, then fails unless every build product a boot needs is there
/// ([`require_vm_build`]), so every VM test checks its preconditions the same way.
#[macro_export]
macro_rules! require_vm {
    () => {
        $crate::skip_unless!(
            $crate::common::skip::kvm_usable(),
            "needs a read-write /dev/kvm to boot microVMs"
        );
        $crate::common::vm_root::require_vm_build();
    };
}
