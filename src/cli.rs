//! The command-line surface (clap derive), docker-like so course material maps one to one.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backend::Mode;
use vcompare_bench::suites::share::Sizes;

/// Run the same OCI image as a KVM microVM or as a namespace container, and measure the difference.
#[derive(Debug, Parser)]
#[command(name = "vcompare", version, about, propagate_version = true)]
pub struct Cli {
    /// Data directory (images, instances, caches).
    #[arg(long, global = true, env = "VCOMPARE_ROOT")]
    pub root: Option<PathBuf>,
    /// Show debug diagnostics on stderr (same as RUST_LOG=debug; RUST_LOG wins when set).
    #[arg(long, global = true)]
    pub debug: bool,
    #[command(subcommand)]
    pub command: Command,
}

/// Output format for listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// All commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and run an instance of IMAGE (the built-in default is vcompare/probe).
    Run(RunArgs),
    /// List instances (running only, unless -a).
    Ps {
        /// Show all instances, also exited ones.
        #[arg(short, long)]
        all: bool,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Start an exited instance again (containers keep their RW layer, VMs their disk).
    Start {
        /// Attach: run in the foreground and return its exit status.
        #[arg(short, long)]
        attach: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Stop instances: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short = 't', long = "time", default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Send a signal to instances (default SIGKILL).
    Kill {
        /// Signal name or number.
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Remove instances and what they own on the host (RW layer, disk, logs).
    Rm {
        /// Kill running instances first.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print an instance's output (detached instances).
    Logs {
        /// Keep following until the instance exits.
        #[arg(short, long)]
        follow: bool,
        id: String,
    },
    /// Run a command inside a running instance.
    Exec(ExecArgs),
    /// Host view vs instance view of one instance.
    Inspect {
        id: String,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Manage named volumes (`-v NAME:GUEST`).
    #[command(subcommand)]
    Volume(VolumeCommand),
    /// Manage networks (`--network NAME`): bridges with their own subnet, DNS and rules.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Run the benchmark suite.
    Bench(BenchArgs),
    /// Re-render a report from results.json.
    Report {
        /// A results directory (or two with --compare).
        dirs: Vec<PathBuf>,
        /// Compare two runs side by side.
        #[arg(long)]
        compare: bool,
    },
    /// The lecture demo: the same image as container and VM, side by side.
    Demo {
        /// Where to write the demo report.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check what this host offers (KVM backend, namespaces, cgroups, peers).
    Doctor {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Print a shell completion script to stdout.
    ///
    /// Install it where the shell looks for completions, e.g.
    /// `vcompare completions bash > /etc/bash_completion.d/vcompare`.
    Completions {
        /// The shell to write the script for.
        #[arg(value_enum)]
        shell: CompletionShell,
    },
    /// Internal: the monitor of a detached instance.
    #[command(name = "__monitor", hide = true)]
    Monitor { id: String },
}

/// The shells `vcompare completions` writes scripts for: the three people use interactively
/// on the Linux hosts this tool runs on (a closed list, so `--help` names them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    /// Bash (bash-completion's `complete -F`).
    Bash,
    /// Zsh (a `#compdef` function).
    Zsh,
    /// Fish (`complete -c` lines).
    Fish,
}

/// `vcompare exec`: what to run inside a running instance, as typed.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Environment variable K=V for this command (repeatable; added to the instance's).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside (default: the instance's).
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// USER[:GROUP] or UID[:GID] inside (default: the instance's).
    #[arg(short, long)]
    pub user: Option<String>,
    /// The instance (id, id prefix or name).
    pub id: String,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `vcompare run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// container (shared kernel) or vm (own kernel).
    #[arg(long, value_enum, default_value_t = Mode::Container)]
    pub mode: Mode,
    /// Detached: print the id and keep running in the background.
    #[arg(short, long)]
    pub detach: bool,
    /// Remove the instance when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Name the instance (usable wherever an id is).
    #[arg(long)]
    pub name: Option<String>,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Bind a host directory or a named volume: HOST:GUEST[:ro] or NAME:GUEST[:ro].
    #[arg(short, long = "volume")]
    pub volumes: Vec<String>,
    /// Environment variable K=V (repeatable).
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Working directory inside.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// UID[:GID] inside.
    #[arg(short, long)]
    pub user: Option<String>,
    /// Override the image's entrypoint.
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Hostname inside (default: the 12-hex short id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Memory: a cgroup limit for containers, guest RAM for VMs (e.g. 256m, 1g; default VM 256m).
    #[arg(short, long)]
    pub memory: Option<String>,
    /// CPUs: a quota for containers, the vCPU count for VMs.
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Maximum number of processes (containers).
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// Run a tiny reaper as PID 1 (containers).
    #[arg(long)]
    pub init: bool,
    /// `host` disables the user namespace (containers).
    #[arg(long, default_value = "private")]
    pub userns: String,
    /// Network to join: a network's name (default: `default`, a bridge created on first use),
    /// `none` (only `lo`), or `host` (share the host's stack; containers only).
    #[arg(long, default_value = "default")]
    pub network: String,
    /// Publish a port: [IP:]HOST_PORT:GUEST_PORT[/tcp|udp], reachable at 127.0.0.1 and the
    /// host's addresses (repeatable).
    #[arg(short = 'p', long = "publish")]
    pub publish: Vec<String>,
    /// Fault all guest RAM in up front (VMs; such runs boot cold).
    #[arg(long)]
    pub prealloc: bool,
    /// Boot the guest kernel instead of restoring the VM kind's snapshot, and take none (VMs).
    #[arg(long)]
    pub no_snapshot: bool,
    /// Watchdog: end the instance after this many seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Image reference (name[:tag] or id prefix).
    pub image: String,
    /// Command and arguments (replace the image's CMD).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// `vcompare image …`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an OCI layout directory, OCI archive or `docker save` tarball.
    Import {
        path: PathBuf,
        /// Tag the (first) image as NAME[:TAG].
        #[arg(long)]
        tag: Option<String>,
    },
    /// Build a one-layer image from a directory.
    Build {
        dir: PathBuf,
        #[arg(long, required = true)]
        tag: String,
        /// ENTRYPOINT: JSON array or words.
        #[arg(long)]
        entrypoint: Option<String>,
        /// CMD: JSON array or words.
        #[arg(long)]
        cmd: Option<String>,
        /// ENV K=V (repeatable).
        #[arg(long)]
        env: Vec<String>,
        /// WORKDIR.
        #[arg(long)]
        workdir: Option<String>,
        /// USER.
        #[arg(long)]
        user: Option<String>,
    },
    /// List images.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// Only print ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Remove images (refuses images in use unless -f).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Show an image's record, manifest and config.
    Inspect { image: String },
}

/// `vcompare network …`.
#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a user-defined network (instances on it resolve each other by name).
    Create {
        name: String,
        /// IPv4 subnet in CIDR form (default: the next free 10.89.N.0/24).
        #[arg(long)]
        subnet: Option<String>,
    },
    /// List networks.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove networks nothing is connected to (bridge, rules, address pool).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// A network's bridge, subnet, members, rules and DNS responder.
    Inspect { name: String },
    /// Connect a running container to a network (live: a new interface appears inside).
    Connect { network: String, instance: String },
    /// Disconnect a running container from a network (its interface disappears).
    Disconnect { network: String, instance: String },
    /// The network's DNS responder (started by vcompare itself).
    #[command(hide = true)]
    DnsServe { name: String },
}

/// `vcompare volume …`.
#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// Create a volume.
    Create { name: String },
    /// List volumes.
    Ls {
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Remove volumes (refuses volumes used by an instance).
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Show a volume.
    Inspect { name: String },
}

/// `vcompare bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Modes to measure: host,container,vm.
    #[arg(long, default_value = "host,container,vm")]
    pub modes: String,
    /// Peers to measure side by side: crun,runc,qemu,firecracker.
    #[arg(long, default_value = "crun,runc,qemu,firecracker")]
    pub peers: String,
    /// Suites: startup,cpu,memory,density,disk,io,share,net,exec,snapshot (net: TCP latency
    /// and throughput through -p and between instances; exec: `exec` round trip and output
    /// bytes/s, container vs VM; snapshot: VMs restored from a snapshot vs cold boots, and
    /// Firecracker's restore; none of these is in the default set: net makes a bridge network,
    /// exec keeps a VM up for the whole suite, snapshot cold-boots many VMs).
    #[arg(long, default_value = "startup,cpu,memory,density,disk")]
    pub suite: String,
    /// Sizes of the share suite.
    #[command(flatten)]
    pub share: ShareArgs,
    /// Runs per measurement.
    #[arg(long, default_value_t = 10)]
    pub runs: usize,
    /// Runs per VM measurement (each boot is slow on a nested host; default min(runs, 3)).
    #[arg(long)]
    pub vm_runs: Option<usize>,
    /// Skip the untimed warm-up boot of each VM subject (a smoke run's shortcut; the report
    /// says the first timed boots were cold).
    #[arg(long)]
    pub no_vm_warm_up: bool,
    /// Image to measure.
    #[arg(long, default_value = crate::default_image::REFERENCE)]
    pub image: String,
    /// Output directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `vcompare bench` sizes of the share suite; defaults from [`vcompare_bench::suites::share::Sizes`]
/// (the 256 MiB and 2,000 files; smaller in VMs, where a nested guest needs seconds
/// per MiB).
#[derive(Debug, Args)]
pub struct ShareArgs {
    /// share suite: MiB written and read per run on the host and in containers.
    #[arg(long, default_value_t = Sizes::default().mib)]
    pub share_mib: u64,
    /// share suite: small files created, stat'ed and deleted per run (host, containers).
    #[arg(long, default_value_t = Sizes::default().files)]
    pub share_files: u64,
    /// share suite: MiB per run in a VM.
    #[arg(long, default_value_t = Sizes::default().vm_mib)]
    pub share_vm_mib: u64,
    /// share suite: small files per run in a VM.
    #[arg(long, default_value_t = Sizes::default().vm_files)]
    pub share_vm_files: u64,
}

impl From<&ShareArgs> for Sizes {
    fn from(a: &ShareArgs) -> Sizes {
        Sizes {
            mib: a.share_mib,
            files: a.share_files,
            vm_mib: a.share_vm_mib,
            vm_files: a.share_vm_files,
        }
    }
}

impl Default for ShareArgs {
    /// The suite's own defaults, for callers that build [`BenchArgs`] in code (the demo).
    fn default() -> Self {
        let s = Sizes::default();
        ShareArgs {
            share_mib: s.mib,
            share_files: s.files,
            share_vm_mib: s.vm_mib,
            share_vm_files: s.vm_files,
        }
    }
}
