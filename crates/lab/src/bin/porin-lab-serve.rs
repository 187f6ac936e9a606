//! The lab's pod-server process: `porin-lab-serve --netns <ns> --ports 80/tcp,53/udp ...`.
//! The `porin` CLI offers the same as `porin lab-serve`; this binary serves the crate's tests and
//! standalone use.
#![forbid(unsafe_code)]

fn main() {
    if let Err(e) = porin_lab::serve_main(std::env::args().skip(1)) {
        eprintln!("porin-lab-serve: {e}");
        std::process::exit(1);
    }
}
