//! `run`, `start` and the hidden `__monitor`: creating an instance and running it, in the
//! foreground (this process supervises) or detached (a monitor process supervises).

use anyhow::Context;

use super::spec::{self, SpecInputs};
use super::supervise::{remove, spawn_monitor, supervise};
use super::Ctx;
use crate::cli::RunArgs;
use crate::instance::Status;

/// `vcompare run`: returns the process exit status.
pub fn run(ctx: &Ctx, args: &RunArgs) -> anyhow::Result<i32> {
    // Before the image is resolved (or the default one built): a refused flag changes nothing.
    spec::refuse_container_only_flags(args)?;
    let (_, networks, _) = spec::network_flags(args)?;
    let nets = vcompare_network::Networks::open(&ctx.root);
    for n in networks
        .iter()
        .filter(|n| *n != vcompare_network::DEFAULT_NETWORK)
    {
        nets.resolve(n)?;
    }
    let image = crate::default_image::resolve_or_build(&ctx.store, &args.image)?;
    tracing::debug!(
        reference = %image.reference,
        digest = %image.record.digest,
        "image resolved"
    );
    let config = ctx.store.config(&image.record)?;
    let rootfs = ctx.store.rootfs_path(&image.record);
    let id = crate::fsutil::random_hex(32);
    let spec = spec::build(
        args,
        SpecInputs {
            id,
            image_ref: image.reference.clone(),
            image_digest: image.record.digest.clone(),
            rootfs: &rootfs,
            config: &config,
            data_root: &ctx.root,
        },
    )?;
    let inst = ctx.instances.create(&spec)?;
    tracing::debug!(backend = %spec.mode, "backend chosen");
    tracing::debug!(id = %spec.id, detach = args.detach, "instance created");
    if args.detach {
        if args.rm {
            mark_autoremove(ctx, &spec.id)?;
        }
        if let Err(e) = spawn_monitor(&ctx.instances, &ctx.root, &inst) {
            if args.rm {
                let _ = ctx
                    .instances
                    .load(&spec.id)
                    .map(|i| remove(&ctx.instances, &i));
            }
            return Err(e);
        }
        println!("{}", spec.id);
        return Ok(0);
    }
    let result = supervise(&ctx.instances, &inst);
    if args.rm {
        if let Ok(i) = ctx.instances.load(&spec.id) {
            remove(&ctx.instances, &i)?;
        }
    }
    let outcome = result?;
    tracing::debug!(id = %spec.id, ?outcome, exit_code = outcome.exit_code(), "instance ended");
    report_outcome(outcome);
    Ok(outcome.exit_code())
}

/// Says on stderr why a run ended when the exit code alone would hide it.
fn report_outcome(outcome: crate::backend::Outcome) {
    use crate::backend::Outcome;
    match outcome {
        Outcome::OomKilled => eprintln!("vcompare: the instance was killed for exceeding its --memory limit (out of memory); raise --memory"),
        Outcome::TimedOut => eprintln!("vcompare: the instance was stopped by the --timeout watchdog"),
        _ => {}
    }
}

/// `vcompare __monitor ID`: supervises a detached instance; `--rm` instances remove themselves.
pub fn monitor(ctx: &Ctx, id: &str) -> anyhow::Result<i32> {
    let inst = ctx.instances.load(id)?;
    let result = supervise(&ctx.instances, &inst);
    if let Err(e) = &result {
        eprintln!("vcompare: {e:#}");
    }
    if rm_requested(&inst) {
        remove(&ctx.instances, &inst)?;
    }
    Ok(result.map(|o| o.exit_code()).unwrap_or(125))
}

/// `--rm` is stored as a marker file so the detached monitor can honour it.
fn rm_requested(inst: &crate::instance::Instance) -> bool {
    inst.spec.instance_dir.join("autoremove").exists()
}

/// Marks a detached instance for removal at exit (`run -d --rm`).
pub fn mark_autoremove(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let p = ctx.instances.dir_of(id).join("autoremove");
    std::fs::write(&p, b"").with_context(|| format!("writing {}", p.display()))
}

/// `vcompare start [-a] ID…`: runs exited instances again on what they kept.
pub fn start(ctx: &Ctx, ids: &[String], attach: bool) -> anyhow::Result<i32> {
    let mut code = 0;
    for q in ids {
        let inst = ctx.instances.resolve(q)?;
        if inst.status() == Status::Running {
            anyhow::bail!("instance {} is already running", inst.short_id());
        }
        if attach {
            let o = supervise(&ctx.instances, &inst)?;
            report_outcome(o);
            code = o.exit_code();
        } else {
            spawn_monitor(&ctx.instances, &ctx.root, &inst)?;
            println!("{}", inst.short_id());
        }
    }
    Ok(code)
}
