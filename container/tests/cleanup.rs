//! Every path cleans up: after many runs, some failing on purpose (bad command, bad -v, OOM,
//! bad user), the host has exactly as many mounts, container cgroup dirs and child processes as
//! before. In its own test binary so that no other test runs concurrently.

mod common;

use common::*;
use vcompare_container::*;

fn children_of_me() -> usize {
    let me = std::process::id().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(')')
                        .map(|(_, r)| r.split_whitespace().nth(1) == Some(me.as_str()))
                })
                .unwrap_or(false)
        })
        .count()
}

#[test]
fn one_hundred_runs_leave_nothing_behind() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let sb = Sandbox::new();
    // Warm up (creates the shared rootfs) before counting.
    run(&sb.config("true"), &mut NoObserver).unwrap();
    let (m0, c0, p0) = (mount_count(), cgroup_dirs(), children_of_me());
    let mut kinds = [0usize; 5];
    for i in 0..100 {
        let mut cfg = sb.config("echo ok");
        match i % 5 {
            0 => {
                assert_eq!(run(&cfg, &mut NoObserver).unwrap(), ExitStatus::Exited(0));
            }
            1 => {
                cfg.args = vec!["no-such-command".into()];
                assert!(matches!(
                    run(&cfg, &mut NoObserver),
                    Err(Error::CommandNotFound(_))
                ));
            }
            2 => {
                cfg.volumes.push(Volume {
                    host: "/nonexistent/vcompare".into(),
                    guest: "/x".into(),
                    readonly: true,
                });
                assert!(matches!(
                    run(&cfg, &mut NoObserver),
                    Err(Error::VolumeSourceMissing(_))
                ));
            }
            3 => {
                cfg = sb.config("awk 'BEGIN{s=\"x\"; for(i=0;i<40;i++) s=s s}'");
                cfg.resources.memory_bytes = Some(16 << 20);
                assert_eq!(run(&cfg, &mut NoObserver).unwrap(), ExitStatus::OomKilled);
            }
            _ => {
                cfg.uid = 70000; // outside the mapped range
                assert!(run(&cfg, &mut NoObserver).is_err());
            }
        }
        kinds[i % 5] += 1;
    }
    assert_eq!(kinds, [20; 5]);
    assert_eq!(mount_count(), m0, "mounts leaked");
    assert_eq!(cgroup_dirs(), c0, "cgroup dirs leaked");
    assert_eq!(children_of_me(), p0, "processes leaked");
    remove(&sb.instance()).unwrap();
    assert!(!sb.instance().join("upper").exists());
}
