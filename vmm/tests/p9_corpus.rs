//! Replays the 9P fuzz corpora (`vmm/fuzz/corpus/p9_wire`, `vmm/fuzz/corpus/p9_server`) and
//! the generated seed inputs through the fuzz targets' own checks, on stable Rust: a panic,
//! a malformed reply or a change outside the share fails the test.
//!
//! To (re)write the seed inputs into the corpus directories before fuzzing:
//! `cargo test -p vcompare-vmm --test p9_corpus -- --ignored write_seed_corpus`.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::fs;
use std::path::PathBuf;

/// The corpus directory of fuzz target `target`.
fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// Every file of a corpus, by name, in a stable order; the corpus must not be empty.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let p = e.expect("list the corpus").path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::read(&p).expect("read a corpus file"))
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
}

#[test]
fn wire_corpus_decodes_without_panic() {
    for (name, data) in corpus("p9_wire") {
        eprintln!("p9_wire/{name}");
        harness::fuzz_wire(&data);
    }
    for data in harness::wire_seeds() {
        harness::fuzz_wire(&data);
    }
}

#[test]
fn server_corpus_stays_inside_the_share() {
    let mut sandbox = harness::Sandbox::new();
    for (name, data) in corpus("p9_server") {
        eprintln!("p9_server/{name}");
        harness::fuzz_server(&mut sandbox, &data);
    }
}

#[test]
fn server_seeds_stay_inside_the_share() {
    let mut sandbox = harness::Sandbox::new();
    for (name, msgs) in harness::server_seeds() {
        eprintln!("seed {name}");
        harness::fuzz_server(&mut sandbox, &msgs.concat());
    }
}

/// Writes the seed inputs as `seed-*` files into both corpus directories.
#[test]
#[ignore = "writes into the source tree; run by hand before fuzzing"]
fn write_seed_corpus() {
    let (wire, server) = (corpus_dir("p9_wire"), corpus_dir("p9_server"));
    fs::create_dir_all(&wire).unwrap();
    fs::create_dir_all(&server).unwrap();
    for (i, data) in harness::wire_seeds().into_iter().enumerate() {
        fs::write(wire.join(format!("seed-{i:03}")), data).unwrap();
    }
    for (name, msgs) in harness::server_seeds() {
        fs::write(server.join(format!("seed-{name}")), msgs.concat()).unwrap();
    }
}
