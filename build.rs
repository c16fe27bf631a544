//! Build script: records the target triple for the version banner.

fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=DISTCC_RS_TARGET={target}");
    println!("cargo:rerun-if-changed=build.rs");
}
