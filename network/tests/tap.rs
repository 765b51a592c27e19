//! TAP creation against the real kernel, inside a private network namespace (needs root).

use std::time::{Duration, Instant};

use vcompare_network::netlink::Netlink;
use vcompare_network::netns::private_netns_for_test;
use vcompare_network::tap::open_tap;
use vcompare_network::Error;

#[test]
fn tap_exists_while_its_fd_is_open_and_vanishes_after() {
    private_netns_for_test().expect("private netns (run the tests as root)");
    let mut nl = Netlink::open().unwrap();

    let tap = open_tap("vctap0").unwrap();
    assert_eq!(tap.name, "vctap0");
    let link = nl
        .link_by_name("vctap0")
        .unwrap()
        .expect("TAP link exists while its fd is open");
    assert_eq!(link.kind.as_deref(), Some("tun"));
    assert!(link.mac.is_some());

    // A second TAP of the same name is refused while the first is open.
    assert!(matches!(open_tap("vctap0"), Err(Error::Sys { .. })));

    drop(tap);
    let deadline = Instant::now() + Duration::from_secs(5);
    while nl.link_by_name("vctap0").unwrap().is_some() {
        assert!(
            Instant::now() < deadline,
            "TAP link still there after its last fd closed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kernel_completes_a_name_pattern() {
    private_netns_for_test().expect("private netns (run the tests as root)");
    let tap = open_tap("vct%d").unwrap();
    assert_eq!(tap.name, "vct0");
}

#[test]
fn invalid_names_are_refused_before_the_kernel_sees_them() {
    for name in ["", "a-name-longer-than-15", "a/b"] {
        assert!(matches!(open_tap(name), Err(Error::Invalid(_))), "{name:?}");
    }
}
