//! A small blocking rtnetlink client: just the link, address and route requests vcompare needs.
//! Each request asks for an acknowledgement and waits for it, so a refused request surfaces as
//! an [`Error::Netlink`] carrying the kernel's errno at the call that caused it. No async
//! runtime: these are a handful of round trips per instance.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    DefaultNla, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK,
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    self, InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoVeth, LinkAttribute, LinkFlags,
    LinkMessage, LinkProtoInfoBridge,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

use crate::{Error, Result};

/// `IFLA_BRPORT_MODE`: the bridge-port attribute that holds hairpin mode.
const IFLA_BRPORT_MODE: u16 = 4;
/// A dump the kernel flags as interrupted (links changed meanwhile) is retried this often.
const DUMP_ATTEMPTS: usize = 5;

/// An rtnetlink socket bound to one network namespace (the one it was opened in), so the same
/// code manages links on the host and inside an instance's namespace.
pub struct Netlink {
    socket: Socket,
    seq: u32,
}

/// A network interface as the kernel reports it, reduced to what vcompare decides on: whether
/// it is ours (alias), what it is (kind), where it hangs (master) and its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index, the handle every other request takes.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Link kind from `IFLA_INFO_KIND` ("bridge", "veth", "tun"); `None` for plain devices.
    pub kind: Option<String>,
    /// Index of the bridge it is a port of.
    pub master: Option<u32>,
    /// `IFLA_IFALIAS`: the ownership tag we put on links we create.
    pub alias: Option<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// Hardware address, for Ethernet-like links.
    pub mac: Option<[u8; 6]>,
}

/// One IPv4 address on an interface, so callers can check what is configured before adding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressInfo {
    /// Interface index.
    pub index: u32,
    /// The local address.
    pub address: Ipv4Addr,
    /// Prefix length of its subnet.
    pub prefix_len: u8,
}

/// One IPv4 unicast route of the main table, enough to check an instance's routing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// Destination network and prefix length; `None` for the default route.
    pub destination: Option<(Ipv4Addr, u8)>,
    /// Next hop, for routes via a gateway.
    pub gateway: Option<Ipv4Addr>,
    /// Output interface index.
    pub oif: Option<u32>,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)
            .map_err(|e| Error::sys("opening a netlink socket (NETLINK_ROUTE)", e))?;
        socket
            .bind_auto()
            .map_err(|e| Error::sys("binding a netlink socket", e))?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(|e| Error::sys("connecting a netlink socket to the kernel", e))?;
        Ok(Netlink { socket, seq: 0 })
    }

    /// A socket created inside `netns`; it keeps operating there whatever thread uses it, so a
    /// namespace can be configured without entering it.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink> {
        crate::netns::in_netns(netns, Netlink::open)?
    }

    /// Every link of the namespace, to find leftovers by alias or names in use.
    pub fn links(&mut self) -> Result<Vec<LinkInfo>> {
        let replies = self.dump(
            "listing links",
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(link_info(l)),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        match self.get_link(&format!("looking up link {name}"), msg) {
            Err(Error::Netlink { errno, .. }) if errno.raw_os_error() == Some(libc::ENODEV) => {
                Ok(None)
            }
            other => other.map(Some),
        }
    }

    /// Creates a bridge (down) tagged with `alias` and returns its index. An existing link of
    /// that name is an error (`EEXIST`), never silently reused.
    pub fn create_bridge(&mut self, name: &str, alias: &str) -> Result<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.into()));
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![link::LinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.create_link(&format!("creating bridge {name}"), name, msg, alias)
    }

    /// Creates a veth pair whose peer is born inside `peer_netns` under its final name (no
    /// rename, no move afterwards); returns the host side's index, tagged with `alias`.
    pub fn create_veth(
        &mut self,
        host_name: &str,
        peer_name: &str,
        peer_netns: BorrowedFd<'_>,
        alias: &str,
    ) -> Result<u32> {
        let mut peer = LinkMessage::default();
        peer.attributes
            .push(LinkAttribute::IfName(peer_name.into()));
        peer.attributes
            .push(LinkAttribute::NetNsFd(peer_netns.as_raw_fd()));
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(host_name.into()));
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            link::LinkInfo::Kind(InfoKind::Veth),
            link::LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
        ]));
        let op = format!("creating veth pair {host_name} <-> {peer_name}");
        self.create_link(&op, host_name, msg, alias)
    }

    /// Sets the ownership tag of a link (an empty alias removes it).
    pub fn set_alias(&mut self, index: u32, alias: &str) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes.push(LinkAttribute::IfAlias(alias.into()));
        self.ack(
            &format!("setting the alias of link {index}"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Makes a link a port of bridge `master`, or detaches it with `None`.
    pub fn set_master(&mut self, index: u32, master: Option<u32>) -> Result<()> {
        let mut msg = link_message(index);
        msg.attributes
            .push(LinkAttribute::Controller(master.unwrap_or(0)));
        let op = match master {
            Some(m) => format!("attaching link {index} to bridge {m}"),
            None => format!("detaching link {index} from its bridge"),
        };
        self.ack(&op, RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Brings a link up (`IFF_UP`).
    pub fn set_up(&mut self, index: u32) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.ack(
            &format!("bringing link {index} up"),
            RouteNetlinkMessage::SetLink(msg),
            0,
        )
    }

    /// Turns hairpin mode of a bridge port on or off: with it on, the bridge may send a frame
    /// back out of the port it came in by, which an instance needs to reach its own published
    /// ports through the host address.
    pub fn set_hairpin(&mut self, index: u32, on: bool) -> Result<()> {
        let mut msg = link_message(index);
        msg.header.interface_family = AddressFamily::Bridge;
        msg.attributes.push(LinkAttribute::ProtoInfoBridge(vec![
            LinkProtoInfoBridge::Other(DefaultNla::new(IFLA_BRPORT_MODE, vec![u8::from(on)])),
        ]));
        let op = format!(
            "setting hairpin mode {} on bridge port {index}",
            if on { "on" } else { "off" }
        );
        self.ack(&op, RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Hairpin mode of a bridge port as the kernel reports it; `None` if the link is not a
    /// bridge port. Lets callers (and tests) verify [`Netlink::set_hairpin`].
    pub fn hairpin(&mut self, index: u32) -> Result<Option<bool>> {
        let msg =
            self.get_link_message(&format!("reading bridge port {index}"), link_message(index))?;
        Ok(msg.attributes.into_iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.into_iter().find_map(|i| match i {
                link::LinkInfo::PortData(InfoPortData::BridgePort(port)) => {
                    port.into_iter().find_map(|p| match p {
                        InfoBridgePort::HairpinMode(on) => Some(on),
                        _ => None,
                    })
                }
                _ => None,
            }),
            _ => None,
        }))
    }

    /// Adds an IPv4 address (with its broadcast address) to a link; an address already present
    /// is an error (`EEXIST`).
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix_len: u8) -> Result<()> {
        let mut msg = AddressMessage::default();
        msg.header.family = AddressFamily::Inet;
        msg.header.prefix_len = prefix_len;
        msg.header.index = index;
        msg.attributes
            .push(AddressAttribute::Local(IpAddr::V4(address)));
        msg.attributes
            .push(AddressAttribute::Address(IpAddr::V4(address)));
        if prefix_len < 31 {
            let host_bits = u32::MAX.checked_shr(u32::from(prefix_len)).unwrap_or(0);
            let broadcast = Ipv4Addr::from(u32::from(address) | host_bits);
            msg.attributes.push(AddressAttribute::Broadcast(broadcast));
        }
        let op = format!("adding address {address}/{prefix_len} to link {index}");
        self.ack(
            &op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// Every IPv4 address of the namespace.
    pub fn addresses(&mut self) -> Result<Vec<AddressInfo>> {
        let mut req = AddressMessage::default();
        req.header.family = AddressFamily::Inet;
        let replies = self.dump("listing addresses", RouteNetlinkMessage::GetAddress(req))?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.family == AddressFamily::Inet => {
                    let ip = |attr: &AddressAttribute| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    };
                    let fallback = |attr: &AddressAttribute| match attr {
                        AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                        _ => None,
                    };
                    let address = a
                        .attributes
                        .iter()
                        .find_map(ip)
                        .or_else(|| a.attributes.iter().find_map(fallback))?;
                    Some(AddressInfo {
                        index: a.header.index,
                        address,
                        prefix_len: a.header.prefix_len,
                    })
                }
                _ => None,
            })
            .collect())
    }

    /// Adds the default route via `gateway` to the main table (the link is found from the
    /// gateway's subnet, so an address on it must exist first).
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> Result<()> {
        let mut msg = route_message();
        msg.header.protocol = RouteProtocol::Static;
        msg.header.scope = RouteScope::Universe;
        msg.header.kind = RouteType::Unicast;
        msg.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        let op = format!("adding the default route via {gateway}");
        self.ack(
            &op,
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )
    }

    /// The IPv4 unicast routes of the main table (local, broadcast, blackhole… routes left out).
    pub fn routes(&mut self) -> Result<Vec<RouteInfo>> {
        let replies = self.dump(
            "listing routes",
            RouteNetlinkMessage::GetRoute(route_message()),
        )?;
        Ok(replies
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => route_info(r),
                _ => None,
            })
            .collect())
    }

    /// Deletes a link (a veth takes its peer along). A link that is already gone is fine, so
    /// cleanup can run twice.
    pub fn delete_link(&mut self, index: u32) -> Result<()> {
        let op = format!("deleting link {index}");
        match self.ack(&op, RouteNetlinkMessage::DelLink(link_message(index)), 0) {
            Err(Error::Netlink { errno, .. }) if errno.raw_os_error() == Some(libc::ENODEV) => {
                Ok(())
            }
            other => other,
        }
    }

    // ---- plumbing ----

    fn create_link(&mut self, op: &str, name: &str, msg: LinkMessage, alias: &str) -> Result<u32> {
        self.ack(
            op,
            RouteNetlinkMessage::NewLink(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        )?;
        // The alias cannot be given at creation (the kernel ignores IFLA_IFALIAS there).
        let link = self.link_by_name(name)?.ok_or_else(|| Error::Netlink {
            op: op.into(),
            errno: io::Error::from_raw_os_error(libc::ENODEV),
        })?;
        if !alias.is_empty() {
            self.set_alias(link.index, alias)?;
        }
        Ok(link.index)
    }

    fn get_link(&mut self, op: &str, msg: LinkMessage) -> Result<LinkInfo> {
        self.get_link_message(op, msg).map(link_info)
    }

    fn get_link_message(&mut self, op: &str, msg: LinkMessage) -> Result<LinkMessage> {
        let replies = self.request(op, RouteNetlinkMessage::GetLink(msg), 0)?.0;
        replies
            .into_iter()
            .find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .ok_or_else(|| Error::NetlinkDecode {
                op: op.into(),
                detail: "no link in the reply".into(),
            })
    }

    /// A request whose only answer is the acknowledgement.
    fn ack(&mut self, op: &str, msg: RouteNetlinkMessage, flags: u16) -> Result<()> {
        self.request(op, msg, flags).map(drop)
    }

    /// A dump, repeated when the kernel says it was interrupted by a concurrent change.
    fn dump(&mut self, op: &str, msg: RouteNetlinkMessage) -> Result<Vec<RouteNetlinkMessage>> {
        for _ in 1..DUMP_ATTEMPTS {
            let (replies, interrupted) = self.request(op, msg.clone(), NLM_F_DUMP)?;
            if !interrupted {
                return Ok(replies);
            }
        }
        Ok(self.request(op, msg, NLM_F_DUMP)?.0)
    }

    /// Sends one request and collects the replies up to its ACK, error or end of dump. Returns
    /// them and whether the kernel flagged the dump as interrupted.
    fn request(
        &mut self,
        op: &str,
        msg: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool)> {
        self.seq = self.seq.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(msg));
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf);
        self.socket
            .send(&buf, 0)
            .map_err(|e| Error::sys(format!("{op}: sending the netlink request"), e))?;

        let mut replies = Vec::new();
        let mut interrupted = false;
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|e| Error::sys(format!("{op}: reading the netlink reply"), e))?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let raw = NetlinkBuffer::new_checked(rest).map_err(|e| Error::NetlinkDecode {
                    op: op.into(),
                    detail: e.to_string(),
                })?;
                let len = raw.length() as usize;
                let (seq, msg_flags) = (raw.sequence_number(), raw.flags());
                let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest);
                rest = &rest[len.next_multiple_of(4).min(rest.len())..];
                if seq != self.seq {
                    continue; // a late answer to an earlier request
                }
                interrupted |= msg_flags & NLM_F_DUMP_INTR != 0;
                let payload = match parsed {
                    Ok(m) => m.payload,
                    Err(e) => {
                        // One exotic object the decoder does not know must not fail a whole dump.
                        tracing::warn!("{op}: skipping an undecodable netlink message: {e}");
                        continue;
                    }
                };
                match payload {
                    NetlinkPayload::InnerMessage(m) => replies.push(m),
                    NetlinkPayload::Error(e) if e.code.is_none() => {
                        return Ok((replies, interrupted))
                    }
                    NetlinkPayload::Error(e) => {
                        return Err(Error::Netlink {
                            op: op.into(),
                            errno: io::Error::from_raw_os_error(-e.raw_code()),
                        })
                    }
                    NetlinkPayload::Done(d) if d.code < 0 => {
                        return Err(Error::Netlink {
                            op: op.into(),
                            errno: io::Error::from_raw_os_error(-d.code),
                        })
                    }
                    NetlinkPayload::Done(_) => return Ok((replies, interrupted)),
                    _ => {}
                }
            }
        }
    }
}

fn link_message(index: u32) -> LinkMessage {
    let mut msg = LinkMessage::default();
    msg.header.index = index;
    msg
}

fn route_message() -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg
}

fn link_info(msg: LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        name: String::new(),
        kind: None,
        master: None,
        alias: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        mac: None,
    };
    for attr in msg.attributes {
        match attr {
            LinkAttribute::IfName(name) => info.name = name,
            LinkAttribute::IfAlias(alias) => info.alias = Some(alias),
            LinkAttribute::Controller(master) if master != 0 => info.master = Some(master),
            LinkAttribute::Address(mac) => info.mac = mac.try_into().ok(),
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let link::LinkInfo::Kind(kind) = i {
                        info.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

fn route_info(msg: RouteMessage) -> Option<RouteInfo> {
    let table = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table));
    if msg.header.address_family != AddressFamily::Inet
        || table != u32::from(RouteHeader::RT_TABLE_MAIN)
        || msg.header.kind != RouteType::Unicast
    {
        return None;
    }
    let mut route = RouteInfo {
        destination: None,
        gateway: None,
        oif: None,
    };
    for attr in msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(dst))
                if msg.header.destination_prefix_length > 0 =>
            {
                route.destination = Some((dst, msg.header.destination_prefix_length));
            }
            RouteAttribute::Gateway(RouteAddress::Inet(gw)) => route.gateway = Some(gw),
            RouteAttribute::Oif(oif) => route.oif = Some(oif),
            _ => {}
        }
    }
    Some(route)
}
