//! Builds the LB's eBPF program (`lb/ebpf`) with the nightly toolchain and places the
//! object in `OUT_DIR/mfplane-lb.bpf.o`, where `src/object.rs` embeds it.
//!
//! Same recipe as `scripts/build-ebpf.sh` (and the same target directory,
//! `lb/ebpf/target`, so the two share one build). Needs what `scripts/setup.sh`
//! installs: nightly with rust-src and bpf-linker. `MFPLANE_SKIP_EBPF_BUILD=1` embeds an
//! empty object instead (for machines without that toolchain); the agent and the BPF
//! tests then fail with a message that says so.
use std::env;
use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

const SKIP: &str = "MFPLANE_SKIP_EBPF_BUILD";

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?).join("mfplane-lb.bpf.o");
    let ebpf = manifest.join("ebpf");
    for p in [
        "ebpf/src",
        "ebpf/Cargo.toml",
        "ebpf/Cargo.lock",
        "ebpf/.cargo/config.toml",
        "../dataplane/core/src",
        "../dataplane/core/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    println!("cargo:rerun-if-env-changed={SKIP}");
    if env::var(SKIP).is_ok_and(|v| v == "1") {
        println!("cargo:warning={SKIP}=1: embedding an empty eBPF object; the agent will not run");
        fs::write(&out, [])?;
        return Ok(());
    }
    let probe = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .context("running rustup: install Rust with rustup, then run scripts/setup.sh")?;
    if !probe.status.success() {
        bail!(
            "no nightly toolchain: run scripts/setup.sh (or set {SKIP}=1 to build without the eBPF program)"
        );
    }
    let mut cmd = Command::new("rustup");
    cmd.args([
        "run",
        "nightly",
        "cargo",
        "build",
        "-Z",
        "build-std=core",
        "--target",
        "bpfel-unknown-none",
        "--release",
    ])
    .current_dir(&ebpf);
    // The host build's settings must not leak into the BPF build.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let leaks = key.starts_with("CARGO_")
            || key.starts_with("RUSTC")
            || matches!(key, "RUSTFLAGS" | "RUSTUP_TOOLCHAIN" | "RUSTDOC");
        if leaks && key != "CARGO_HOME" {
            cmd.env_remove(key);
        }
    }
    // Our stdout is read by cargo as build directives: send the child's there to stderr.
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .with_context(|| format!("spawning {cmd:?}"))?;
    if !status.success() {
        bail!(
            "building the LB eBPF program in {} failed ({status}); run scripts/setup.sh \
             (nightly rust-src and bpf-linker), or set {SKIP}=1 to build without it",
            ebpf.display()
        );
    }
    let obj = ebpf.join("target/bpfel-unknown-none/release/mfplane-lb");
    fs::copy(&obj, &out)
        .with_context(|| format!("copying {} to {}", obj.display(), out.display()))?;
    Ok(())
}
