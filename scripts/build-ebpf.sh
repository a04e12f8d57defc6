#!/usr/bin/env bash
# Builds every eBPF crate of mfplane (dataplane/ebpf, lb/ebpf when present) for
# bpfel-unknown-none with the recipe in TOOLCHAIN.md, and fails loudly if anything is
# missing. Run scripts/setup.sh first (nightly rust-src and bpf-linker).
#
# Objects land in <crate>/target/bpfel-unknown-none/release/<bin name>; the paths are
# printed at the end. Usage: scripts/build-ebpf.sh [crate-dir ...]
set -euo pipefail

log() { printf '[build-ebpf] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

command -v rustup >/dev/null || die "rustup not found: install Rust, then run scripts/setup.sh"
rustup toolchain list | grep -q '^nightly' \
  || die "no nightly toolchain: run scripts/setup.sh"
rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^rust-src' \
  || die "nightly has no rust-src (needed by -Z build-std): run scripts/setup.sh"
command -v bpf-linker >/dev/null \
  || die "bpf-linker not on PATH: run scripts/setup.sh (it builds one against nightly's LLVM)"
NIGHTLY_LIB="$(rustc +nightly --print sysroot)/lib"
LD_LIBRARY_PATH="$NIGHTLY_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" bpf-linker --version >/dev/null 2>&1 \
  || die "bpf-linker does not run against $NIGHTLY_LIB: rerun scripts/setup.sh"

if [ "$#" -gt 0 ]; then
  crates=("$@")
else
  crates=()
  for c in dataplane/ebpf lb/ebpf; do
    [ -f "$root/$c/Cargo.toml" ] && crates+=("$c")
  done
fi
[ "${#crates[@]}" -gt 0 ] || die "no eBPF crates found"

# The host workspace's target dir and flags must not leak into the BPF build: each
# crate keeps its own target/ so the object paths are fixed.
unset CARGO_TARGET_DIR RUSTFLAGS CARGO_BUILD_RUSTFLAGS CARGO_ENCODED_RUSTFLAGS

built=()
for c in "${crates[@]}"; do
  dir="$root/$c"
  [ -f "$dir/Cargo.toml" ] || die "$c has no Cargo.toml"
  log "building $c"
  (cd "$dir" && cargo +nightly build -Z build-std=core --target bpfel-unknown-none --release) \
    || die "build of $c failed (see the compiler output above)"
  # The objects are the crate's binaries: its [[bin]] names, or the package name.
  bins="$(awk '/^\[\[bin\]\]/{b=1; next} /^\[/{b=0} b && /^name *=/{gsub(/.*= *"|".*/, ""); print}' "$dir/Cargo.toml")"
  [ -n "$bins" ] || bins="$(awk '/^\[package\]/{p=1; next} /^\[/{p=0} p && /^name *=/{gsub(/.*= *"|".*/, ""); print; exit}' "$dir/Cargo.toml")"
  for bin in $bins; do
    obj="$dir/target/bpfel-unknown-none/release/$bin"
    [ -f "$obj" ] || die "$c built, but $obj is missing"
    built+=("$obj")
  done
done
for o in "${built[@]}"; do
  log "ok: $o"
done
