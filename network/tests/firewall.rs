//! nftables rules of [`vcompare_network::firewall`], checked against a golden listing and with
//! real traffic. Each test runs in a private network namespace of its own (root needed), so the
//! machine's interfaces and tables are never touched.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use vcompare_network::firewall::{self, InstanceRules, NetworkRules};
use vcompare_network::netns::private_netns_for_test;
use vcompare_network::Error;

fn sh(cmd: &str) {
    let out = Command::new("sh")
        .args(["-c", cmd])
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge `name` with `gateway/24` on it, up, in the calling thread's namespace.
fn bridge(name: &str, gateway: &str) {
    sh(&format!("ip link add {name} type bridge && ip addr add {gateway}/24 dev {name} && ip link set {name} up"));
}

fn network(bridge: &str, subnet: &str) -> NetworkRules {
    NetworkRules {
        bridge: bridge.into(),
        subnet: subnet.parse().unwrap(),
    }
}

fn instance(id: &str, address: &str, ports: &[&str]) -> InstanceRules {
    InstanceRules {
        id: id.into(),
        address: address.parse().unwrap(),
        bridge: "vcbr0".into(),
        ports: ports.iter().map(|p| p.parse().unwrap()).collect(),
    }
}

/// The table listing with anything run-specific (handles, trailing blanks) removed.
fn listing() -> String {
    let text = firewall::list_table().unwrap().expect("table exists");
    text.lines()
        .map(|l| l.split(" # handle").next().unwrap().trim_end())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn rules_match_golden_and_are_removed_by_tag() {
    private_netns_for_test().unwrap();
    bridge("vcbr0", "10.88.0.1");
    firewall::add_network(&network("vcbr0", "10.88.0.0/24")).unwrap();
    firewall::add_instance(&instance(
        "web1",
        "10.88.0.2",
        &["8080:80", "127.0.0.1:5353:53/udp"],
    ))
    .unwrap();

    let golden = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/firewall_table.nft"
    );
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(golden, listing()).unwrap();
    }
    assert_eq!(
        listing(),
        std::fs::read_to_string(golden).unwrap(),
        "set UPDATE_GOLDEN=1 to accept a change"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/conf/vcbr0/route_localnet")
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        "1"
    );

    // Re-adding replaces, never duplicates.
    let sorted = |s: String| {
        let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
        lines.sort();
        lines
    };
    firewall::add_network(&network("vcbr0", "10.88.0.0/24")).unwrap();
    firewall::add_instance(&instance(
        "web1",
        "10.88.0.2",
        &["8080:80", "127.0.0.1:5353:53/udp"],
    ))
    .unwrap();
    assert_eq!(
        sorted(listing()),
        sorted(std::fs::read_to_string(golden).unwrap())
    );

    assert_eq!(firewall::instance_tags().unwrap(), ["web1"]);
    assert_eq!(firewall::network_tags().unwrap(), ["vcbr0"]);
    firewall::remove_instance("web1").unwrap();
    firewall::remove_instance("web1").unwrap();
    assert!(firewall::instance_tags().unwrap().is_empty());
    assert!(!listing().contains("vcompare:inst:"));
    firewall::remove_network("vcbr0").unwrap();
    assert_eq!(
        firewall::list_table().unwrap(),
        None,
        "the table goes with our last rule"
    );
    firewall::remove_network("vcbr0").unwrap();
    firewall::remove_instance("web1").unwrap();
}

#[test]
fn a_host_port_is_published_once() {
    private_netns_for_test().unwrap();
    bridge("vcbr0", "10.88.0.1");
    firewall::add_network(&network("vcbr0", "10.88.0.0/24")).unwrap();
    firewall::add_instance(&instance("a", "10.88.0.2", &["8080:80"])).unwrap();
    let before = listing();

    for taken in ["8080:81", "127.0.0.1:8080:80"] {
        let err = firewall::add_instance(&instance("b", "10.88.0.3", &[taken])).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PortInUse {
                    port: 8080,
                    proto: "tcp",
                    ..
                }
            ),
            "{taken}: {err}"
        );
        assert!(
            err.to_string().contains("choose another host port"),
            "{err}"
        );
    }
    let err =
        firewall::add_instance(&instance("b", "10.88.0.3", &["9000:80", "9000:81"])).unwrap_err();
    assert!(matches!(err, Error::PortInUse { port: 9000, .. }), "{err}");
    assert_eq!(listing(), before, "a refused instance leaves no rules");

    // A port published on loopback only (it has no prerouting rule) is taken as well.
    firewall::add_instance(&instance("l", "10.88.0.5", &["127.0.0.1:7070:80"])).unwrap();
    let err = firewall::add_instance(&instance("b", "10.88.0.3", &["7070:80"])).unwrap_err();
    assert!(matches!(err, Error::PortInUse { port: 7070, .. }), "{err}");
    firewall::add_instance(&instance("b", "10.88.0.3", &["127.0.0.2:7070:80"])).unwrap();
    firewall::remove_instance("l").unwrap();
    firewall::remove_instance("b").unwrap();

    // Another protocol, or a port only the same instance had, is free.
    firewall::add_instance(&instance("b", "10.88.0.3", &["8080:80/udp"])).unwrap();
    firewall::add_instance(&instance("a", "10.88.0.2", &["8080:80", "8081:81"])).unwrap();

    // A host process listening there.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let err =
        firewall::add_instance(&instance("c", "10.88.0.4", &[&format!("{port}:80")])).unwrap_err();
    assert!(
        matches!(err, Error::PortInUse { port: p, .. } if p == port),
        "{err}"
    );
    assert_eq!(firewall::instance_tags().unwrap(), ["a", "b"]);
}

/// A thread parked in a network namespace of its own (an "instance"), running jobs sent to it.
struct Netns {
    jobs: mpsc::Sender<Box<dyn FnOnce() + Send>>,
    tid: i32,
}

impl Netns {
    fn new() -> Netns {
        let (jobs, rx) = mpsc::channel::<Box<dyn FnOnce() + Send>>();
        let (tid_tx, tid_rx) = mpsc::channel();
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            tid_tx.send(nix::unistd::gettid().as_raw()).unwrap();
            rx.into_iter().for_each(|job| job());
        });
        Netns {
            jobs,
            tid: tid_rx.recv().unwrap(),
        }
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        self.jobs
            .send(Box::new(move || drop(tx.send(f()))))
            .unwrap();
        rx.recv_timeout(Duration::from_secs(20))
            .expect("job in the instance namespace")
    }

    /// Plugs this namespace into `bridge` over a veth pair, as `address/24` via `gateway`.
    fn attach(&self, bridge: &str, veth: &str, address: &str, gateway: &str) {
        sh(&format!("ip link add {veth}h type veth peer name {veth}g && ip link set {veth}h master {bridge} up"));
        sh(&format!("ip link set {veth}g netns {}", self.tid));
        let cmd = format!(
            "ip link set lo up && ip addr add {address}/24 dev {veth}g && ip link set {veth}g up && ip route add default via {gateway}"
        );
        self.run(move || sh(&cmd));
    }
}

/// Connects to `to`, sends a line and returns what came back (`None`: no connection).
fn echo(to: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"ping\n").unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

fn echo_server(ns: &Netns) {
    ns.run(|| {
        let listener = TcpListener::bind("0.0.0.0:80").unwrap();
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let mut buf = [0u8; 5];
                if conn.read_exact(&mut buf).is_ok() {
                    let _ = conn.write_all(&buf);
                }
            }
        });
    });
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Instances `srv` (publishing port 80) and `peer` on vcbr0, `other` on vcbr1, and an `outside`
/// host behind an uplink that has no route to our subnets (so replies need our masquerade).
/// `br_nf`: whether bridged frames pass the IP hooks (br_netfilter's bridge-nf-call-iptables).
fn traffic(br_nf: bool) {
    private_netns_for_test().unwrap();
    let knob = "/proc/sys/net/bridge/bridge-nf-call-iptables";
    if std::path::Path::new(knob).exists() {
        std::fs::write(knob, if br_nf { "1" } else { "0" }).unwrap();
    } else if br_nf {
        eprintln!("br_netfilter is not loaded; this run is the same as without it");
    }
    bridge("vcbr0", "10.88.0.1");
    bridge("vcbr1", "10.88.1.1");
    firewall::add_network(&network("vcbr0", "10.88.0.0/24")).unwrap();
    firewall::add_network(&network("vcbr1", "10.88.1.0/24")).unwrap();

    let (srv, peer, other, outside) = (Netns::new(), Netns::new(), Netns::new(), Netns::new());
    srv.attach("vcbr0", "vs", "10.88.0.2", "10.88.0.1");
    peer.attach("vcbr0", "vp", "10.88.0.3", "10.88.0.1");
    other.attach("vcbr1", "vo", "10.88.1.2", "10.88.1.1");
    sh(&format!(
        "ip link add up0 type veth peer name up0x && ip link set up0x netns {}",
        outside.tid
    ));
    sh("ip addr add 192.0.2.1/24 dev up0 && ip link set up0 up");
    outside.run(|| {
        sh("ip link set lo up && ip addr add 192.0.2.2/24 dev up0x && ip link set up0x up")
    });
    echo_server(&srv);
    echo_server(&outside);
    firewall::add_instance(&instance(
        "srv",
        "10.88.0.2",
        &["18080:80", "127.0.0.1:18081:80"],
    ))
    .unwrap();
    let ping = Some("ping\n".to_string());

    // The host through its published ports (loopback needs route_localnet + masquerade).
    assert_eq!(echo(addr("127.0.0.1:18080")), ping);
    assert_eq!(echo(addr("127.0.0.1:18081")), ping);
    assert_eq!(echo(addr("192.0.2.1:18080")), ping);
    assert_eq!(
        echo(addr("192.0.2.1:18081")),
        None,
        "published on 127.0.0.1 only"
    );
    // The host directly: not forwarded, so allowed.
    assert_eq!(echo(addr("10.88.0.2:80")), ping);
    // Same network: directly.
    assert_eq!(peer.run(|| echo(addr("10.88.0.2:80"))), ping);
    // Another network: not directly, only through the published port like any outsider.
    assert_eq!(other.run(|| echo(addr("10.88.0.2:80"))), None);
    assert_eq!(other.run(|| echo(addr("10.88.1.1:18080"))), ping);
    // Outside: only the published port, even with a route to the subnet.
    outside.run(|| sh("ip route add 10.88.0.0/16 via 192.0.2.1"));
    assert_eq!(outside.run(|| echo(addr("10.88.0.2:80"))), None);
    assert_eq!(outside.run(|| echo(addr("192.0.2.1:18080"))), ping);
    outside.run(|| sh("ip route del 10.88.0.0/16 via 192.0.2.1"));
    // Out to the world: masqueraded (the outside host has no route back to 10.88.0.0/24).
    assert_eq!(srv.run(|| echo(addr("192.0.2.2:80"))), ping);
    assert_eq!(other.run(|| echo(addr("192.0.2.2:80"))), ping);
    // The instance reaching its own published port (hairpin NAT; the bridge port also needs
    // hairpin mode, which the netlink code sets, for the reply to leave the port it came in on).
    sh("ip link set vsh type bridge_slave hairpin on");
    assert_eq!(srv.run(|| echo(addr("10.88.0.1:18080"))), ping);

    firewall::remove_instance("srv").unwrap();
    assert_eq!(echo(addr("127.0.0.1:18080")), None, "unpublished");
}

#[test]
fn traffic_with_br_netfilter() {
    traffic(true);
}

#[test]
fn traffic_without_br_netfilter() {
    traffic(false);
}
