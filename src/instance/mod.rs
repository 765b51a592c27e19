//! Instance records: one directory per instance below `<root>/instances/<64-hex id>/` holding
//! `spec.json` (what to run, written once), `state.json` (status, pids with start times, exit
//! outcome; replaced atomically under a lock), `log` (output of detached runs), and whatever
//! the backend keeps there (the container's RW layer, the VM's disk).

pub mod process;

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::backend::{Outcome, PhaseMark, RunSpec};
use crate::fsutil::{atomic_write_fast as atomic_write, remove_any, FileLock};

/// Errors about instance records.
#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("no instance matches `{0}`; `vcompare ps -a` lists instances")]
    NotFound(String),
    #[error("`{query}` matches several instances ({matches}); use more characters of the id")]
    Ambiguous { query: String, matches: String },
    #[error(
        "the name `{0}` is already used by another instance; choose another --name or remove it"
    )]
    NameTaken(String),
    #[error("invalid name `{0}`; names use letters, digits, and _ . - (first a letter or digit)")]
    BadName(String),
    #[error("instance record {path} is unreadable ({source}); remove it with `vcompare rm -f`")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, InstanceError>;

fn io_ctx(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> InstanceError {
    let context = context.into();
    move |source| InstanceError::Io { context, source }
}

/// Lifecycle status as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Record written, never started.
    Created,
    /// A monitor runs it.
    Running,
    /// Its main process ended.
    Exited,
}

/// The mutable part of an instance record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// Recorded status; see [`Instance::status`] for the truth after crashes.
    pub status: Status,
    /// The process supervising the run (foreground `vcompare run` or the detached monitor).
    pub monitor_pid: Option<i32>,
    /// Its start time (clock ticks since boot), so a reused pid is never mistaken for it.
    pub monitor_start: Option<u64>,
    /// The process `stop`/`kill` signal: container PID 1 (host pid) or the VMM.
    pub pid: Option<i32>,
    /// Its start time.
    pub pid_start: Option<u64>,
    /// Unix seconds of the last start.
    pub started_at: Option<f64>,
    /// Unix seconds of the last exit.
    pub finished_at: Option<f64>,
    /// How the last run ended.
    pub outcome: Option<Outcome>,
    /// Why the last run failed to run at all, if it did.
    pub error: Option<String>,
    /// Startup phases of the last run.
    pub phases: Vec<PhaseMark>,
    /// CLOCK_MONOTONIC ns at which the phase marks start (the `vcompare` process's `main`), so a
    /// benchmark can re-base them onto the instant it spawned that process.
    #[serde(default)]
    pub phases_base_mono_ns: Option<u64>,
    /// How many times it was started.
    pub runs: u32,
}

impl State {
    fn new() -> State {
        State {
            status: Status::Created,
            monitor_pid: None,
            monitor_start: None,
            pid: None,
            pid_start: None,
            started_at: None,
            finished_at: None,
            outcome: None,
            error: None,
            phases: Vec::new(),
            phases_base_mono_ns: None,
            runs: 0,
        }
    }
}

/// One instance: immutable spec plus current state.
#[derive(Debug, Clone)]
pub struct Instance {
    /// What to run.
    pub spec: RunSpec,
    /// What happened so far.
    pub state: State,
}

impl Instance {
    /// The 12-hex short id.
    pub fn short_id(&self) -> &str {
        self.spec.short_id()
    }

    /// The true status: a `Running` record whose monitor and main process are both gone (the
    /// machine rebooted, or vcompare was SIGKILLed) is reported as exited.
    pub fn status(&self) -> Status {
        if self.state.status == Status::Running && !self.monitor_alive() && !self.target_alive() {
            Status::Exited
        } else {
            self.state.status
        }
    }

    /// The supervising process is still the one recorded.
    pub fn monitor_alive(&self) -> bool {
        self.state
            .monitor_pid
            .is_some_and(|p| process::is_same_alive(p, self.state.monitor_start))
    }

    /// The signal target is still the one recorded.
    pub fn target_alive(&self) -> bool {
        self.state
            .pid
            .is_some_and(|p| process::is_same_alive(p, self.state.pid_start))
    }

    /// The exit code shown by `ps -a`: the outcome's, or 125 when it failed to run or vanished.
    pub fn exit_code(&self) -> Option<i32> {
        match (self.status(), self.state.outcome) {
            (Status::Exited, Some(o)) => Some(o.exit_code()),
            (Status::Exited, None) if self.state.runs > 0 => Some(125),
            _ => None,
        }
    }
}

/// The instances directory.
#[derive(Debug, Clone)]
pub struct Instances {
    dir: PathBuf,
}

/// Validates a `--name`.
pub fn check_name(name: &str) -> Result<()> {
    let ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(InstanceError::BadName(name.into()))
    }
}

impl Instances {
    /// Opens `<root>/instances`, creating it.
    pub fn open(root: &Path) -> Result<Instances> {
        let dir = root.join("instances");
        fs::create_dir_all(&dir).map_err(io_ctx(format!("creating {}", dir.display())))?;
        Ok(Instances { dir })
    }

    /// Directory of instance `id`.
    pub fn dir_of(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn lock(&self) -> Result<FileLock> {
        let p = self.dir.join(".lock");
        FileLock::exclusive(&p).map_err(io_ctx(format!("locking {}", p.display())))
    }

    /// Writes a new record atomically (built in a temp dir, renamed into place); refuses a
    /// name already in use.
    pub fn create(&self, spec: &RunSpec) -> Result<Instance> {
        let _l = self.lock()?;
        if let Some(name) = &spec.name {
            check_name(name)?;
            if self
                .list()?
                .iter()
                .any(|i| i.spec.name.as_deref() == Some(name))
            {
                return Err(InstanceError::NameTaken(name.clone()));
            }
        }
        let tmp = self.dir.join(format!(".new-{}", spec.id));
        fs::create_dir_all(&tmp).map_err(io_ctx(format!("creating {}", tmp.display())))?;
        let state = State::new();
        let write = || -> std::io::Result<()> {
            atomic_write(
                &tmp.join("spec.json"),
                &serde_json::to_vec_pretty(spec).expect("spec serialises"),
            )?;
            atomic_write(
                &tmp.join("state.json"),
                &serde_json::to_vec_pretty(&state).expect("state serialises"),
            )?;
            fs::rename(&tmp, self.dir_of(&spec.id))
        };
        write().map_err(|e| {
            let _ = remove_any(&tmp);
            InstanceError::Io {
                context: format!("creating instance {}", spec.id),
                source: e,
            }
        })?;
        Ok(Instance {
            spec: spec.clone(),
            state,
        })
    }

    fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
        let b = fs::read(path).map_err(io_ctx(format!("reading {}", path.display())))?;
        serde_json::from_slice(&b).map_err(|source| InstanceError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Loads instance `id` (full id).
    pub fn load(&self, id: &str) -> Result<Instance> {
        let d = self.dir_of(id);
        Ok(Instance {
            spec: Self::read_json(&d.join("spec.json"))?,
            state: Self::read_json(&d.join("state.json"))?,
        })
    }

    /// All instances, oldest first. Unreadable records are skipped (they are reported by id by `resolve`).
    pub fn list(&self) -> Result<Vec<Instance>> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir)
            .map_err(io_ctx(format!("reading {}", self.dir.display())))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                if let Ok(i) = self.load(&name) {
                    out.push(i);
                }
            }
        }
        out.sort_by(|a, b| {
            let t = |i: &Instance| i.state.started_at.unwrap_or(0.0);
            t(a).partial_cmp(&t(b))
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.spec.id.cmp(&b.spec.id))
        });
        Ok(out)
    }

    /// Finds an instance by full id, name, or unambiguous id prefix.
    pub fn resolve(&self, query: &str) -> Result<Instance> {
        let all = self.list()?;
        if let Some(i) = all
            .iter()
            .find(|i| i.spec.id == query || i.spec.name.as_deref() == Some(query))
        {
            return Ok(i.clone());
        }
        let m: Vec<&Instance> = all
            .iter()
            .filter(|i| !query.is_empty() && i.spec.id.starts_with(query))
            .collect();
        match m.len() {
            1 => Ok(m[0].clone()),
            0 => Err(InstanceError::NotFound(query.into())),
            _ => Err(InstanceError::Ambiguous {
                query: query.into(),
                matches: m
                    .iter()
                    .map(|i| i.short_id().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Read-modify-write of an instance's state under the lock.
    pub fn update(&self, id: &str, f: impl FnOnce(&mut State)) -> Result<State> {
        let _l = self.lock()?;
        let p = self.dir_of(id).join("state.json");
        let mut s: State = Self::read_json(&p)?;
        f(&mut s);
        atomic_write(
            &p,
            &serde_json::to_vec_pretty(&s).expect("state serialises"),
        )
        .map_err(io_ctx(format!("writing {}", p.display())))?;
        Ok(s)
    }

    /// Deletes an instance's directory (moved aside first, so a crash never leaves half a record).
    pub fn delete(&self, id: &str) -> Result<()> {
        let _l = self.lock()?;
        let d = self.dir_of(id);
        let trash = self.dir.join(format!(".rm-{id}"));
        fs::rename(&d, &trash).map_err(io_ctx(format!("removing {}", d.display())))?;
        remove_any(&trash).map_err(io_ctx(format!("removing {}", trash.display())))
    }
}

/// Seconds since the Unix epoch, for records.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
