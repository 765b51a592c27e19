//! The per-network DNS responder and its client, on loopback addresses of a private network
//! namespace per test (root needed to bind port 53), with bounded timeouts throughout.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use simple_dns::{Name, Packet, Question, CLASS, RCODE, TYPE};
use vcompare_network::dns::{self, query_a, write_hosts};
use vcompare_network::netns::private_netns_for_test;

const T: Duration = Duration::from_secs(2);

/// A responder on `listen:53` in a thread (which shares this thread's namespace).
struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<vcompare_network::Result<()>>>,
}

impl Server {
    fn start(listen: Ipv4Addr, hosts: &Path, upstream: Option<SocketAddrV4>) -> Server {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, hosts) = (stop.clone(), hosts.to_path_buf());
        let thread = std::thread::spawn(move || {
            dns::serve_with_upstream(listen, &hosts, upstream.map(Into::into), || {
                !flag.load(Ordering::Relaxed)
            })
        });
        // Ready once it answers (NXDOMAIN or not).
        let deadline = Instant::now() + Duration::from_secs(5);
        while query_a(
            SocketAddrV4::new(listen, 53),
            "ready.probe",
            Duration::from_millis(200),
        )
        .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "responder on {listen} did not come up"
            );
        }
        Server {
            stop,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let started = Instant::now();
        self.thread.take().unwrap().join().unwrap().unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "serve noticed keep_running late"
        );
    }
}

fn at(ip: [u8; 4]) -> SocketAddrV4 {
    SocketAddrV4::new(ip.into(), 53)
}

#[test]
fn answers_names_from_the_hosts_file_and_reloads_it() {
    private_netns_for_test().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    write_hosts(&hosts, &[("10.88.0.2".parse().unwrap(), "web".into())]).unwrap();
    let server = Server::start(Ipv4Addr::LOCALHOST, &hosts, None);
    let s = at([127, 0, 0, 1]);

    assert_eq!(
        query_a(s, "web", T).unwrap(),
        Some(Ipv4Addr::new(10, 88, 0, 2))
    );
    assert_eq!(
        query_a(s, "WEB.", T).unwrap(),
        Some(Ipv4Addr::new(10, 88, 0, 2))
    );
    assert_eq!(
        query_a(s, "db", T).unwrap(),
        None,
        "unknown name, no upstream: NXDOMAIN"
    );

    write_hosts(
        &hosts,
        &[
            ("10.88.0.3".parse().unwrap(), "web".into()),
            ("10.88.0.4".parse().unwrap(), "db".into()),
        ],
    )
    .unwrap();
    assert_eq!(
        query_a(s, "db", T).unwrap(),
        Some(Ipv4Addr::new(10, 88, 0, 4))
    );
    assert_eq!(
        query_a(s, "web", T).unwrap(),
        Some(Ipv4Addr::new(10, 88, 0, 3))
    );
    assert_eq!(dns::read_hosts(&hosts).len(), 2);

    // Garbage is ignored, and AAAA for a known name is an empty NOERROR.
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    sock.send_to(b"\x01\x02garbage", s).unwrap();
    let mut q = Packet::new_query(7);
    q.questions.push(Question::new(
        Name::new("web").unwrap(),
        TYPE::AAAA.into(),
        CLASS::IN.into(),
        false,
    ));
    sock.send_to(&q.build_bytes_vec().unwrap(), s).unwrap();
    let mut buf = [0u8; 512];
    let len = sock.recv(&mut buf).unwrap();
    let reply = Packet::parse(&buf[..len]).unwrap();
    assert_eq!(
        (reply.id(), reply.rcode(), reply.answers.len()),
        (7, RCODE::NoError, 0)
    );

    server.stop();
}

#[test]
fn unknown_names_go_upstream() {
    private_netns_for_test().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ours, theirs) = (dir.path().join("ours"), dir.path().join("theirs"));
    write_hosts(&ours, &[("10.88.0.2".parse().unwrap(), "web".into())]).unwrap();
    write_hosts(
        &theirs,
        &[("192.0.2.7".parse().unwrap(), "example.org".into())],
    )
    .unwrap();
    let upstream = Server::start(Ipv4Addr::new(127, 0, 0, 2), &theirs, None);
    let server = Server::start(Ipv4Addr::LOCALHOST, &ours, Some(at([127, 0, 0, 2])));
    let s = at([127, 0, 0, 1]);

    assert_eq!(
        query_a(s, "example.org", T).unwrap(),
        Some(Ipv4Addr::new(192, 0, 2, 7))
    );
    assert_eq!(
        query_a(s, "web", T).unwrap(),
        Some(Ipv4Addr::new(10, 88, 0, 2))
    );
    assert_eq!(
        query_a(s, "nowhere.example", T).unwrap(),
        None,
        "upstream's NXDOMAIN is relayed"
    );
    upstream.stop();
    assert!(
        query_a(s, "example.org", Duration::from_secs(4)).is_err(),
        "SERVFAIL when upstream is gone"
    );
    server.stop();
}
