//! Published ports and network isolation as nftables rules, all in one table of our own,
//! `table inet vcompare`, so we never edit (or depend on) anybody else's tables. Every rule
//! carries a comment tag, `vcompare:net:<bridge>` or `vcompare:inst:<id>`, which is how the
//! rules of one network or instance are found again, replaced, removed, or garbage-collected
//! after a crash: we read the table (`nft -j list table inet vcompare`) and delete by handle.
//!
//! The rules are written so their order never matters (each is a drop or a NAT whose match
//! already excludes what must pass), because networks and instances come and go in any order:
//!
//! - network, postrouting: `ip saddr SUBNET oifname != BRIDGE masquerade` (instances reach out);
//! - network, forward: drop what enters BRIDGE from any other interface unless it is a reply
//!   (`ct state established,related`) or a published port (`ct status dnat`). Traffic between
//!   ports of one bridge has `iifname == oifname == BRIDGE` (also when br_netfilter passes
//!   bridged frames through this hook), so it is never dropped; traffic from another `vcbr*`
//!   bridge or from outside is. The host's own traffic to an instance is not forwarded at all.
//! - instance, prerouting + output: `fib daddr type local` (or `ip daddr HOST_IP`) `tcp dport
//!   H dnat ip to ADDR:G`; output makes published ports work for the host itself, and is the
//!   only place for ports published on a loopback address (see [`add_instance`]);
//! - instance, postrouting: masquerade sources in 127.0.0.0/8 going to ADDR (so
//!   `127.0.0.1:H` works, with `route_localnet` on the bridge) and the hairpin case of an
//!   instance reaching its own published port (`ip saddr ADDR ip daddr ADDR ct status dnat`).

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use nftables::expr::{
    BinaryOperation, Expression, Fib, FibFlag, FibResult, Meta, MetaKey, NamedExpression, Payload,
    PayloadField, Prefix, SetItem, CT,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::Deserialize;

use crate::ipam::Subnet;
use crate::ports::{self, PortMapping, Proto};
use crate::{sysctl, Error, Result};

/// Our table's name (family `inet`); nothing outside it is ever touched.
pub const TABLE: &str = "vcompare";
const NET_TAG: &str = "vcompare:net:";
const INST_TAG: &str = "vcompare:inst:";

/// What a network needs from the firewall: its bridge (the tag, and the interface the
/// isolation rules name) and its subnet (what gets masqueraded).
#[derive(Debug, Clone)]
pub struct NetworkRules {
    /// Bridge device, e.g. `vcbr0`.
    pub bridge: String,
    /// The network's subnet.
    pub subnet: Subnet,
}

/// What an instance needs from the firewall: its published ports, DNATed to its address.
#[derive(Debug, Clone)]
pub struct InstanceRules {
    /// Instance id (the tag).
    pub id: String,
    /// The instance's address on its network.
    pub address: Ipv4Addr,
    /// Bridge of that network.
    pub bridge: String,
    /// `-p` mappings.
    pub ports: Vec<PortMapping>,
}

/// Installs a network's masquerade and isolation rules (creating our table and chains if
/// missing) and the sysctls they depend on. Re-adding a network replaces its rules, so a
/// half-finished earlier attempt is repaired rather than duplicated.
pub fn add_network(n: &NetworkRules) -> Result<()> {
    check_name("bridge", &n.bridge, 15, "-_")?;
    sysctl::set("net.ipv4.ip_forward", "1")?;
    // Lets DNAT send packets from 127.0.0.1 out through the bridge (published on 127.0.0.1).
    sysctl::set(&format!("net.ipv4.conf.{}.route_localnet", n.bridge), "1")?;
    let tag = format!("{NET_TAG}{}", n.bridge);
    let (bridge, subnet) = (n.bridge.as_str(), &n.subnet);
    let mut batch = skeleton();
    batch.extend(deletions(&read()?.unwrap_or_default(), &tag));
    batch.push(rule(
        "postrouting",
        &tag,
        vec![
            is(
                payload("ip", "saddr"),
                prefix(subnet.base, subnet.prefix_len),
            ),
            not(meta(MetaKey::Oifname), text(bridge.to_string())),
            Statement::Masquerade(None),
        ],
    ));
    batch.push(rule(
        "forward",
        &tag,
        vec![
            is(meta(MetaKey::Oifname), text(bridge.to_string())),
            not(meta(MetaKey::Iifname), text(bridge.to_string())),
            not(ct("state"), set(&["established", "related"])),
            is(
                Expression::BinaryOperation(Box::new(BinaryOperation::AND(
                    ct("status"),
                    text("dnat"),
                ))),
                Expression::Number(0),
            ),
            Statement::Drop(None),
        ],
    ));
    apply(&format!("adding the rules of network {bridge}"), batch)
}

/// Removes a network's rules, and our whole table once nothing of ours is left in it.
pub fn remove_network(bridge: &str) -> Result<()> {
    remove_tagged(&format!("{NET_TAG}{bridge}"))
}

/// Publishes an instance's ports (replacing rules it already had). Fails with
/// [`Error::PortInUse`], before changing anything, when another instance already publishes an
/// overlapping host port, or a host process listens there.
pub fn add_instance(r: &InstanceRules) -> Result<()> {
    check_name("instance id", &r.id, 64, "-_.")?;
    let tag = format!("{INST_TAG}{}", r.id);
    let listed = read()?.unwrap_or_default();
    let taken = listed
        .iter()
        .filter(|rule| {
            rule.chain == "output" && rule.tag().starts_with(INST_TAG) && rule.tag() != tag
        })
        .filter_map(ListedRule::published);
    for (i, m) in r.ports.iter().enumerate() {
        if let Some(other) = taken
            .clone()
            .chain(r.ports[..i].iter().cloned())
            .find(|o| o.overlaps(m))
        {
            return Err(Error::PortInUse {
                ip: m.host_ip.or(other.host_ip).unwrap_or(Ipv4Addr::UNSPECIFIED),
                port: m.host_port,
                proto: m.proto.as_str(),
            });
        }
        ports::check_free(m)?;
    }
    let mut batch = skeleton();
    batch.extend(deletions(&listed, &tag));
    let addr = r.address.to_string();
    for m in &r.ports {
        let to_local = match m.host_ip {
            Some(ip) => is(payload("ip", "daddr"), text(ip.to_string())),
            None => is(
                Expression::Named(NamedExpression::Fib(Fib {
                    result: FibResult::Type,
                    flags: HashSet::from([FibFlag::Daddr]),
                })),
                text("local"),
            ),
        };
        let dnat = vec![
            is(meta(MetaKey::Nfproto), text("ipv4")),
            to_local,
            is(
                payload(m.proto.as_str(), "dport"),
                Expression::Number(m.host_port.into()),
            ),
            Statement::DNAT(Some(NAT {
                addr: Some(text(addr.clone())),
                family: Some(NATFamily::IP),
                port: Some(Expression::Number(m.guest_port.into())),
                flags: None,
            })),
        ];
        // A port published on a loopback address is for the host itself (output) only: DNAT
        // in prerouting would happen before routing drops a forged 127.x destination arriving
        // from the network, and expose the port to whoever sends one.
        if !m.host_ip.is_some_and(|ip| ip.is_loopback()) {
            batch.push(rule("prerouting", &tag, dnat.clone()));
        }
        batch.push(rule("output", &tag, dnat));
    }
    if !r.ports.is_empty() {
        let from_loopback = is(
            payload("ip", "saddr"),
            prefix(Ipv4Addr::new(127, 0, 0, 0), 8),
        );
        let to_instance = is(payload("ip", "daddr"), text(addr.clone()));
        batch.push(rule(
            "postrouting",
            &tag,
            vec![
                from_loopback,
                to_instance.clone(),
                Statement::Masquerade(None),
            ],
        ));
        let hairpin = vec![
            is(payload("ip", "saddr"), text(addr.clone())),
            to_instance,
            Statement::Match(Match {
                left: ct("status"),
                right: text("dnat"),
                op: Operator::IN,
            }),
            Statement::Masquerade(None),
        ];
        batch.push(rule("postrouting", &tag, hairpin));
    }
    apply(
        &format!("publishing the ports of instance {} ({})", r.id, r.bridge),
        batch,
    )
}

/// Removes an instance's rules; removing what is not there is not an error, so crash cleanup
/// can call it blindly.
pub fn remove_instance(id: &str) -> Result<()> {
    remove_tagged(&format!("{INST_TAG}{id}"))
}

/// Ids of the instances that have rules now, so cleanup can find those whose owner is gone.
pub fn instance_tags() -> Result<Vec<String>> {
    tags(INST_TAG)
}

/// Bridges of the networks that have rules now, for the same cleanup.
pub fn network_tags() -> Result<Vec<String>> {
    tags(NET_TAG)
}

/// Our table as `nft list table inet vcompare` prints it (`None` when there is none), for
/// `inspect` and the golden tests.
pub fn list_table() -> Result<Option<String>> {
    nft_list(&["list", "table", "inet", TABLE])
}

// --- reading the table ---------------------------------------------------------------------

/// The parts of a listed rule we use; the rest of `nft -j`'s output is ignored, so newer nft
/// versions that add fields (or expressions the nftables crate does not model) do not break us.
#[derive(Debug, Deserialize)]
struct ListedRule {
    chain: String,
    handle: u32,
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    expr: Vec<serde_json::Value>,
}

impl ListedRule {
    fn tag(&self) -> &str {
        self.comment.as_deref().unwrap_or("")
    }

    /// The host side of the port a DNAT rule of ours publishes (guest port from `dnat`).
    fn published(&self) -> Option<PortMapping> {
        let (mut host_ip, mut port, mut proto, mut guest) = (None, None, None, 0);
        for e in &self.expr {
            if let Some(nat) = e.get("dnat") {
                guest = nat.get("port").and_then(|p| p.as_u64()).unwrap_or(0) as u16;
            }
            let Some(m) = e.get("match") else { continue };
            let Some(p) = m.pointer("/left/payload") else {
                continue;
            };
            match (
                p.get("protocol").and_then(|v| v.as_str()),
                p.get("field").and_then(|v| v.as_str()),
            ) {
                (Some("ip"), Some("daddr")) => {
                    host_ip = m["right"].as_str().and_then(|s| s.parse().ok())
                }
                (Some(pr @ ("tcp" | "udp")), Some("dport")) => {
                    proto = Some(if pr == "tcp" { Proto::Tcp } else { Proto::Udp });
                    port = m["right"].as_u64().map(|p| p as u16);
                }
                _ => {}
            }
        }
        Some(PortMapping {
            host_ip,
            host_port: port?,
            guest_port: guest,
            proto: proto?,
        })
    }
}

/// Our rules (`None` when the table does not exist).
fn read() -> Result<Option<Vec<ListedRule>>> {
    let Some(json) = nft_list(&["-j", "list", "table", "inet", TABLE])? else {
        return Ok(None);
    };
    let bad = |e: serde_json::Error| Error::Nft {
        what: "reading table inet vcompare".into(),
        detail: format!("unexpected `nft -j` output ({e}); is nft older than 0.9?"),
    };
    let doc: serde_json::Value = serde_json::from_str(&json).map_err(bad)?;
    let objects = doc["nftables"].as_array().cloned().unwrap_or_default();
    objects
        .into_iter()
        .filter_map(|mut o| o.get_mut("rule").map(serde_json::Value::take))
        .map(|r| serde_json::from_value(r).map_err(bad))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

fn tags(prefix: &str) -> Result<Vec<String>> {
    let mut ids: Vec<String> = read()?
        .unwrap_or_default()
        .iter()
        .filter_map(|r| r.tag().strip_prefix(prefix).map(str::to_string))
        .collect();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

fn remove_tagged(tag: &str) -> Result<()> {
    let Some(rules) = read()? else { return Ok(()) };
    let batch = if rules.iter().all(|r| r.tag() == tag) {
        let table = Table {
            family: NfFamily::INet,
            name: TABLE.into(),
            handle: None,
        };
        vec![NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(
            table,
        )))]
    } else {
        deletions(&rules, tag)
    };
    if batch.is_empty() {
        return Ok(());
    }
    apply(&format!("removing the rules tagged {tag}"), batch)
}

fn deletions(rules: &[ListedRule], tag: &str) -> Vec<NfObject<'static>> {
    rules
        .iter()
        .filter(|r| r.tag() == tag)
        .map(|r| {
            let rule = Rule {
                chain: r.chain.clone().into(),
                handle: Some(r.handle),
                ..base_rule()
            };
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Rule(rule)))
        })
        .collect()
}

// --- building rules ------------------------------------------------------------------------

/// `add table` and `add chain` for our four base chains; `add` is a no-op for what exists.
fn skeleton() -> Vec<NfObject<'static>> {
    let table = Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    };
    let chain = |name: &'static str, ty, hook, prio| {
        NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: name.into(),
            _type: Some(ty),
            hook: Some(hook),
            prio: Some(prio),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        })))
    };
    vec![
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table))),
        chain("prerouting", NfChainType::NAT, NfHook::Prerouting, -100),
        chain("output", NfChainType::NAT, NfHook::Output, -100),
        chain("postrouting", NfChainType::NAT, NfHook::Postrouting, 100),
        chain("forward", NfChainType::Filter, NfHook::Forward, 0),
    ]
}

fn base_rule() -> Rule<'static> {
    Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        ..Rule::default()
    }
}

fn rule(chain: &'static str, tag: &str, expr: Vec<Statement<'static>>) -> NfObject<'static> {
    let rule = Rule {
        chain: chain.into(),
        expr: expr.into(),
        comment: Some(tag.to_string().into()),
        ..base_rule()
    };
    NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(rule)))
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn not(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::NEQ,
    })
}

fn text(s: impl Into<Cow<'static, str>>) -> Expression<'static> {
    Expression::String(s.into())
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    let field = PayloadField {
        protocol: protocol.into(),
        field: field.into(),
    };
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(field)))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn ct(key: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: None,
    }))
}

fn set(items: &[&'static str]) -> Expression<'static> {
    Expression::Named(NamedExpression::Set(
        items.iter().map(|i| SetItem::Element(text(*i))).collect(),
    ))
}

fn prefix(addr: Ipv4Addr, len: u8) -> Expression<'static> {
    let addr = Box::new(text(addr.to_string()));
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr,
        len: len.into(),
    }))
}

/// Names end up inside nft strings (`oifname "…"`, comments): refuse what could change their
/// meaning (quotes, `*` wildcards, whitespace) or exceed the kernel's limits.
/// Bridges also become a sysctl path, where a '.' would be a separator, and are at most 15
/// bytes (IFNAMSIZ).
fn check_name(what: &str, name: &str, max: usize, extra: &str) -> Result<()> {
    if !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{what} {name:?} cannot be used in firewall rules: use 1 to {max} letters, digits or any of {extra:?}"
    )))
}

// --- running nft ---------------------------------------------------------------------------

/// Applies `batch` in one `nft -j -f -` run, which nft makes one atomic transaction. (Our own
/// runner rather than `nftables::helper::apply_ruleset`, which lets nft's stderr go to ours
/// and so loses the message that says what was wrong.)
fn apply(what: &str, batch: Vec<NfObject<'static>>) -> Result<()> {
    let doc = Nftables {
        objects: batch.into(),
    };
    let json = serde_json::to_string(&doc).expect("nftables schema types always serialize");
    nft(what, &["-j", "-f", "-"], Some(&json)).map(drop)
}

/// Runs an nft `list` command; `None` when our table does not exist.
fn nft_list(args: &[&str]) -> Result<Option<String>> {
    match nft("listing table inet vcompare", args, None) {
        Err(Error::Nft { detail, .. }) if detail.contains("No such file or directory") => Ok(None),
        other => other.map(Some),
    }
}

fn nft(what: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let fail = |detail: String| Error::Nft {
        what: what.to_string(),
        detail,
    };
    let mut child = Command::new("nft")
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                fail("the `nft` command is missing; install the nftables package (apt-get install nftables)".into())
            }
            _ => fail(format!("cannot run `nft`: {e}")),
        })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .map_err(|e| fail(format!("writing to `nft`: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| fail(format!("waiting for `nft`: {e}")))?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let hint = if stderr.contains("Operation not permitted") {
        " (nft needs root: CAP_NET_ADMIN)"
    } else {
        ""
    };
    Err(fail(format!("{}{hint}", stderr.trim())))
}
