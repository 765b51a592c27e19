//! `vcompare image import|build|ls|rm|inspect`.

use std::time::Instant;

use serde_json::json;

use super::table;
use super::Ctx;
use crate::cli::{Format, ImageCommand};
use crate::instance::Status;
use crate::store::build::{build, parse_command, BuildOptions};
use crate::store::import::import;

/// Dispatches an image subcommand.
pub fn image(ctx: &Ctx, cmd: &ImageCommand) -> anyhow::Result<i32> {
    match cmd {
        ImageCommand::Import { path, tag } => {
            let t = Instant::now();
            let done = import(&ctx.store, path, tag.as_deref())?;
            for i in &done {
                let hex = i.digest.trim_start_matches("sha256:");
                println!(
                    "{} {}",
                    &hex[..12],
                    i.reference.as_deref().unwrap_or("<untagged>")
                );
            }
            eprintln!(
                "imported {} image(s) in {:.1} ms",
                done.len(),
                t.elapsed().as_secs_f64() * 1e3
            );
            Ok(0)
        }
        ImageCommand::Build {
            dir,
            tag,
            entrypoint,
            cmd,
            env,
            workdir,
            user,
        } => {
            let opts = BuildOptions {
                entrypoint: entrypoint.as_deref().map(parse_command).unwrap_or_default(),
                cmd: cmd.as_deref().map(parse_command).unwrap_or_default(),
                env: env.clone(),
                workdir: workdir.clone(),
                user: user.clone(),
            };
            let i = build(&ctx.store, dir, tag, &opts)?;
            println!(
                "{} {}",
                &i.digest.trim_start_matches("sha256:")[..12],
                i.reference.unwrap_or_default()
            );
            Ok(0)
        }
        ImageCommand::Ls { format, quiet } => ls(ctx, *format, *quiet),
        ImageCommand::Rm { force, images } => {
            for r in images {
                // The instances that block removal: all users, or with -f the running ones.
                let users = |digest: &str, running_only: bool| -> Vec<String> {
                    ctx.instances
                        .list()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|i| i.spec.image_digest == digest)
                        .filter(|i| !running_only || i.status() == Status::Running)
                        .map(|i| i.short_id().to_string())
                        .collect()
                };
                match ctx.store.remove(r, *force, &users)? {
                    Some(d) => println!("Deleted: {d}"),
                    None => println!("Untagged: {r}"),
                }
            }
            Ok(0)
        }
        ImageCommand::Inspect { image } => {
            let r = ctx.store.resolve(image)?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(ctx.store.blob_path(&r.record.digest)?)?)?;
            let config = ctx.store.config(&r.record)?;
            let doc = json!({
                "reference": r.reference,
                "tags": ctx.store.tags_of(&r.record.digest)?,
                "record": r.record,
                "rootfs": ctx.store.rootfs_path(&r.record),
                "manifest": manifest,
                "config": config,
            });
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(0)
        }
    }
}

/// `image ls`: one row per tag (untagged images once), like `docker images`.
fn ls(ctx: &Ctx, format: Format, quiet: bool) -> anyhow::Result<i32> {
    let refs = ctx.store.refs()?;
    let mut rows = Vec::new();
    let mut docs = Vec::new();
    for rec in ctx.store.images()? {
        let mut tags: Vec<&String> = refs
            .iter()
            .filter(|(_, d)| **d == rec.digest)
            .map(|(r, _)| r)
            .collect();
        let untagged = "<none>:<none>".to_string();
        if tags.is_empty() {
            tags.push(&untagged);
        }
        for t in tags {
            let created = rec
                .created
                .as_deref()
                .and_then(|c| humantime::parse_rfc3339_weak(c).ok())
                .and_then(|t| t.elapsed().ok())
                .map(|d| format!("{} ago", table::ago(d.as_secs_f64())))
                .unwrap_or_else(|| "-".into());
            rows.push(vec![
                t.clone(),
                rec.short_id().to_string(),
                table::bytes(rec.rootfs_size),
                created,
            ]);
            docs.push(json!({"reference": t, "id": rec.short_id(), "digest": rec.digest, "size": rec.rootfs_size, "created": rec.created}));
        }
    }
    if quiet {
        rows.iter().for_each(|r| println!("{}", r[1]));
    } else if format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&docs)?);
    } else {
        table::print(&["IMAGE", "ID", "SIZE", "CREATED"], &rows);
    }
    Ok(0)
}
