//! Chooses what the web console embeds: `web/dist` (built by `npm run build` in `web/`) when it exists, else a
//! placeholder page saying how to build it, so a plain `cargo build` works without Node.

use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let web = manifest.join("../../web");
    let dist = web.join("dist");
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed={}", dist.display());
        println!("cargo:rustc-env=PORIN_UI_DIR={}", dist.canonicalize().expect("web/dist").display());
        return;
    }
    // Rebuild when web/dist appears (scans web/ only while dist is absent).
    println!("cargo:rerun-if-changed={}", web.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("ui-placeholder");
    std::fs::create_dir_all(&out).expect("creating the placeholder console");
    std::fs::write(
        out.join("index.html"),
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Porin console (not built)</title></head>\
         <body><h1>The Porin console was not built into this binary</h1>\
         <p>Build it with <code>cd web &amp;&amp; npm ci &amp;&amp; npm run build</code>, then rebuild <code>porin</code> \
         (<code>./scripts/setup.sh</code> does both).</p></body></html>\n",
    )
    .expect("writing the placeholder console");
    std::fs::write(out.join("placeholder.txt"), "placeholder\n").expect("writing the placeholder marker");
    println!("cargo:rustc-env=PORIN_UI_DIR={}", out.display());
}
