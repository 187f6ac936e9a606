//! The `porin-cni` executable: reads the configuration on stdin, the `CNI_*` environment, prints the
//! result or the error object on stdout.

use std::io::{Read, Write};

fn main() {
    let mut stdin = Vec::new();
    let _ = std::io::stdin().take(16 << 20).read_to_end(&mut stdin);
    let (code, out) = porin_cni::main_with(&|k| std::env::var(k).ok(), &stdin);
    if let Some(v) = out {
        let mut o = std::io::stdout().lock();
        let _ = writeln!(o, "{v}");
        let _ = o.flush();
    }
    std::process::exit(code);
}
