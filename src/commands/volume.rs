//! `vcompare volume create|ls|rm|inspect`.

use super::table;
use super::Ctx;
use crate::cli::{Format, VolumeCommand};
use crate::volume::Volumes;

/// Dispatches a volume subcommand.
pub fn volume(ctx: &Ctx, cmd: &VolumeCommand) -> anyhow::Result<i32> {
    let vols = Volumes::open(&ctx.root)?;
    match cmd {
        VolumeCommand::Create { name } => {
            println!("{}", vols.create(name)?.name);
        }
        VolumeCommand::Ls { format } => {
            let list = vols.list()?;
            if *format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            table::bytes(crate::fsutil::tree_size(&v.mountpoint)),
                            v.mountpoint.display().to_string(),
                        ]
                    })
                    .collect();
                table::print(&["VOLUME", "SIZE", "MOUNTPOINT"], &rows);
            }
        }
        VolumeCommand::Rm { names } => {
            for n in names {
                let path = vols.data_path(n);
                let users: Vec<String> = ctx
                    .instances
                    .list()?
                    .into_iter()
                    .filter(|i| i.spec.volumes.iter().any(|v| v.host == path))
                    .map(|i| i.short_id().to_string())
                    .collect();
                vols.remove(n, &users)?;
                println!("{n}");
            }
        }
        VolumeCommand::Inspect { name } => {
            println!("{}", serde_json::to_string_pretty(&vols.inspect(name)?)?);
        }
    }
    Ok(0)
}
