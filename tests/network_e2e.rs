//! End-to-end tests of networks in container mode: the real binary, real bridges, veths, nft
//! rules and DNS responder — all inside the network namespace each test process makes for
//! itself (`common::test_host`), so the machine's interfaces are never touched. Every wait is
//! bounded (60 s polls, 3 s socket timeouts).

mod common;

use std::os::unix::process::ExitStatusExt;

use common::test_host::{
    address_of, assert_no_network_leftovers, host_cmd, host_output, http_get, in_netns,
};
use common::{text, wait_until, Env, BUSYBOX};
use serde_json::Value;

/// A busybox web server answering `GET /` with `body`, on port 80 of the instance.
fn httpd(body: &str) -> String {
    format!("mkdir -p /www && echo {body} > /www/index.html && exec httpd -f -p 80 -h /www")
}

/// A shell line that sends `GET /` to IP:PORT with busybox `nc` (3 s timeout). Not `wget`:
/// the static busybox's `wget` looks the service up through glibc's NSS, which a static
/// binary cannot load, and crashes.
fn nc_get(ip: &str, port: u16) -> String {
    format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port}")
}

/// Polls `GET /` at `addr` (inside the test namespace) until the body shows up.
fn wait_http(addr: &str, body: &str) -> String {
    wait_until(&format!("{body} at {addr}"), || {
        http_get(addr).and_then(|r| if r.contains(body) { Ok(r) } else { Err(r) })
    })
}

/// A second address of the stand-in host (a dummy interface in the test namespace), so
/// "reachable at the host's own addresses" is checked on something other than loopback.
fn add_host_address() -> &'static str {
    for args in [
        &["link", "add", "hostlan0", "type", "bridge"][..],
        &["addr", "add", "192.0.2.10/24", "dev", "hostlan0"],
        &["link", "set", "hostlan0", "up"],
    ] {
        host_output("ip", args);
    }
    "192.0.2.10"
}

/// `inspect`'s host-vs-instance view of `id`.
fn inspect(env: &Env, id: &str) -> Value {
    let v: Value = serde_json::from_str(&env.ok(&["inspect", id, "--format", "json"])).unwrap();
    v["view"].clone()
}

fn ipam_leases(env: &Env) -> String {
    let dir = env.root().join("networks");
    let mut out = String::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().ends_with(".ipam.json") {
            out.push_str(&std::fs::read_to_string(e.path()).unwrap());
        }
    }
    out
}

#[test]
fn published_port_reaches_a_container_from_loopback_host_address_and_itself() {
    let env = Env::with_busybox();
    let host_ip = add_host_address();
    let (id, _) = env.run_detached(&["-p", "18080:80", BUSYBOX, "sh", "-c", &httpd("hello-ctr")]);
    wait_http("127.0.0.1:18080", "hello-ctr");
    wait_http(&format!("{host_ip}:18080"), "hello-ctr");

    // The lecture table: the instance's address inside, its veth and bridge outside, the DNAT.
    let v = inspect(&env, &id);
    let att = &v["network"]["attachments"][0];
    assert_eq!(att["network"], "default", "{v}");
    let addr = att["inside"]["address"].as_str().unwrap();
    assert!(
        addr.starts_with("10.88.0.") && addr.ends_with("/24"),
        "{addr}"
    );
    assert_eq!(att["inside"]["interface"], "eth0");
    assert_eq!(att["host"]["bridge"], "vcbr0");
    let veth = att["host"]["link"].as_str().unwrap();
    assert!(host_output("ip", &["-o", "link", "show", veth]).contains("master vcbr0"));
    let inside = &v["network"]["inside_now"];
    assert!(inside["addresses"].to_string().contains(addr), "{inside}");
    assert!(
        inside["routes"]
            .to_string()
            .contains("default via 10.88.0.1 dev eth0"),
        "{inside}"
    );
    let rules = v["network"]["nft_rules"].to_string();
    assert!(rules.contains("dnat") && rules.contains("18080"), "{rules}");

    // Hairpin: the container reaches its own published port through the host's address.
    let o = env.run(&["exec", &id, "sh", "-c", &nc_get(host_ip, 18080)]);
    assert!(
        text(&o.stdout).contains("hello-ctr"),
        "hairpin: {}",
        text(&o.stderr)
    );

    // /etc/hosts and resolv.conf inside name the instance and the host's servers.
    let hosts = env.ok(&["exec", &id, "cat", "/etc/hosts"]);
    assert!(hosts.contains(addr.split('/').next().unwrap()), "{hosts}");

    env.ok(&["rm", "-f", &id]);
    assert_no_network_leftovers();
    assert!(
        !ipam_leases(&env).contains(&id),
        "IPAM lease left: {}",
        ipam_leases(&env)
    );
}

#[test]
fn a_busy_host_port_fails_before_the_instance_starts_and_leaves_nothing() {
    let env = Env::with_busybox();
    // Something on the stand-in host listens on 18081.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        in_netns(move || {
            let l = std::net::TcpListener::bind("0.0.0.0:18081").unwrap();
            ready_tx.send(()).unwrap();
            let _ = rx.recv_timeout(std::time::Duration::from_secs(120));
            drop(l);
        })
    });
    ready_rx.recv().unwrap();
    let publish = |port: &str| {
        env.run(&[
            "run",
            "--rm",
            "--mode",
            "container",
            "-p",
            port,
            BUSYBOX,
            "true",
        ])
    };
    let o = publish("18081:80");
    assert_ne!(o.status.code(), Some(0));
    let err = text(&o.stderr);
    assert!(
        err.contains("18081") && err.contains("already in use"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one plain sentence: {err}");
    tx.send(()).unwrap();
    holder.join().unwrap();

    // A port another instance publishes is just as busy.
    let (id, _) = env.run_detached(&["-p", "18082:80", BUSYBOX, "sleep", "300"]);
    let o = publish("18082:80");
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o.stderr).contains("already in use"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(env.ps_json().len(), 1, "the refused run left no instance");
    env.ok(&["rm", "-f", &id]);
    assert_no_network_leftovers();
}

#[test]
fn names_resolve_on_a_user_network_and_networks_are_isolated() {
    let env = Env::with_busybox();
    env.ok(&["network", "create", "front"]);
    env.ok(&["network", "create", "back"]);
    let (web, _) = env.run_detached(&[
        "--network",
        "front",
        "--name",
        "web",
        BUSYBOX,
        "sh",
        "-c",
        &httpd("hello-web"),
    ]);
    let web_ip = address_of(&inspect(&env, &web)["network"]["attachments"][0]);

    // Same network: the name resolves (through the responder on the gateway) to web's
    // address, and web answers there.
    let script = format!(
        "nslookup web > /tmp/ns 2>&1; cat /tmp/ns; {}",
        nc_get("$(awk '/^Address/ {a=$NF} END {print a}' /tmp/ns)", 80)
    );
    let o = env.run_sh(&["--network", "front"], &script);
    let out = text(&o.stdout);
    assert!(
        out.contains(&web_ip),
        "nslookup web: {out}\n{}",
        text(&o.stderr)
    );
    assert!(
        out.contains("hello-web"),
        "wget by name: {out}\n{}",
        text(&o.stderr)
    );

    // Another network: no route through the firewall to web.
    let o = env.run_sh(
        &["--network", "back"],
        &format!("{} && echo REACHED", nc_get(&web_ip, 80)),
    );
    assert!(
        !text(&o.stdout).contains("REACHED"),
        "isolation broken: {}",
        text(&o.stdout)
    );
    assert_ne!(o.status.code(), Some(0));

    // The default network has no name server of its own (as in Docker).
    let o = env.run_sh(&[], "cat /etc/resolv.conf");
    assert!(
        !text(&o.stdout).contains("10.88.0.1"),
        "{}",
        text(&o.stdout)
    );

    let o = env.run(&["network", "rm", "front"]);
    assert!(text(&o.stderr).contains("in use"), "{}", text(&o.stderr));
    env.ok(&["rm", "-f", &web]);
    env.ok(&["network", "rm", "front", "back"]);
    assert_no_network_leftovers();
    // The responder ends once its network has no names left.
    wait_until("the DNS responder to exit", || {
        let ps = host_output("ps", &["-eo", "args"]);
        if ps
            .lines()
            .any(|l| l.contains("dns-serve") && l.contains(env.root().to_str().unwrap()))
        {
            Err(ps)
        } else {
            Ok(())
        }
    });
}

#[test]
fn connect_and_disconnect_change_a_running_container_live() {
    let env = Env::with_busybox();
    env.ok(&["network", "create", "side"]);
    let (id, _) = env.run_detached(&["--network", "none", BUSYBOX, "sleep", "300"]);
    let links = env.ok(&["exec", &id, "ls", "/sys/class/net"]);
    assert_eq!(links.split_whitespace().collect::<Vec<_>>(), ["lo"]);

    let out = env.ok(&["network", "connect", "side", &id]);
    assert!(out.contains("eth0 10.89.0."), "{out}");
    let addrs = env.ok(&["exec", &id, "ip", "-o", "-4", "addr"]);
    assert!(
        addrs.contains("eth0") && addrs.contains("10.89.0."),
        "{addrs}"
    );
    // The gateway (the bridge) answers from inside: the link is really up.
    let o = env.run(&["exec", &id, "ping", "-c", "1", "-W", "3", "10.89.0.1"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o.stdout));

    env.ok(&["network", "disconnect", "side", &id]);
    let links = env.ok(&["exec", &id, "ls", "/sys/class/net"]);
    assert_eq!(
        links.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "eth0 is gone"
    );
    let e = env.fails(&["network", "disconnect", "side", &id]);
    assert!(e.contains("not connected"), "{e}");
    env.ok(&["rm", "-f", &id]);
    env.ok(&["network", "rm", "side"]);
    assert_no_network_leftovers();
}

#[test]
fn network_commands_list_inspect_and_refuse_bad_input() {
    let env = Env::new();
    env.ok(&["network", "create", "lab", "--subnet", "10.77.5.0/24"]);
    let ls = env.ok(&["network", "ls"]);
    assert!(
        ls.contains("lab") && ls.contains("10.77.5.0/24") && ls.contains("10.77.5.1"),
        "{ls}"
    );
    let v: Value = serde_json::from_str(&env.ok(&["network", "inspect", "lab"])).unwrap();
    assert_eq!(v["dns"], "10.77.5.1:53");
    assert_eq!(v["instances"], serde_json::json!([]));
    for (args, says) in [
        (&["network", "create", "lab"][..], "already exists"),
        (
            &["network", "create", "x", "--subnet", "10.77.5.128/25"],
            "overlaps network `lab`",
        ),
        (&["network", "create", "host"], "invalid network name"),
        (&["network", "inspect", "nope"], "no network `nope`"),
        (
            &["run", "--network", "nope", "test/none", "true"],
            "network create nope",
        ),
    ] {
        let e = env.fails(args);
        assert!(e.contains(says), "{args:?}: {e}");
    }
    for (p, says) in [
        ("80", "expected [IP:]HOST_PORT:GUEST_PORT"),
        ("0:80", "-p"),
        ("1.2.3:80:80", "-p"),
        ("80:80/sctp", "-p"),
    ] {
        let e = env.fails(&["run", "-p", p, "test/none", "true"]);
        assert!(e.contains(says), "-p {p}: {e}");
    }
    let e = env.fails(&[
        "run",
        "--network",
        "none",
        "-p",
        "80:80",
        "test/none",
        "true",
    ]);
    assert!(e.contains("needs a network"), "{e}");
    env.ok(&["network", "rm", "lab"]);
    assert!(!env.ok(&["network", "ls"]).contains("lab"));
}

#[test]
fn a_killed_vcompare_leaves_nothing_after_the_next_command() {
    let env = Env::with_busybox();
    env.ok(&["network", "create", "crash"]);
    let mut child = env
        .cmd(&[
            "run",
            "--mode",
            "container",
            "--network",
            "crash",
            "--name",
            "doomed",
            "-p",
            "18083:80",
            BUSYBOX,
            "sleep",
            "300",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let v = common::wait_for("doomed to run", || {
        env.ps_json()
            .into_iter()
            .find(|v| v["name"] == "doomed" && v["pid"].is_i64())
    });
    let pid = v["pid"].as_i64().unwrap() as i32;
    assert!(host_output("ip", &["-o", "link"]).contains("vcv"));
    // SIGKILL vcompare (no teardown runs), then the container it ran.
    child.kill().unwrap();
    assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
    // SAFETY: kill(2) of the container's process, found through vcompare's own record.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_until("the container process to end", || {
        if std::path::Path::new(&format!("/proc/{pid}")).exists()
            && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .unwrap_or_default()
                .contains(") Z")
        {
            Err(format!("pid {pid} alive"))
        } else {
            Ok(())
        }
    });
    // Any next command cleans up.
    env.ok(&["ps", "-a"]);
    assert_no_network_leftovers();
    let leases = ipam_leases(&env);
    assert!(
        !leases.contains(&v["id"].as_str().unwrap()[..12]),
        "{leases}"
    );
    let _ = host_cmd("true").status();
}
