//! `ps`, `inspect`, `logs` and `exec`: looking at and into instances.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use serde_json::{json, Value};

use super::table;
use super::Ctx;
use crate::backend::{self, Mode};
use crate::cli::{ExecArgs, Format};
use crate::instance::{now_unix, Instance, Status};

/// The STATUS column: `Up 3 seconds`, `Exited (0) 5 minutes ago`, `Created`.
pub fn status_text(i: &Instance) -> String {
    let now = now_unix();
    match i.status() {
        Status::Created => "Created".into(),
        Status::Running => format!("Up {}", table::ago(now - i.state.started_at.unwrap_or(now))),
        Status::Exited => {
            let code = i
                .exit_code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "?".into());
            let when = i
                .state
                .finished_at
                .map(|t| format!(" {} ago", table::ago(now - t)))
                .unwrap_or_default();
            let why = match i.state.outcome {
                Some(backend::Outcome::OomKilled) => " OOMKilled",
                Some(backend::Outcome::TimedOut) => " TimedOut",
                _ if i.state.error.is_some() => " Failed",
                _ => "",
            };
            format!("Exited ({code}){why}{when}")
        }
    }
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// One instance as JSON (for `ps --format json` and `inspect`).
fn summary(i: &Instance) -> Value {
    json!({
        "id": i.spec.id,
        "name": i.spec.name,
        "image": i.spec.image_ref,
        "image_digest": i.spec.image_digest,
        "mode": i.spec.mode,
        "command": i.spec.process.args,
        "status": status_word(i.status()),
        "status_text": status_text(i),
        "exit_code": i.exit_code(),
        "outcome": i.state.outcome,
        "error": i.state.error,
        "pid": i.state.pid.filter(|_| i.status() == Status::Running),
        "started_at": i.state.started_at,
        "finished_at": i.state.finished_at,
        "phases": i.state.phases,
        "phases_base_mono_ns": i.state.phases_base_mono_ns,
    })
}

/// `vcompare ps [-a] [-q] [--format json]`.
pub fn ps(ctx: &Ctx, all: bool, quiet: bool, format: Format) -> anyhow::Result<i32> {
    let list: Vec<Instance> = ctx
        .instances
        .list()?
        .into_iter()
        .filter(|i| all || i.status() == Status::Running)
        .collect();
    if quiet {
        list.iter().for_each(|i| println!("{}", i.short_id()));
    } else if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&list.iter().map(summary).collect::<Vec<_>>())?
        );
    } else {
        let rows: Vec<Vec<String>> = list
            .iter()
            .map(|i| {
                let mut cmd = i.spec.process.args.join(" ");
                if cmd.chars().count() > 30 {
                    cmd = cmd.chars().take(29).collect::<String>() + "…";
                }
                vec![
                    i.short_id().to_string(),
                    i.spec.name.clone().unwrap_or_default(),
                    i.spec.image_ref.clone(),
                    i.spec.mode.to_string(),
                    format!("\"{cmd}\""),
                    status_text(i),
                    i.state
                        .pid
                        .filter(|_| i.status() == Status::Running)
                        .map(|p| p.to_string())
                        .unwrap_or_default(),
                ]
            })
            .collect();
        table::print(
            &["ID", "NAME", "IMAGE", "MODE", "COMMAND", "STATUS", "PID"],
            &rows,
        );
    }
    Ok(0)
}

/// `vcompare inspect ID`: the record plus the backend's host-vs-inside view.
pub fn inspect(ctx: &Ctx, q: &str, format: Format) -> anyhow::Result<i32> {
    let i = ctx.instances.resolve(q)?;
    let pid = i
        .state
        .pid
        .filter(|_| i.status() == Status::Running && i.target_alive());
    let view = match i.spec.mode {
        Mode::Container => backend::container::inspect(&i.spec, pid)?,
        Mode::Vm => backend::vm::inspect(&i.spec, pid)?,
    };
    let mut doc = summary(&i);
    doc["spec"] = serde_json::to_value(&i.spec)?;
    doc["view"] = view.clone();
    if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(0);
    }
    println!(
        "{} ({}, {}), image {}, {}",
        i.short_id(),
        i.spec.mode,
        status_text(&i),
        i.spec.image_ref,
        i.spec.process.args.join(" ")
    );
    print_side_by_side(&view);
    Ok(0)
}

/// Names the "inside" side may have in a backend's view.
const INSIDE_KEYS: [&str; 4] = ["container", "guest", "instance", "inside"];

/// One table cell: strings bare, null as `-`, anything else as JSON.
fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Which inside-view key an object has, if any.
fn inside_of(o: &serde_json::Map<String, Value>) -> Option<&'static str> {
    INSIDE_KEYS.into_iter().find(|k| o.contains_key(*k))
}

/// Renders a backend view as FIELD | HOST VIEW | INSIDE VIEW rows. Accepts both shapes:
/// per-field pairs (`{"pid": {"host": 1234, "container": 1}}`) and two sides
/// (`{"host": {...}, "container": {...}}`); anything else is printed as `key: value`.
pub fn print_side_by_side(view: &Value) {
    let Some(obj) = view.as_object() else { return };
    let mut rows = Vec::new();
    let mut rest: Vec<(String, Value)> = Vec::new();
    let mut inside_name = "inside";
    if let (Some(host), Some(k)) = (obj.get("host").and_then(Value::as_object), inside_of(obj)) {
        inside_name = k;
        let inside = obj[k].as_object().cloned().unwrap_or_default();
        let mut keys: Vec<&String> = host.keys().collect();
        keys.extend(inside.keys().filter(|x| !host.contains_key(*x)));
        rows = keys
            .iter()
            .map(|key| {
                vec![
                    key.to_string(),
                    cell(host.get(*key)),
                    cell(inside.get(*key)),
                ]
            })
            .collect();
        rest.extend(
            obj.iter()
                .filter(|(x, _)| x.as_str() != "host" && x.as_str() != k)
                .map(|(x, v)| (x.clone(), v.clone())),
        );
    } else {
        flatten_pairs("", obj, &mut rows, &mut rest, &mut inside_name);
    }
    if !rows.is_empty() {
        table::print(
            &[
                "",
                "HOST VIEW",
                &format!("{} VIEW", inside_name.to_uppercase()),
            ],
            &rows,
        );
    }
    for (key, v) in rest {
        println!("{key}: {}", cell(Some(&v)));
    }
}

/// Collects `{"host": .., "<inside>": ..}` pairs at any depth as rows named by their path
/// (`namespaces.pid`); other leaves go to `rest`.
fn flatten_pairs(
    prefix: &str,
    obj: &serde_json::Map<String, Value>,
    rows: &mut Vec<Vec<String>>,
    rest: &mut Vec<(String, Value)>,
    inside_name: &mut &'static str,
) {
    for (key, v) in obj {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match v.as_object() {
            Some(o) if o.contains_key("host") || inside_of(o).is_some() => {
                let k = inside_of(o);
                if let Some(k) = k {
                    *inside_name = k;
                }
                rows.push(vec![
                    name,
                    cell(o.get("host")),
                    cell(k.and_then(|k| o.get(k))),
                ]);
            }
            Some(o) => flatten_pairs(&name, o, rows, rest, inside_name),
            None => rest.push((name, v.clone())),
        }
    }
}

/// `vcompare logs [-f] ID`: the detached run's output (foreground runs print to the terminal).
pub fn logs(ctx: &Ctx, q: &str, follow: bool) -> anyhow::Result<i32> {
    let i = ctx.instances.resolve(q)?;
    let path = i.spec.instance_dir.join("log");
    let mut f = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(_) => return Ok(0), // never ran detached: no output kept
    };
    let mut out = std::io::stdout().lock();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n > 0 {
            out.write_all(&buf[..n])?;
            continue;
        }
        out.flush()?;
        if !follow {
            return Ok(0);
        }
        let running = ctx
            .instances
            .load(&i.spec.id)
            .map(|x| x.status() == Status::Running)
            .unwrap_or(false);
        if !running {
            // Drain what the final moments wrote, then stop.
            let pos = f.stream_position()?;
            f.seek(SeekFrom::Start(pos))?;
            std::io::copy(&mut f, &mut out)?;
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `vcompare exec [-i] [-t] [-e K=V] [-w DIR] [-u USER] ID CMD…`.
pub fn exec(ctx: &Ctx, a: &ExecArgs) -> anyhow::Result<i32> {
    let i = ctx.instances.resolve(&a.id)?;
    let pid = match i.state.pid {
        Some(p) if i.status() == Status::Running && i.target_alive() => p,
        _ => anyhow::bail!(
            "instance {} is not running; start it with `vcompare start {}`",
            i.short_id(),
            i.short_id()
        ),
    };
    let process = crate::commands::spec::exec_process(
        &i.spec,
        &a.cmd,
        &a.env,
        a.workdir.as_deref(),
        a.user.as_deref(),
    )?;
    match i.spec.mode {
        Mode::Container => backend::container::exec(pid, process, a.tty, a.interactive),
        Mode::Vm => backend::vm::exec(&i.spec, process, a.tty, a.interactive),
    }
}
