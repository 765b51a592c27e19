//! End-to-end tests of the OCI image store through the real binary: import round trips,
//! OCI layer rules, differential comparison with umoci, and bad input that must fail with one
//! clear line and leave the store exactly as it was.

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::{
    compress, describe_tree, docker_save_dir, layer, oci_layout, rootfs_of, sha, tar_dir, Comp,
    Env, E,
};

#[test]
fn build_round_trip_preserves_files_links_and_modes() {
    let env = Env::new();
    let src = env.scratch("src");
    fs::create_dir_all(src.join("etc/deep")).unwrap();
    fs::write(src.join("etc/deep/a.txt"), b"alpha").unwrap();
    fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(
        src.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o751),
    )
    .unwrap();
    std::os::unix::fs::symlink("etc/deep/a.txt", src.join("link")).unwrap();
    fs::hard_link(src.join("etc/deep/a.txt"), src.join("hard")).unwrap();
    let out = env.ok(&[
        "image",
        "build",
        src.to_str().unwrap(),
        "--tag",
        "test/built:1",
        "--cmd",
        "/run.sh",
    ]);
    assert!(out.contains("test/built:1"), "{out}");
    let rootfs = rootfs_of(&env, "test/built:1");
    assert_eq!(describe_tree(&src), describe_tree(&rootfs));
    let a = fs::metadata(rootfs.join("etc/deep/a.txt")).unwrap();
    let h = fs::metadata(rootfs.join("hard")).unwrap();
    assert_eq!(a.ino(), h.ino(), "hard link must share the inode");
    let ls = env.ok(&["image", "ls", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&ls).unwrap();
    assert_eq!(v[0]["reference"], "test/built:1");
    assert_eq!(v[0]["id"].as_str().unwrap().len(), 12);
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["image", "inspect", "test/built:1"])).unwrap();
    assert_eq!(inspect["config"]["config"]["Cmd"][0], "/run.sh");
}

/// Three layers exercising every OCI rule: whiteouts, opaque dirs (marker after entries),
/// hard links, symlinks, file replaced by a directory and back.
fn rules_layers() -> Vec<Vec<u8>> {
    vec![
        layer(&[
            E::Dir("etc/", 0o755),
            E::File("etc/keep", b"keep", 0o644),
            E::File("etc/gone", b"gone", 0o644),
            E::Dir("opq/", 0o755),
            E::File("opq/old1", b"1", 0o644),
            E::Dir("opq/olddir/", 0o700),
            E::File("opq/olddir/x", b"x", 0o600),
            E::File("thing", b"a file first", 0o644),
            E::Dir("dir2file/", 0o755),
            E::File("dir2file/inner", b"inner", 0o644),
            E::File("bin/tool", b"#!tool", 0o755),
            E::Symlink("bin/alias", "tool"),
        ]),
        layer(&[
            E::File("etc/.wh.gone", b"", 0o644),
            E::File("opq/new", b"new", 0o644),
            E::File("opq/.wh..wh..opq", b"", 0o644),
            E::Dir("thing/", 0o755),
            E::File("thing/now-a-dir", b"d", 0o644),
            E::File("dir2file", b"now a file", 0o640),
            E::Hardlink("bin/tool-hard", "bin/tool"),
            E::Symlink("abs", "/etc/keep"),
        ]),
        layer(&[
            E::File("thing", b"a file again", 0o600),
            E::File("etc/keep", b"kept, updated", 0o644),
        ]),
    ]
}

fn expect_rules_result(rootfs: &Path) {
    let rd = |p: &str| fs::read(rootfs.join(p)).unwrap();
    assert_eq!(rd("etc/keep"), b"kept, updated");
    assert!(!rootfs.join("etc/gone").exists(), "whiteout must delete");
    assert!(
        !rootfs.join("etc/.wh.gone").exists(),
        "whiteout markers are not files"
    );
    let opq: Vec<String> = fs::read_dir(rootfs.join("opq"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        opq,
        vec!["new".to_string()],
        "opaque dir keeps only this layer's entries"
    );
    assert_eq!(rd("thing"), b"a file again");
    assert!(rootfs.join("thing").is_file());
    assert_eq!(rd("dir2file"), b"now a file");
    assert_eq!(
        fs::metadata(rootfs.join("dir2file")).unwrap().mode() & 0o777,
        0o640
    );
    assert_eq!(
        fs::read_link(rootfs.join("bin/alias"))
            .unwrap()
            .to_str()
            .unwrap(),
        "tool"
    );
    assert_eq!(
        fs::read_link(rootfs.join("abs")).unwrap().to_str().unwrap(),
        "/etc/keep"
    );
    assert_eq!(
        fs::metadata(rootfs.join("bin/tool")).unwrap().ino(),
        fs::metadata(rootfs.join("bin/tool-hard")).unwrap().ino()
    );
    assert_eq!(
        fs::metadata(rootfs.join("bin/tool")).unwrap().mode() & 0o777,
        0o755
    );
    assert_eq!(
        fs::metadata(rootfs.join("etc/keep")).unwrap().mtime(),
        1_600_000_000
    );
}

#[test]
fn oci_layout_with_every_layer_rule_and_every_compression() {
    let env = Env::new();
    let layers = rules_layers();
    let comps = [Comp::None, Comp::Gzip, Comp::Zstd];
    let src = env.scratch("layout");
    let digest = oci_layout(
        &src,
        &layers.iter().cloned().zip(comps).collect::<Vec<_>>(),
        "rules:v1",
        &["/bin/tool"],
    );
    env.ok(&["image", "import", src.to_str().unwrap()]);
    expect_rules_result(&rootfs_of(&env, "rules:v1"));
    let by_id = rootfs_of(&env, &digest.trim_start_matches("sha256:")[..12]);
    expect_rules_result(&by_id);
}

#[test]
fn oci_archive_and_docker_save_import() {
    let env = Env::new();
    let layers = rules_layers();
    let lay = env.scratch("archsrc");
    oci_layout(
        &lay,
        &layers
            .iter()
            .cloned()
            .map(|l| (l, Comp::Gzip))
            .collect::<Vec<_>>(),
        "arch/ive:2",
        &["/bin/tool"],
    );
    let archive = env.dir.path().join("image.tar");
    tar_dir(&lay, &archive);
    let out = env.ok(&["image", "import", archive.to_str().unwrap()]);
    assert!(out.contains("arch/ive:2"), "{out}");
    expect_rules_result(&rootfs_of(&env, "arch/ive:2"));

    let ds = env.scratch("dsave");
    docker_save_dir(&ds, &layers, "docker/saved:3");
    let tarball = env.dir.path().join("saved.tar");
    tar_dir(&ds, &tarball);
    let out = env.ok(&["image", "import", tarball.to_str().unwrap()]);
    assert!(out.contains("docker/saved:3"), "{out}");
    expect_rules_result(&rootfs_of(&env, "docker/saved:3"));
    // --tag renames.
    env.ok(&[
        "image",
        "import",
        tarball.to_str().unwrap(),
        "--tag",
        "renamed",
    ]);
    expect_rules_result(&rootfs_of(&env, "renamed:latest"));
}

#[test]
fn image_rm_removes_tags_then_the_image() {
    let env = Env::new();
    let src = env.scratch("layout");
    oci_layout(
        &src,
        &[(layer(&[E::File("f", b"x", 0o644)]), Comp::None)],
        "a/b:1",
        &["/f"],
    );
    env.ok(&["image", "import", src.to_str().unwrap()]);
    env.ok(&["image", "import", src.to_str().unwrap(), "--tag", "c/d:2"]);
    let rootfs = rootfs_of(&env, "a/b:1");
    assert!(env.ok(&["image", "rm", "a/b:1"]).contains("Untagged"));
    assert!(rootfs.exists(), "still tagged c/d:2");
    assert!(env.ok(&["image", "rm", "c/d:2"]).contains("Deleted"));
    assert!(!rootfs.exists());
    let blobs = fs::read_dir(env.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0, "unreferenced blobs are collected");
    let err = env.fails(&["image", "rm", "a/b:1"]);
    assert!(err.contains("not found"), "{err}");
}

/// Imports `path`, expects one clear error line mentioning `needle`, and an unchanged store.
fn expect_rejected(env: &Env, path: &Path, needle: &str) {
    let before = env.store_snapshot();
    let err = env.fails(&["image", "import", path.to_str().unwrap()]);
    assert!(err.starts_with("vcompare: error:"), "{err}");
    assert!(err.contains(needle), "expected `{needle}` in: {err}");
    assert_eq!(
        before,
        env.store_snapshot(),
        "a failed import must leave the store as it was"
    );
}

fn blob_of(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn manifest_of(layout: &Path) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let md = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    serde_json::from_slice(&fs::read(blob_of(layout, &md)).unwrap()).unwrap()
}

#[test]
fn bad_input_fails_cleanly_and_leaves_the_store_unchanged() {
    let env = Env::new();
    // A good image first, so "unchanged" means something.
    let good = env.scratch("good");
    oci_layout(
        &good,
        &[(layer(&[E::File("ok", b"ok", 0o644)]), Comp::Gzip)],
        "good:1",
        &["/ok"],
    );
    env.ok(&["image", "import", good.to_str().unwrap()]);
    let base = || layer(&[E::File("a", b"aaaa", 0o644), E::File("b", b"bbbb", 0o644)]);

    // Blob digest mismatch: same size, different content.
    let d = env.scratch("mismatch");
    oci_layout(&d, &[(base(), Comp::None)], "bad:1", &["/a"]);
    let l = manifest_of(&d)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let mut bytes = fs::read(blob_of(&d, &l)).unwrap();
    bytes[600] ^= 0xff;
    fs::write(blob_of(&d, &l), &bytes).unwrap();
    expect_rejected(&env, &d, "does not match its digest");

    // Truncated blob.
    let d = env.scratch("truncated");
    oci_layout(&d, &[(base(), Comp::Gzip)], "bad:1", &["/a"]);
    let l = manifest_of(&d)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let bytes = fs::read(blob_of(&d, &l)).unwrap();
    fs::write(blob_of(&d, &l), &bytes[..bytes.len() / 2]).unwrap();
    expect_rejected(&env, &d, "truncated");

    // Missing blob.
    let d = env.scratch("missing");
    oci_layout(&d, &[(base(), Comp::None)], "bad:1", &["/a"]);
    let l = manifest_of(&d)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    fs::remove_file(blob_of(&d, &l)).unwrap();
    expect_rejected(&env, &d, "is missing");

    // Unknown media type (manifest rewritten, index updated to the new digest).
    let d = env.scratch("mediatype");
    oci_layout(&d, &[(base(), Comp::None)], "bad:1", &["/a"]);
    let mut m = manifest_of(&d);
    m["layers"][0]["mediaType"] = "application/x-weird".into();
    let mb = serde_json::to_vec(&m).unwrap();
    fs::write(blob_of(&d, &sha(&mb)), &mb).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&mb), "size": mb.len()}]});
    fs::write(d.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    expect_rejected(&env, &d, "unsupported media type `application/x-weird`");

    // Malformed JSON.
    let d = env.scratch("json");
    oci_layout(&d, &[(base(), Comp::None)], "bad:1", &["/a"]);
    fs::write(
        d.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    expect_rejected(&env, &d, "not valid JSON");

    // `../../etc/x` entry.
    let d = env.scratch("dotdot");
    oci_layout(
        &d,
        &[(
            layer(&[
                E::File("fine", b"1", 0o644),
                E::RawFile(b"../../etc/x", b"pwn"),
            ]),
            Comp::None,
        )],
        "bad:1",
        &["/a"],
    );
    expect_rejected(&env, &d, "points outside");

    // Absolute entry.
    let d = env.scratch("absolute");
    oci_layout(
        &d,
        &[(layer(&[E::RawFile(b"/etc/x", b"pwn")]), Comp::None)],
        "bad:1",
        &["/a"],
    );
    expect_rejected(&env, &d, "points outside");

    // Symlink escape: a symlink to the host's /tmp, then a write through it.
    let d = env.scratch("symlink");
    let escape_dir = env.scratch("escape-target");
    let target: &'static str = Box::leak(escape_dir.display().to_string().into_boxed_str());
    oci_layout(
        &d,
        &[
            (layer(&[E::Symlink("evil", target)]), Comp::None),
            (layer(&[E::File("evil/planted", b"pwn", 0o644)]), Comp::None),
        ],
        "bad:1",
        &["/a"],
    );
    expect_rejected(&env, &d, "through a symlink");
    assert!(
        !escape_dir.join("planted").exists(),
        "nothing may be written outside the rootfs"
    );
    // Relative escape as well.
    let d = env.scratch("symlink-rel");
    oci_layout(
        &d,
        &[(
            layer(&[
                E::Symlink("up", "../../../../../../.."),
                E::File("up/tmp/planted2", b"pwn", 0o644),
            ]),
            Comp::None,
        )],
        "bad:1",
        &["/a"],
    );
    expect_rejected(&env, &d, "through a symlink");
    assert!(!Path::new("/tmp/planted2").exists());

    // diff_id mismatch: config promises a different uncompressed layer.
    let d = env.scratch("diffid");
    oci_layout(&d, &[(base(), Comp::Gzip)], "bad:1", &["/a"]);
    let m = manifest_of(&d);
    let cd = m["config"]["digest"].as_str().unwrap().to_string();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&fs::read(blob_of(&d, &cd)).unwrap()).unwrap();
    cfg["rootfs"]["diff_ids"][0] = sha(b"something else").into();
    let cb = serde_json::to_vec(&cfg).unwrap();
    fs::write(blob_of(&d, &sha(&cb)), &cb).unwrap();
    let mut m2 = m.clone();
    m2["config"]["digest"] = sha(&cb).into();
    m2["config"]["size"] = cb.len().into();
    let mb = serde_json::to_vec(&m2).unwrap();
    fs::write(blob_of(&d, &sha(&mb)), &mb).unwrap();
    fs::write(d.join("index.json"), serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&mb), "size": mb.len()}]})).unwrap()).unwrap();
    expect_rejected(&env, &d, "diff_id");

    // A path that does not exist, and something that is not an image.
    expect_rejected(&env, &env.dir.path().join("nope"), "does not exist");
    let junk = env.scratch("junk");
    fs::write(junk.join("hello.txt"), b"hi").unwrap();
    expect_rejected(&env, &junk, "is not an OCI image layout");

    // A tag that does not exist.
    let before = env.store_snapshot();
    let err = env.fails(&["image", "inspect", "no/such:tag"]);
    assert!(err.contains("image `no/such:tag` not found"), "{err}");
    let err = env.fails(&["run", "no/such:tag"]);
    assert!(err.contains("not found"), "{err}");
    assert_eq!(before, env.store_snapshot());
    // Staging is empty after all of that.
    assert_eq!(fs::read_dir(env.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn oci_layout_gzip_and_zstd_compress_the_same_content() {
    // The same tar in three encodings yields the same rootfs.
    let env = Env::new();
    let tar = layer(&[E::File("x/y", b"payload", 0o600)]);
    for (i, c) in [Comp::None, Comp::Gzip, Comp::Zstd].into_iter().enumerate() {
        let d = env.scratch(&format!("c{i}"));
        // A bare tag as ref name is combined with the layout's directory name (`c0:latest`).
        let md = oci_layout(&d, &[(tar.clone(), c)], "latest", &["/x/y"]);
        env.ok(&["image", "import", d.to_str().unwrap()]);
        // The store keeps the layer blob as imported (compressed, content-addressed).
        let (blob, _) = compress(&tar, c);
        let stored = env
            .root()
            .join("blobs/sha256")
            .join(sha(&blob).trim_start_matches("sha256:"));
        assert_eq!(fs::read(&stored).unwrap(), blob, "{}", stored.display());
        let r = rootfs_of(&env, &md.trim_start_matches("sha256:")[..12]);
        assert_eq!(fs::read(r.join("x/y")).unwrap(), b"payload");
        assert_eq!(rootfs_of(&env, &format!("c{i}:latest")), r);
    }
}

/// Differential test against umoci: build a multi-layer image with umoci (whiteouts included),
/// import it, and compare our unpacked tree with `umoci unpack`'s.
#[test]
fn matches_umoci_unpack() {
    if Command::new("umoci").arg("--version").output().is_err() {
        panic!("umoci is required for this test: apt-get install umoci (the README setup and .ci/run install it)");
    }
    let env = Env::new();
    let layout = env.dir.path().join("umoci-layout");
    let bundle = env.dir.path().join("bundle");
    let sh = |args: &[&str]| {
        let o = Command::new("umoci").args(args).output().unwrap();
        assert!(
            o.status.success(),
            "umoci {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    let l = layout.to_str().unwrap();
    let b = bundle.to_str().unwrap();
    sh(&["init", "--layout", l]);
    sh(&["new", "--image", &format!("{l}:v1")]);
    // Layer 1: a small tree.
    sh(&["unpack", "--image", &format!("{l}:v1"), b]);
    let r = bundle.join("rootfs");
    fs::create_dir_all(r.join("etc/conf.d")).unwrap();
    fs::create_dir_all(r.join("var/cache/app")).unwrap();
    fs::write(r.join("etc/conf.d/a"), b"a").unwrap();
    fs::write(r.join("etc/removed"), b"bye").unwrap();
    fs::write(r.join("var/cache/app/blob"), vec![7u8; 100_000]).unwrap();
    fs::write(r.join("exe"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(
        r.join("exe"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::os::unix::fs::symlink("conf.d/a", r.join("etc/alink")).unwrap();
    fs::hard_link(r.join("etc/conf.d/a"), r.join("etc/ahard")).unwrap();
    sh(&["repack", "--image", &format!("{l}:v1"), b]);
    // Layer 2: deletions (whiteouts), a replaced dir, a dir turned into a file.
    fs::remove_file(r.join("etc/removed")).unwrap();
    fs::remove_dir_all(r.join("var/cache/app")).unwrap();
    fs::write(r.join("var/cache/app"), b"now a file").unwrap();
    fs::write(r.join("etc/conf.d/b"), b"b").unwrap();
    sh(&["repack", "--image", &format!("{l}:v1"), b]);
    fs::remove_dir_all(&bundle).unwrap();

    env.ok(&["image", "import", l, "--tag", "umoci/test:v1"]);
    let ours = rootfs_of(&env, "umoci/test:v1");
    sh(&["unpack", "--image", &format!("{l}:v1"), b]);
    let theirs = bundle.join("rootfs");
    assert_eq!(describe_tree(&theirs), describe_tree(&ours));
    assert!(!ours.join("etc/removed").exists());
}

/// The host's static busybox as a fixture file (leaked: fixtures hold `'static` data).
fn busybox_bytes() -> &'static [u8] {
    Box::leak(
        fs::read("/bin/busybox")
            .expect("needs /bin/busybox (apt-get install busybox-static)")
            .into_boxed_slice(),
    )
}

/// A layer with busybox as /bin/sh, /bin/cat, /bin/stat.
fn busybox_layer() -> Vec<u8> {
    layer(&[
        E::Dir("bin/", 0o755),
        E::File("bin/busybox", busybox_bytes(), 0o755),
        E::Symlink("bin/sh", "busybox"),
        E::Symlink("bin/cat", "busybox"),
        E::Symlink("bin/stat", "busybox"),
    ])
}

/// Layer entries owned by non-root ids keep their owners in the unpacked rootfs (on the host),
/// and a container sees the image's ids (through the idmapped lower layer).
#[test]
fn layer_ownership_is_kept_and_seen_inside() {
    crate::require_root!();
    let env = Env::new();
    let src = env.scratch("owned");
    oci_layout(
        &src,
        &[
            (busybox_layer(), Comp::Gzip),
            (
                layer(&[
                    E::Dir("home/", 0o755),
                    E::Dir("home/app/", 0o750).owned(1000, 1000),
                    E::File("home/app/data", b"mine", 0o640).owned(1000, 1001),
                    E::Symlink("home/app/link", "data").owned(1002, 1003),
                    E::File("srv", b"nobody's", 0o644).owned(65534, 65534),
                    E::File("rootfile", b"root's", 0o644),
                ]),
                Comp::None,
            ),
        ],
        "owners:1",
        &["/bin/sh"],
    );
    env.ok(&["image", "import", src.to_str().unwrap()]);
    let rootfs = rootfs_of(&env, "owners:1");
    let owner = |p: &str| {
        let md = fs::symlink_metadata(rootfs.join(p)).unwrap();
        (md.uid(), md.gid())
    };
    assert_eq!(owner("home/app"), (1000, 1000));
    assert_eq!(owner("home/app/data"), (1000, 1001));
    assert_eq!(owner("home/app/link"), (1002, 1003));
    assert_eq!(owner("srv"), (65534, 65534));
    assert_eq!(owner("rootfile"), (0, 0));
    assert_eq!(owner("bin/busybox"), (0, 0));
    let o = env.run(&[
        "run",
        "--rm",
        "--mode",
        "container",
        "owners:1",
        "/bin/stat",
        "-c",
        "%u:%g %n",
        "/home/app",
        "/home/app/data",
        "/srv",
        "/rootfile",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "1000:1000 /home/app\n1000:1001 /home/app/data\n65534:65534 /srv\n0:0 /rootfile\n"
    );
}

/// An OCI layout whose layers are gzip and zstd, as an archive that is itself plain, gzip or
/// zstd compressed (the README: "OCI archive (tar of a layout, plain, gzip or zstd)"): each
/// imports into a fresh store with identical content, and runs.
#[test]
fn compressed_oci_archives_import_and_run() {
    crate::require_root!();
    let work = Env::new();
    let lay = work.scratch("layout");
    oci_layout(
        &lay,
        &[
            (busybox_layer(), Comp::Gzip),
            (
                layer(&[
                    E::Dir("data/", 0o755),
                    E::File("data/hello", b"from a zstd layer\n", 0o644),
                ]),
                Comp::Zstd,
            ),
        ],
        "packed/img:1",
        &["/bin/cat", "/data/hello"],
    );
    let plain = work.dir.path().join("img.tar");
    tar_dir(&lay, &plain);
    let tar_bytes = fs::read(&plain).unwrap();
    let mut trees = Vec::new();
    for (name, c) in [
        ("img.tar", Comp::None),
        ("img.tar.gz", Comp::Gzip),
        ("img.tar.zst", Comp::Zstd),
    ] {
        let archive = work.dir.path().join(name);
        fs::write(&archive, compress(&tar_bytes, c).0).unwrap();
        let env = Env::new();
        let out = env.ok(&["image", "import", archive.to_str().unwrap()]);
        assert!(out.ends_with(" packed/img:1\n"), "{name}: {out}");
        let rootfs = rootfs_of(&env, "packed/img:1");
        assert_eq!(
            fs::read(rootfs.join("data/hello")).unwrap(),
            b"from a zstd layer\n"
        );
        trees.push(describe_tree(&rootfs));
        let o = env.run(&["run", "--rm", "--mode", "container", "packed/img:1"]);
        assert!(
            o.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "from a zstd layer\n");
    }
    assert_eq!(trees[0], trees[1]);
    assert_eq!(trees[0], trees[2]);
}
