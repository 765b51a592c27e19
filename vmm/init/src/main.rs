//! Guest init for vcompare microVMs (filled in by the VM-mode work).
fn main() {
    eprintln!("vcompare-init: not implemented yet");
    std::process::exit(1);
}
