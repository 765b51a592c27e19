//! Netlink client against the real kernel, always inside throwaway network namespaces (needs
//! root). Each test moves its own thread into a private namespace first, so the machine's
//! interfaces are never touched.

use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use vcompare_network::netlink::{AddressInfo, LinkInfo, Netlink, RouteInfo};
use vcompare_network::netns::{create_netns, current_netns, in_netns, private_netns_for_test};
use vcompare_network::Error;

fn setup() -> Netlink {
    private_netns_for_test().expect("private netns (run the tests as root)");
    Netlink::open().unwrap()
}

fn errno(e: Error) -> i32 {
    match e {
        Error::Netlink { errno, .. } => errno.raw_os_error().unwrap(),
        other => panic!("expected a netlink error, got {other}"),
    }
}

#[test]
fn bridge_is_created_tagged_brought_up_and_deleted() {
    let mut nl = setup();
    let index = nl.create_bridge("vcbr0", "vcompare-net:test").unwrap();

    let link = nl.link_by_name("vcbr0").unwrap().unwrap();
    let expected = LinkInfo {
        index,
        name: "vcbr0".into(),
        kind: Some("bridge".into()),
        master: None,
        alias: Some("vcompare-net:test".into()),
        up: false,
        mac: link.mac,
    };
    assert_eq!(link, expected);
    assert!(link.mac.is_some_and(|m| m != [0; 6]));
    assert!(nl.links().unwrap().contains(&expected));

    assert_eq!(
        errno(nl.create_bridge("vcbr0", "x").unwrap_err()),
        libc::EEXIST
    );

    nl.set_up(index).unwrap();
    assert!(nl.link_by_name("vcbr0").unwrap().unwrap().up);
    nl.set_alias(index, "vcompare-net:other").unwrap();
    assert_eq!(
        nl.link_by_name("vcbr0").unwrap().unwrap().alias.as_deref(),
        Some("vcompare-net:other")
    );

    nl.delete_link(index).unwrap();
    assert_eq!(nl.link_by_name("vcbr0").unwrap(), None);
    assert!(nl.links().unwrap().iter().all(|l| l.index != index));
    nl.delete_link(index).unwrap(); // idempotent
}

#[test]
fn veth_peer_is_born_in_the_other_netns_and_joins_the_bridge() {
    let mut nl = setup();
    let other = create_netns().unwrap();
    let bridge = nl.create_bridge("vcbr0", "vcompare-net:test").unwrap();
    let veth = nl
        .create_veth("vcv0", "eth0", other.as_fd(), "vcompare:c1")
        .unwrap();

    let host = nl.link_by_name("vcv0").unwrap().unwrap();
    assert_eq!(
        (host.index, host.kind.as_deref(), host.alias.as_deref()),
        (veth, Some("veth"), Some("vcompare:c1"))
    );
    assert_eq!(
        nl.link_by_name("eth0").unwrap(),
        None,
        "the peer must not appear on the host side"
    );

    let mut inside = Netlink::open_in(other.as_fd()).unwrap();
    let peer = inside.link_by_name("eth0").unwrap().unwrap();
    assert_eq!(
        (peer.kind.as_deref(), peer.alias.as_deref(), peer.up),
        (Some("veth"), None, false)
    );
    let mut names: Vec<String> = inside
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    names.sort();
    assert_eq!(names, ["eth0", "lo"]);

    assert_eq!(nl.hairpin(veth).unwrap(), None, "not a bridge port yet");
    nl.set_master(veth, Some(bridge)).unwrap();
    assert_eq!(
        nl.link_by_name("vcv0").unwrap().unwrap().master,
        Some(bridge)
    );
    assert_eq!(nl.hairpin(veth).unwrap(), Some(false));
    nl.set_hairpin(veth, true).unwrap();
    assert_eq!(nl.hairpin(veth).unwrap(), Some(true));
    nl.set_hairpin(veth, false).unwrap();
    assert_eq!(nl.hairpin(veth).unwrap(), Some(false));
    nl.set_master(veth, None).unwrap();
    assert_eq!(nl.link_by_name("vcv0").unwrap().unwrap().master, None);

    nl.delete_link(veth).unwrap();
    assert_eq!(nl.link_by_name("vcv0").unwrap(), None);
    assert_eq!(
        inside.link_by_name("eth0").unwrap(),
        None,
        "deleting one end removes the peer"
    );
    nl.delete_link(bridge).unwrap();
}

#[test]
fn addresses_and_default_route_inside_the_instance_netns() {
    let mut nl = setup();
    let other = create_netns().unwrap();
    let bridge = nl.create_bridge("vcbr0", "vcompare-net:test").unwrap();
    nl.add_address(bridge, Ipv4Addr::new(10, 89, 0, 1), 24)
        .unwrap();
    nl.set_up(bridge).unwrap();
    let veth = nl
        .create_veth("vcv0", "eth0", other.as_fd(), "vcompare:c1")
        .unwrap();
    nl.set_master(veth, Some(bridge)).unwrap();
    nl.set_up(veth).unwrap();

    let mut inside = Netlink::open_in(other.as_fd()).unwrap();
    let eth0 = inside.link_by_name("eth0").unwrap().unwrap().index;
    inside
        .add_address(eth0, Ipv4Addr::new(10, 89, 0, 2), 24)
        .unwrap();
    inside.set_up(eth0).unwrap();
    inside
        .add_default_route(Ipv4Addr::new(10, 89, 0, 1))
        .unwrap();

    let err = inside
        .add_address(eth0, Ipv4Addr::new(10, 89, 0, 2), 24)
        .unwrap_err();
    assert_eq!(errno(err), libc::EEXIST);
    let err = inside
        .add_default_route(Ipv4Addr::new(10, 89, 0, 1))
        .unwrap_err();
    assert_eq!(errno(err), libc::EEXIST);

    // `lo` of a fresh namespace is down and has no address: eth0's is the only one.
    assert_eq!(
        inside.addresses().unwrap(),
        [AddressInfo {
            index: eth0,
            address: Ipv4Addr::new(10, 89, 0, 2),
            prefix_len: 24
        }]
    );
    let mut routes = inside.routes().unwrap();
    routes.sort_by_key(|r| r.destination);
    assert_eq!(
        routes,
        [
            RouteInfo {
                destination: None,
                gateway: Some(Ipv4Addr::new(10, 89, 0, 1)),
                oif: Some(eth0)
            },
            RouteInfo {
                destination: Some((Ipv4Addr::new(10, 89, 0, 0), 24)),
                gateway: None,
                oif: Some(eth0)
            },
        ]
    );

    // Host side: our private namespace has lo (127.0.0.1/8, up) and the bridge's gateway address.
    let mut host = nl.addresses().unwrap();
    host.sort_by_key(|a| a.address);
    let lo = nl.link_by_name("lo").unwrap().unwrap().index;
    assert_eq!(
        host,
        [
            AddressInfo {
                index: bridge,
                address: Ipv4Addr::new(10, 89, 0, 1),
                prefix_len: 24
            },
            AddressInfo {
                index: lo,
                address: Ipv4Addr::LOCALHOST,
                prefix_len: 8
            },
        ]
    );
    assert_eq!(
        nl.routes().unwrap(),
        [RouteInfo {
            destination: Some((Ipv4Addr::new(10, 89, 0, 0), 24)),
            gateway: None,
            oif: Some(bridge)
        }]
    );

    nl.delete_link(veth).unwrap();
    assert_eq!(inside.routes().unwrap(), []);
    assert_eq!(inside.addresses().unwrap(), []);
    nl.delete_link(bridge).unwrap();
    assert_eq!(nl.routes().unwrap(), []);
}

#[test]
fn requests_on_missing_links_fail_with_enodev_except_delete() {
    let mut nl = setup();
    assert_eq!(nl.link_by_name("nosuchlink").unwrap(), None);
    assert_eq!(errno(nl.set_up(999_999).unwrap_err()), libc::ENODEV);
    let err = nl
        .add_address(999_999, Ipv4Addr::new(10, 0, 0, 1), 24)
        .unwrap_err();
    assert_eq!(errno(err), libc::ENODEV);
    nl.delete_link(999_999).unwrap();
    let message = nl.set_up(999_999).unwrap_err().to_string();
    assert!(message.contains("bringing link 999999 up"), "{message}");
}

#[test]
fn in_netns_runs_elsewhere_and_leaves_the_caller_alone() {
    let _ = setup();
    let inode = |fd: std::os::fd::OwnedFd| std::fs::File::from(fd).metadata().unwrap().ino();
    let mine = inode(current_netns().unwrap());
    let other = create_netns().unwrap();
    let other_inode = std::fs::File::from(other.try_clone().unwrap())
        .metadata()
        .unwrap()
        .ino();
    assert_ne!(mine, other_inode);

    let seen = in_netns(other.as_fd(), || inode(current_netns().unwrap())).unwrap();
    assert_eq!(seen, other_inode);
    assert_eq!(inode(current_netns().unwrap()), mine);
}
