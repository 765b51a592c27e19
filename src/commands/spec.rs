//! Turns `vcompare run` flags plus the image config into a [`RunSpec`], with the same
//! precedence rules docker users know (CLI over image; `--entrypoint` clears the image CMD).

use std::path::{Component, Path};

use oci_spec::image::ImageConfiguration;

use crate::backend::{RunSpec, Volume};
use crate::cli::RunArgs;
use vcompare_network::ports::PortMapping;
use vcompare_spec::ProcessSpec;

/// Errors in `run` flags.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bad -v `{0}`: use HOST:GUEST[:ro] with absolute paths")]
    VolumeSyntax(String),
    #[error("bad -v `{spec}`: the host path {host} does not exist; create it or fix the path")]
    VolumeMissing { spec: String, host: String },
    #[error("bad -v `{0}`: {1}")]
    Volume(String, String),
    #[error("bad -v `{0}`: the guest path must be absolute and must not contain `..`")]
    VolumeGuest(String),
    #[error("bad --memory `{0}`: use a number with an optional b, k, m or g suffix (e.g. 256m)")]
    Memory(String),
    #[error("--cpus must be a number greater than 0")]
    Cpus,
    #[error("--pids-limit must be greater than 0")]
    Pids,
    #[error("bad -w `{0}`: the working directory must be an absolute path without `..`")]
    Workdir(String),
    #[error("bad -e `{0}`: use K=V (or K to copy it from this environment)")]
    Env(String),
    #[error("unknown user `{0}` in the image; use a numeric UID[:GID]")]
    User(String),
    #[error(
        "no command to run: the image has no entrypoint or cmd; give one after the image name"
    )]
    NoCommand,
    #[error("bad --{flag} `{value}`: use `{allowed}`")]
    Choice {
        flag: &'static str,
        value: String,
        allowed: &'static str,
    },
    /// A `-p` that does not parse, or one without a network to publish from.
    #[error("{0}")]
    Publish(String),
    /// A container-side knob given with `--mode vm`: accepting and ignoring it would make a
    /// VM run look like the container run it is compared with while it is not.
    #[error("{flag} is not supported in --mode vm: {why}; {fix}")]
    NotInVm {
        /// The flag as the user typed it.
        flag: &'static str,
        /// Why the VM side has no such knob.
        why: &'static str,
        /// What to do instead.
        fix: &'static str,
    },
}

/// Refuses the container-only flags of `run` in `--mode vm` (the first one given, in a fixed
/// order). The lesson is which knob exists on which side: a microVM is sized by `--memory`
/// and `--cpus` and has its own kernel, PID 1, user ids and network stack, so these four
/// flags have nothing to act on there (`-i` and `-t` work: the guest agent gives the
/// entrypoint pipes or a pty inside the guest). The one place that decides, called before
/// anything is created.
pub fn refuse_container_only_flags(args: &RunArgs) -> Result<(), SpecError> {
    if args.mode != crate::backend::Mode::Vm {
        return Ok(());
    }
    let refusals = [
        (
            args.pids_limit.is_some(),
            "--pids-limit",
            "the guest has its own kernel and PID space",
            "use --memory/--cpus to size the VM, or --mode container",
        ),
        (
            args.init,
            "--init",
            "vcompare's guest init is already PID 1 and forwards SIGTERM to the entrypoint",
            "drop --init, or use --mode container",
        ),
        (
            args.network == "host",
            "--network host",
            "the guest has its own kernel and network stack, which cannot be the host's (a VM joins a bridge network through its virtio-net device instead)",
            "use --network NAME (the default network unless given) or none, or --mode container",
        ),
        (
            args.userns == "host",
            "--userns host",
            "the guest has its own kernel and user ids, there is no host user namespace to join",
            "drop --userns host, or use --mode container",
        ),
    ];
    match refusals.into_iter().find(|r| r.0) {
        Some((_, flag, why, fix)) => Err(SpecError::NotInVm { flag, why, fix }),
        None => Ok(()),
    }
}

/// Parses `256m`, `1g`, `1048576`, `512k`, `2G` into bytes.
pub fn parse_memory(s: &str) -> Result<u64, SpecError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.chars().last().is_some_and(|c| "kmg".contains(c)))
        .unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('b') => (&t[..t.len() - 1], 1),
        _ => (t, 1),
    };
    num.parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| SpecError::Memory(s.into()))
}

/// An absolute path with no `..` component (what guest paths and workdirs must be).
fn is_clean_absolute(p: &str) -> bool {
    p.starts_with('/') && !Path::new(p).components().any(|c| c == Component::ParentDir)
}

/// Parses `HOST:GUEST[:ro|:rw]` (the host path must exist) or `NAME:GUEST[:ro|:rw]` (a
/// managed volume, found or created by `volume`).
pub fn parse_volume(
    v: &str,
    volume: &dyn Fn(&str) -> Result<std::path::PathBuf, String>,
) -> Result<Volume, SpecError> {
    let parts: Vec<&str> = v.split(':').collect();
    let (host, guest, readonly) = match parts.as_slice() {
        [h, g] => (*h, *g, false),
        [h, g, "ro"] => (*h, *g, true),
        [h, g, "rw"] => (*h, *g, false),
        _ => return Err(SpecError::VolumeSyntax(v.into())),
    };
    if host.is_empty() {
        return Err(SpecError::VolumeSyntax(v.into()));
    }
    if !is_clean_absolute(guest) {
        return Err(SpecError::VolumeGuest(v.into()));
    }
    if !host.starts_with('/') {
        let path = volume(host).map_err(|e| SpecError::Volume(v.into(), e))?;
        return Ok(Volume {
            host: path,
            guest: guest.into(),
            readonly,
        });
    }
    let host = Path::new(host)
        .canonicalize()
        .map_err(|_| SpecError::VolumeMissing {
            spec: v.into(),
            host: host.into(),
        })?;
    Ok(Volume {
        host,
        guest: guest.into(),
        readonly,
    })
}

/// Merges `-e` overrides into the image env (same key replaced, order kept).
pub fn merge_env(image: &[String], overrides: &[String]) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = image.to_vec();
    for o in overrides {
        let kv = if o.contains('=') {
            o.clone()
        } else if o.is_empty() {
            return Err(SpecError::Env(o.clone()));
        } else {
            match std::env::var(o) {
                Ok(v) => format!("{o}={v}"),
                Err(_) => continue,
            }
        };
        let key = kv.split('=').next().unwrap_or_default().to_string();
        if key.is_empty() {
            return Err(SpecError::Env(o.clone()));
        }
        env.retain(|e| e.split('=').next() != Some(key.as_str()));
        env.push(kv);
    }
    Ok(env)
}

/// Rows of an image's `/etc/passwd` or `/etc/group` as (name, id, primary gid).
fn id_file(rootfs: &Path, file: &str) -> Vec<(String, u32, u32)> {
    let text = std::fs::read_to_string(rootfs.join("etc").join(file)).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let id = f.get(2)?.parse().ok()?;
            Some((
                f[0].to_string(),
                id,
                f.get(3).and_then(|g| g.parse().ok()).unwrap_or(0),
            ))
        })
        .collect()
}

/// Looks `name` up in the image's `/etc/passwd` or `/etc/group`; returns (id, primary gid).
fn lookup(rootfs: &Path, file: &str, name: &str) -> Option<(u32, u32)> {
    id_file(rootfs, file)
        .into_iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, id, g)| (id, g))
}

/// Resolves `USER` / `-u` (`uid`, `uid:gid`, `name`, `name:group`) against the image.
pub fn parse_user(user: Option<&str>, rootfs: &Path) -> Result<(u32, u32), SpecError> {
    let Some(u) = user.filter(|u| !u.is_empty()) else {
        return Ok((0, 0));
    };
    let (user_part, group_part) = match u.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (u, None),
    };
    let (uid, primary) = match user_part.parse::<u32>() {
        // A uid the image's /etc/passwd does not know gets group 0, as with Docker and runc.
        Ok(n) => (n, lookup_by_uid(rootfs, n).unwrap_or(0)),
        Err(_) => lookup(rootfs, "passwd", user_part).ok_or_else(|| SpecError::User(u.into()))?,
    };
    let gid = match group_part {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => lookup(rootfs, "group", g)
                .map(|(id, _)| id)
                .ok_or_else(|| SpecError::User(u.into()))?,
        },
    };
    Ok((uid, gid))
}

fn lookup_by_uid(rootfs: &Path, uid: u32) -> Option<u32> {
    id_file(rootfs, "passwd")
        .into_iter()
        .find(|(_, id, _)| *id == uid)
        .map(|(_, _, g)| g)
}

/// Everything `build` needs besides the flags.
pub struct SpecInputs<'a> {
    /// 64-hex instance id.
    pub id: String,
    /// Resolved image reference.
    pub image_ref: String,
    /// Manifest digest.
    pub image_digest: String,
    /// Unpacked rootfs.
    pub rootfs: &'a Path,
    /// The image config.
    pub config: &'a ImageConfiguration,
    /// The data directory.
    pub data_root: &'a Path,
}

/// The process `vcompare exec` starts: the instance's environment, working directory and
/// user unless `-e`/`-w`/`-u` say otherwise (one function for both modes, so a flag cannot
/// reach one and miss the other). Names in `-u` resolve through the image's files.
pub fn exec_process(
    spec: &RunSpec,
    cmd: &[String],
    env: &[String],
    workdir: Option<&str>,
    user: Option<&str>,
) -> Result<ProcessSpec, SpecError> {
    let cwd = workdir
        .map(str::to_string)
        .unwrap_or_else(|| spec.process.cwd.clone());
    if !is_clean_absolute(&cwd) {
        return Err(SpecError::Workdir(cwd));
    }
    let (uid, gid) = match user {
        Some(_) => parse_user(user, &spec.rootfs)?,
        None => (spec.process.uid, spec.process.gid),
    };
    Ok(ProcessSpec {
        args: cmd.to_vec(),
        env: merge_env(&spec.process.env, env)?,
        cwd,
        uid,
        gid,
    })
}

/// Builds the spec from flags and image; validates everything before anything is created
/// (the container-only flags of `--mode vm` are refused earlier, by `run` through
/// [`refuse_container_only_flags`], before the image is even resolved).
pub fn build(args: &RunArgs, inp: SpecInputs<'_>) -> Result<RunSpec, SpecError> {
    let cfg = inp.config.config().clone().unwrap_or_default();
    let entrypoint: Vec<String> = match &args.entrypoint {
        Some(e) => crate::store::build::parse_command(e),
        None => cfg.entrypoint().clone().unwrap_or_default(),
    };
    let cmd: Vec<String> = if !args.cmd.is_empty() {
        args.cmd.clone()
    } else if args.entrypoint.is_some() {
        Vec::new()
    } else {
        cfg.cmd().clone().unwrap_or_default()
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(SpecError::NoCommand);
    }
    let mut env = merge_env(&cfg.env().clone().unwrap_or_default(), &args.env)?;
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    let cwd = args
        .workdir
        .clone()
        .or_else(|| cfg.working_dir().clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !is_clean_absolute(&cwd) {
        return Err(SpecError::Workdir(cwd));
    }
    let user = args.user.clone().or_else(|| cfg.user().clone());
    let (uid, gid) = parse_user(user.as_deref(), inp.rootfs)?;
    let vols = crate::volume::Volumes::open(inp.data_root)
        .map_err(|e| SpecError::Volume(String::new(), e.to_string()))?;
    let resolve = |name: &str| vols.ensure(name).map_err(|e| e.to_string());
    let volumes = args
        .volumes
        .iter()
        .map(|v| parse_volume(v, &resolve))
        .collect::<Result<Vec<_>, _>>()?;
    let memory_bytes = args.memory.as_deref().map(parse_memory).transpose()?;
    if args.cpus.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
        return Err(SpecError::Cpus);
    }
    if args.pids_limit.is_some_and(|p| p <= 0) {
        return Err(SpecError::Pids);
    }
    let userns = match args.userns.as_str() {
        "private" | "" => true,
        "host" => false,
        v => {
            return Err(SpecError::Choice {
                flag: "userns",
                value: v.into(),
                allowed: "host|private",
            })
        }
    };
    let (network_host, networks, ports) = network_flags(args)?;
    Ok(RunSpec {
        hostname: args
            .hostname
            .clone()
            .unwrap_or_else(|| inp.id[..12].to_string()),
        instance_dir: inp.data_root.join("instances").join(&inp.id),
        id: inp.id,
        name: args.name.clone(),
        mode: args.mode,
        image_ref: inp.image_ref,
        image_digest: inp.image_digest,
        rootfs: inp.rootfs.to_path_buf(),
        process: ProcessSpec {
            args: argv,
            env,
            cwd,
            uid,
            gid,
        },
        volumes,
        memory_bytes,
        cpus: args.cpus,
        pids_limit: args.pids_limit,
        tty: args.tty,
        interactive: args.interactive,
        init: args.init,
        userns,
        network_host,
        networks,
        ports,
        prealloc: args.prealloc,
        no_snapshot: args.no_snapshot,
        timeout_secs: args.timeout,
        data_root: inp.data_root.to_path_buf(),
    })
}

/// `--network` and `-p` as the spec stores them: (host stack shared, networks to join, port
/// mappings). Checked before the image is resolved, so a typo costs nothing.
pub fn network_flags(args: &RunArgs) -> Result<(bool, Vec<String>, Vec<PortMapping>), SpecError> {
    let (network_host, networks) = match args.network.as_str() {
        "none" => (false, Vec::new()),
        "host" => (true, Vec::new()),
        "" => {
            return Err(SpecError::Choice {
                flag: "network",
                value: String::new(),
                allowed: "NAME|host|none",
            })
        }
        name => (false, vec![name.to_string()]),
    };
    let ports = args
        .publish
        .iter()
        .map(|p| {
            p.parse::<PortMapping>()
                .map_err(|e| SpecError::Publish(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !ports.is_empty() && networks.is_empty() {
        return Err(SpecError::Publish(format!(
            "-p needs a network to publish from, and --network {} has none of its own; drop -p or use --network default",
            args.network
        )));
    }
    Ok((network_host, networks, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_suffixes() {
        assert_eq!(parse_memory("256m").unwrap(), 256 << 20);
        assert_eq!(parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(parse_memory("512kb").unwrap(), 512 << 10);
        assert_eq!(parse_memory("4096").unwrap(), 4096);
        assert!(parse_memory("0").is_err());
        assert!(parse_memory("lots").is_err());
        assert!(parse_memory("99999999999g").is_err());
    }

    #[test]
    fn volumes_are_checked() {
        let named = |n: &str| Ok(std::path::PathBuf::from("/volumes").join(n));
        let v = parse_volume("/tmp:/data:ro", &named).unwrap();
        assert!(v.readonly && v.guest == "/data");
        let v = parse_volume("cache:/c", &named).unwrap();
        assert!(!v.readonly && v.host == std::path::Path::new("/volumes/cache"));
        assert!(matches!(
            parse_volume("/definitely/missing:/x", &named),
            Err(SpecError::VolumeMissing { .. })
        ));
        assert!(matches!(
            parse_volume("/tmp:rel", &named),
            Err(SpecError::VolumeGuest(_))
        ));
        assert!(matches!(
            parse_volume("/tmp:/a/../b", &named),
            Err(SpecError::VolumeGuest(_))
        ));
        assert!(matches!(
            parse_volume("/tmp", &named),
            Err(SpecError::VolumeSyntax(_))
        ));
        assert!(matches!(
            parse_volume("/tmp:/x:rx", &named),
            Err(SpecError::VolumeSyntax(_))
        ));
    }

    #[test]
    fn env_overrides_replace_keys() {
        let e = merge_env(&["A=1".into(), "B=2".into()], &["A=3".into(), "C=4".into()]).unwrap();
        assert_eq!(e, vec!["B=2", "A=3", "C=4"]);
        assert!(merge_env(&[], &["=x".into()]).is_err());
    }

    #[test]
    fn users_resolve_through_the_image() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0::/:/bin/sh\napp:x:1000:1001::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(d.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(parse_user(None, d.path()).unwrap(), (0, 0));
        assert_eq!(parse_user(Some("app"), d.path()).unwrap(), (1000, 1001));
        assert_eq!(parse_user(Some("1000"), d.path()).unwrap(), (1000, 1001));
        assert_eq!(parse_user(Some("app:staff"), d.path()).unwrap(), (1000, 50));
        assert_eq!(parse_user(Some("5:6"), d.path()).unwrap(), (5, 6));
        // Unknown to /etc/passwd: group 0, as with Docker and runc.
        assert_eq!(parse_user(Some("4242"), d.path()).unwrap(), (4242, 0));
        assert!(parse_user(Some("ghost"), d.path()).is_err());
    }
}
