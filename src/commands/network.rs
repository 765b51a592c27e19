//! `vcompare network create|ls|rm|inspect|connect|disconnect` (and the hidden `dns-serve`,
//! the per-network name server vcompare starts by itself).

use std::os::fd::AsFd;

use super::table;
use super::Ctx;
use crate::backend::Mode;
use crate::cli::{Format, NetworkCommand};
use crate::instance::Status;
use vcompare_network::attach::{self, LinkKind, Owner};
use vcompare_network::{firewall, Networks};

/// Dispatches a network subcommand.
pub fn network(ctx: &Ctx, cmd: &NetworkCommand) -> anyhow::Result<i32> {
    let nets = Networks::open(&ctx.root);
    match cmd {
        NetworkCommand::Create { name, subnet } => {
            let subnet = subnet.as_deref().map(str::parse).transpose()?;
            println!("{}", nets.create(name, subnet)?.name);
        }
        NetworkCommand::Ls { format } => {
            let list = nets.list()?;
            if *format == Format::Json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                let rows: Vec<Vec<String>> = list
                    .iter()
                    .map(|d| {
                        let members = attach::members(&nets, &d.name)
                            .map(|m| m.len())
                            .unwrap_or(0);
                        vec![
                            d.name.clone(),
                            d.bridge.clone(),
                            d.subnet.to_string(),
                            d.subnet.gateway().to_string(),
                            if d.dns { "yes" } else { "no" }.into(),
                            members.to_string(),
                        ]
                    })
                    .collect();
                table::print(
                    &["NETWORK", "BRIDGE", "SUBNET", "GATEWAY", "DNS", "INSTANCES"],
                    &rows,
                );
            }
        }
        NetworkCommand::Rm { names } => {
            for n in names {
                let def = nets.get(n)?.ok_or_else(|| {
                    anyhow::anyhow!("there is no network `{n}`; `vcompare network ls` lists them")
                })?;
                let users: Vec<String> = attach::members(&nets, n)?
                    .into_iter()
                    .map(|(id, _)| id[..12].to_string())
                    .collect();
                if !users.is_empty() {
                    anyhow::bail!(
                        "network `{n}` is in use by instance(s) {}; stop or disconnect them first",
                        users.join(", ")
                    );
                }
                attach::remove_network_state(&nets, &def)?;
                nets.remove_def(n)?;
                println!("{n}");
            }
        }
        NetworkCommand::Inspect { name } => {
            let def = nets.get(name)?.ok_or_else(|| {
                anyhow::anyhow!("there is no network `{name}`; `vcompare network ls` lists them")
            })?;
            let members: Vec<serde_json::Value> = attach::members(&nets, name)?
                .into_iter()
                .map(|(id, a)| {
                    serde_json::json!({
                        "id": &id[..12],
                        "address": a.address.to_string(),
                        "host_link": a.host_link,
                        "kind": a.kind,
                        "ports": a.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let rules = firewall::list_table()?.map(|t| {
                t.lines()
                    .filter(|l| {
                        l.contains(&def.bridge)
                            || members
                                .iter()
                                .any(|m| l.contains(m["id"].as_str().unwrap_or("-")))
                    })
                    .map(|l| l.trim().to_string())
                    .collect::<Vec<_>>()
            });
            let v = serde_json::json!({
                "name": def.name,
                "bridge": def.bridge,
                "subnet": def.subnet.to_string(),
                "gateway": def.subnet.gateway().to_string(),
                "dns": def.dns.then(|| format!("{}:53", def.subnet.gateway())),
                "instances": members,
                "nft_rules": rules,
            });
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        NetworkCommand::Connect { network, instance } => {
            let inst = running_container(ctx, instance, "connect")?;
            let def = nets.resolve(network)?;
            let owner = Owner {
                id: &inst.spec.id,
                name: inst.spec.name.as_deref(),
            };
            let att = attach::join(&nets, &def, owner, LinkKind::Veth, &[])?;
            let plumbed = (|| {
                let pid = inst
                    .state
                    .pid
                    .ok_or_else(|| anyhow::anyhow!("the instance has no process"))?;
                let netns = vcompare_network::netns::open_netns_of(pid)?;
                let first = attach::attachments(&nets, &inst.spec.id)?.len() == 1;
                attach::plumb_veth(&att, &inst.spec.id, netns.as_fd(), first)?;
                if def.dns {
                    crate::backend::network::start_dns(&nets, &def.name, &inst.spec)?;
                }
                anyhow::Ok(())
            })();
            if let Err(e) = plumbed {
                let _ = attach::leave(&nets, &inst.spec.id, &def.name);
                return Err(e);
            }
            println!("{} {} {}", inst.short_id(), att.interface, att.address);
        }
        NetworkCommand::Disconnect { network, instance } => {
            let inst = running_container(ctx, instance, "disconnect")?;
            if !attach::attachments(&nets, &inst.spec.id)?
                .iter()
                .any(|a| &a.network == network)
            {
                anyhow::bail!(
                    "instance {} is not connected to network `{network}`",
                    inst.short_id()
                );
            }
            attach::leave(&nets, &inst.spec.id, network)?;
            println!("{}", inst.short_id());
        }
        NetworkCommand::DnsServe { name } => {
            let def = nets
                .get(name)?
                .ok_or_else(|| anyhow::anyhow!("there is no network `{name}`"))?;
            attach::serve_dns(&nets, &def)?;
        }
    }
    Ok(0)
}

/// `connect`/`disconnect` change a running container's namespace live; a VM's devices are
/// fixed at boot (virtio-mmio has no hotplug) and a stopped instance has no namespace.
fn running_container(
    ctx: &Ctx,
    query: &str,
    verb: &str,
) -> anyhow::Result<crate::instance::Instance> {
    let inst = ctx.instances.resolve(query)?;
    if inst.spec.mode == Mode::Vm {
        anyhow::bail!(
            "network {verb} is not supported for VMs: a microVM's devices are fixed at boot (virtio-mmio has no hotplug); choose --network when you run it"
        );
    }
    if inst.status() != Status::Running || !inst.target_alive() {
        anyhow::bail!(
            "instance {} is not running; network {verb} changes a running container (start it first)",
            inst.short_id()
        );
    }
    if inst.spec.network_host {
        anyhow::bail!(
            "instance {} shares the host's network stack (--network host); it has no namespace to {verb}",
            inst.short_id()
        );
    }
    Ok(inst)
}
