//! `probe`: the workload and witness binary that vcompare runs on the host, in a container
//! and in a microVM guest. Built static so it runs in any image; every command prints
//! its measurements from inside as one JSON line.

mod cli;
mod info;
mod io;
mod netcmd;
mod tools;
mod workloads;

use cli::{Failure, Outcome};
// The JSON writer lives in the library (the network report shares it); `crate::json` paths
// of the commands keep working through this import.
use probe::json;

/// Shown by `probe help`, and referenced by usage errors.
const USAGE: &str = "\
usage: probe COMMAND [ARGS...]
  info                          what this process sees (ids, namespaces, cgroups, mounts...) as JSON
  cpu N                         N iterations of a fixed integer hash
  syscalls N                    N raw getppid syscalls
  pagefaults MIB                mmap MIB MiB and touch every page
  io PATH MIB [--small-files N] sequential write+fsync then read of MIB MiB under PATH
  metadata PATH N               create, stat and delete N small files under PATH
  sleep SECS                    sleep (fractional seconds allowed)
  alloc MIB [HOLD_SECS]         allocate and touch MIB MiB, hold, exit 0
  exit CODE                     exit with CODE
  kill SIG                      die by signal SIG (number or name)
  true                          exit 0 immediately
  echo ARGS...                  print ARGS
  env                           environment as JSON
  write PATH TEXT               write TEXT to PATH
  cat PATH                      print PATH
  net-serve [PORT] [--bind IP]  TCP server for net-client (default port 12865); prints a ready line
  net-client ADDR:PORT [...]    TCP request/response latency then bulk throughput against net-serve
                                (--size REQ,RESP --warmup N --warmup-secs S --count N --max-secs S
                                 --stream-secs S --chunk BYTES; defaults 100,200 200 0.5 10000 2 2 131072)
Bad arguments exit 2, runtime failures exit 1.";

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Err(f) = run(&argv) {
        eprintln!("probe: {}", f.message());
        std::process::exit(f.exit_code());
    }
}

/// Dispatches on the command word; `argv[0]` is the program name.
fn run(argv: &[String]) -> Outcome {
    let Some(cmd) = argv.get(1) else {
        return Err(Failure::Usage("missing command (try `probe help`)".into()));
    };
    let args = &argv[2..];
    match cmd.as_str() {
        "info" => {
            cli::Args::new("info", args).count(0, 0)?;
            cli::emit(&info::collect(argv))
        }
        "cpu" => workloads::cpu(args),
        "syscalls" => workloads::syscalls(args),
        "pagefaults" => workloads::pagefaults(args),
        "sleep" => workloads::sleep(args),
        "alloc" => workloads::alloc(args),
        "io" => io::io(args),
        "metadata" => io::metadata(args),
        "exit" => tools::exit(args),
        "kill" => tools::kill(args),
        "true" => tools::true_(args),
        "echo" => tools::echo(args),
        "env" => tools::env(args),
        "write" => tools::write(args),
        "cat" => tools::cat(args),
        "net-serve" => netcmd::serve(args),
        "net-client" => netcmd::client(args),
        "help" | "-h" | "--help" => cli::emit(USAGE),
        other => Err(Failure::Usage(format!(
            "unknown command {other:?} (try `probe help`)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(v: &[&str]) -> Vec<String> {
        std::iter::once("probe")
            .chain(v.iter().copied())
            .map(String::from)
            .collect()
    }

    #[test]
    fn dispatch_errors_are_usage_errors() {
        assert_eq!(run(&argv(&[])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["frobnicate"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["cpu"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["cpu", "-3"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["info", "extra"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["exit", "256"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["kill", "STOP"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["kill", "0"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["kill", "65"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["sleep", "soon"])).unwrap_err().exit_code(), 2);
        assert_eq!(run(&argv(&["pagefaults", "0"])).unwrap_err().exit_code(), 2);
    }

    #[test]
    fn usage_states_the_net_client_defaults() {
        let d = probe::net::Params::default();
        let line = format!(
            "defaults {},{} {} {} {} {} {} {}",
            d.request_bytes,
            d.response_bytes,
            d.warmup,
            d.warmup_secs,
            d.count,
            d.max_secs,
            d.stream_secs,
            d.chunk_bytes
        );
        assert!(USAGE.contains(&line), "{line}");
        assert!(USAGE.contains(&probe::net::DEFAULT_PORT.to_string()));
    }

    #[test]
    fn usage_lists_every_command() {
        for cmd in [
            "info",
            "cpu",
            "syscalls",
            "pagefaults",
            "io",
            "metadata",
            "sleep",
            "alloc",
            "exit",
            "kill",
            "true",
            "echo",
            "env",
            "write",
            "cat",
            "net-serve",
            "net-client",
        ] {
            assert!(USAGE.contains(&format!("\n  {cmd} ")), "{cmd}");
        }
    }
}
