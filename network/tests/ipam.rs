//! Concurrent allocation: several threads, and several processes, allocating from one network
//! at once must never get the same address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

use vcompare_network::ipam::{Ipam, Subnet};

const CHILD_DIR: &str = "VCOMPARE_IPAM_TEST_CHILD_DIR";
const PER_WORKER: usize = 20;

fn subnet() -> Subnet {
    "10.89.0.0/24".parse().unwrap()
}

fn allocate_many(dir: &Path, worker: &str) -> Vec<Ipv4Addr> {
    let ipam = Ipam::new(dir, "race", subnet());
    (0..PER_WORKER)
        .map(|i| ipam.allocate(&format!("{worker}-{i}")).unwrap())
        .collect()
}

fn assert_all_distinct_and_recorded(dir: &Path, got: &[Ipv4Addr], workers: usize) {
    let unique: BTreeSet<_> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        workers * PER_WORKER,
        "an address was handed out twice"
    );
    let leases = Ipam::new(dir, "race", subnet()).leases().unwrap();
    assert_eq!(leases.keys().copied().collect::<BTreeSet<_>>(), unique);
    assert!(unique
        .iter()
        .all(|a| subnet().contains(*a) && *a != subnet().gateway()));
}

#[test]
fn threads_allocating_at_once_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let got: Vec<Ipv4Addr> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|w| s.spawn(move || allocate_many(path, &format!("t{w}"))))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_all_distinct_and_recorded(dir.path(), &got, 8);
}

#[test]
fn processes_allocating_at_once_never_share_an_address() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let spawned: Vec<_> = (0..4)
        .map(|w| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "ipam_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_DIR, dir.path())
                .env("VCOMPARE_IPAM_TEST_WORKER", format!("p{w}"))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut got = Vec::new();
    for child in spawned {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        got.extend(
            text.lines()
                .filter_map(|l| l.split_once("ALLOCATED ").map(|(_, a)| a))
                .map(|a| a.parse::<Ipv4Addr>().unwrap()),
        );
    }
    assert_eq!(
        got.len(),
        4 * PER_WORKER,
        "every child reported its addresses"
    );
    assert_all_distinct_and_recorded(dir.path(), &got, 4);
}

/// Not a test on its own: the worker body of the test above, run in a child process.
#[test]
fn ipam_child_process() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let worker = std::env::var("VCOMPARE_IPAM_TEST_WORKER").unwrap();
    for a in allocate_many(Path::new(&dir), &worker) {
        println!("ALLOCATED {a}");
    }
}
