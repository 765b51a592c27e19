//! The network half of a run, the same for both modes: join the instance's networks before it
//! starts (addresses, bridge, published ports, names), and leave them when it ends. The
//! backends add only their last hop (a veth into the container's namespace, a TAP for the VMM).

use anyhow::Context;
use vcompare_network::attach::{self, Attachment, LinkKind, Owner};
use vcompare_network::Networks;

use super::RunSpec;
use crate::instance::{Instances, Status};

/// The data root's network store.
pub fn networks_of(spec: &RunSpec) -> Networks {
    Networks::open(&spec.data_root)
}

/// Joins every network of `spec` in order (the first one publishes `-p`); starts the DNS
/// responder of user-defined networks. On failure nothing stays joined.
pub fn join_all(spec: &RunSpec, kind: LinkKind) -> anyhow::Result<Vec<Attachment>> {
    let nets = networks_of(spec);
    let mut out = Vec::new();
    let joined = (|| -> anyhow::Result<()> {
        for (i, name) in spec.networks.iter().enumerate() {
            let def = nets.resolve(name)?;
            let ports = if i == 0 { spec.ports.as_slice() } else { &[] };
            let owner = Owner {
                id: &spec.id,
                name: spec.name.as_deref(),
            };
            out.push(attach::join(&nets, &def, owner, kind, ports)?);
            if def.dns {
                start_dns(&nets, &def.name, spec)?;
            }
        }
        Ok(())
    })();
    if let Err(e) = joined {
        let _ = attach::leave_all(&nets, &spec.id);
        return Err(e);
    }
    Ok(out)
}

/// Runs `f` with the instance joined to its networks ([`join_all`]) and leaves them on every
/// path afterwards; the run's own error wins over a failure to leave. The one join/run/leave
/// bracket of both backends.
pub fn while_joined<T>(
    spec: &RunSpec,
    kind: LinkKind,
    f: impl FnOnce(&[Attachment]) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let networks = join_all(spec, kind)?;
    let ran = f(&networks);
    let left = leave_all(spec);
    let value = ran?;
    left?;
    Ok(value)
}

/// Makes sure the network's DNS responder runs (a `vcompare network dns-serve` daemon).
pub fn start_dns(nets: &Networks, network: &str, spec: &RunSpec) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the vcompare executable")?;
    attach::ensure_dns(nets, network, &exe, &spec.data_root)?;
    Ok(())
}

/// Leaves every network (run end, `rm`); an error names what is left.
pub fn leave_all(spec: &RunSpec) -> anyhow::Result<()> {
    attach::leave_all(&networks_of(spec), &spec.id).with_context(|| {
        format!(
            "disconnecting instance {} from its networks",
            spec.short_id()
        )
    })
}

/// Removes what killed vcompare processes left on the networks of this data root (links,
/// rules, addresses, names of instances that no longer run). Cheap when there is nothing: one
/// directory read. Run before every command, so "any next command" cleans up.
pub fn cleanup_stale(instances: &Instances, nets: &Networks) {
    let live = |id: &str| {
        instances
            .load(id)
            .is_ok_and(|i| i.status() == Status::Running)
    };
    for (id, r) in attach::cleanup_stale(nets, live) {
        match r {
            Ok(()) => tracing::debug!(id = %id, "removed a dead instance's network leftovers"),
            Err(e) => eprintln!(
                "vcompare: warning: could not remove the network leftovers of instance {}: {e}",
                &id[..12.min(id.len())]
            ),
        }
    }
}

/// The instance's view of its networks for `inspect`: each attachment (address, gateway,
/// host link, bridge, published ports) plus this instance's firewall rules.
pub fn describe(spec: &RunSpec) -> serde_json::Value {
    let mode = if spec.network_host {
        "host".to_string()
    } else if spec.networks.is_empty() {
        "none (lo only)".to_string()
    } else {
        spec.networks.join(",")
    };
    let atts = attach::attachments(&networks_of(spec), &spec.id).unwrap_or_default();
    let attachments: Vec<serde_json::Value> = atts
        .iter()
        .map(|a| {
            serde_json::json!({
                "network": a.network,
                "inside": { "interface": a.interface, "address": format!("{}/{}", a.address, a.prefix_len), "gateway": a.gateway.to_string(), "mac": a.mac_string() },
                "host": { "link": a.host_link, "kind": a.kind, "bridge": a.bridge },
                "ports": a.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "dns": a.dns.then(|| a.gateway.to_string()),
            })
        })
        .collect();
    let rules = atts
        .iter()
        .any(|a| !a.ports.is_empty())
        .then(|| instance_rules(&spec.id))
        .flatten();
    serde_json::json!({
        "mode": mode,
        "attachments": attachments,
        "nft_rules": rules,
    })
}

/// The lines of `nft list table inet vcompare` tagged with this instance.
fn instance_rules(id: &str) -> Option<Vec<String>> {
    let table = vcompare_network::firewall::list_table().ok()??;
    Some(
        table
            .lines()
            .filter(|l| l.contains(id))
            .map(|l| l.trim().to_string())
            .collect(),
    )
}
