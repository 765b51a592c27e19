//! Disk: host bytes per extra instance — what `vcompare` keeps on the host for one instance
//! (container: the overlay upper dir, record and logs; VM: its disk copy, record and logs),
//! measured as allocated blocks (like `du`) and apparent size (like `du -b`) of the instance
//! directory after the instance exited, before `rm`.

use std::path::Path;

use serde_json::Value;

use super::{cost, Plan};
use crate::harness::{dir_usage, Harness};
use crate::results::{DiskSeries, Results};

/// Definition text shown next to each subject's numbers.
pub fn definition(subject: &str) -> &'static str {
    match subject {
        "vm" => "allocated / apparent bytes of the VM's instance dir (its disk copy from the image, record, logs) after exit",
        _ => "allocated / apparent bytes of the container's instance dir (overlay upper dir, record, logs) after exit",
    }
}

/// (allocated, apparent) bytes of the instance dir named in a `vcompare inspect` record.
pub fn instance_usage(record: &Value) -> Option<(u64, u64)> {
    let dir = record.get("spec")?.get("instance_dir")?.as_str()?;
    let p = Path::new(dir);
    p.is_dir().then(|| dir_usage(p))
}

/// Stand-alone disk suite (when startup is not selected): a warm-up, then two instances per mode.
pub fn run(h: &mut Harness, plan: &Plan, results: &mut Results) {
    let mut modes = Vec::new();
    if plan.mode("container") {
        modes.push("container");
    }
    if super::vm_usable(h, plan, results, "disk", 2 * cost::VM) {
        modes.push("vm");
    }
    for mode in modes {
        // The same warm-up as every suite: an untimed container run; the run's VM warm-up boot.
        if mode == "vm" {
            super::vm_warm_up(h, results, "vm");
        } else {
            let image = h.image.clone();
            let _ = h.vcompare_ok(&super::run_args(
                super::Network::None,
                &["--rm", "--mode", mode, &image, "/bin/probe", "true"],
            ));
        }
        let mut s = DiskSeries {
            subject: mode.into(),
            definition: definition(mode).into(),
            allocated_bytes: Vec::new(),
            apparent_bytes: Vec::new(),
        };
        for _ in 0..2 {
            let name = h.fresh_name(mode);
            let image = h.image.clone();
            let r = h.vcompare_ok(&super::probe_true_kept(&name, mode, &image));
            h.advance(
                if mode == "vm" {
                    cost::VM
                } else {
                    cost::CONTAINER
                },
                &format!("disk {mode}"),
            );
            match r.and_then(|_| h.inspect(&name)) {
                Ok(rec) => {
                    if let Some((a, b)) = instance_usage(&rec) {
                        s.allocated_bytes.push(a);
                        s.apparent_bytes.push(b);
                    }
                }
                Err(e) if mode == "vm" => {
                    super::vm_failed(h, results, "disk", &e);
                    h.remove(&[name]);
                    break;
                }
                Err(e) => results.skip(format!("disk {mode}"), e.to_string()),
            }
            h.remove(&[name]);
        }
        if !s.allocated_bytes.is_empty() {
            results.disk.push(s);
        }
    }
}
