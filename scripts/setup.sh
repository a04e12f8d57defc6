#!/usr/bin/env bash
# Installs everything mfplane needs to build, test and run its lab on a fresh Debian
# machine: system packages, the nightly rust-src for eBPF, and a bpf-linker built
# against the nightly toolchain's own LLVM. Idempotent: every step checks first, so a
# second run takes a second or two.
set -euo pipefail

log() { printf '[setup] %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "needs root for apt-get (run as root or with sudo)"
    exit 1
  fi
}

# --- System packages ---------------------------------------------------------------
# iproute2: namespaces, veth, bridges; ethtool: offload toggles on lab veths;
# nftables: the masquerade baseline the lab benchmark compares against.
APT_PACKAGES=(iproute2 ethtool nftables iputils-ping)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  need_root
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Rust toolchains ----------------------------------------------------------------
command -v rustup >/dev/null || { log "rustup not found: install Rust first"; exit 1; }
rustup component list --installed --toolchain stable 2>/dev/null | grep -q '^clippy' \
  || rustup component add clippy rustfmt --toolchain stable
if ! rustup toolchain list | grep -q '^nightly'; then
  log "installing the nightly toolchain (eBPF programs need -Z build-std)"
  rustup toolchain install nightly --profile minimal
fi
rustup component list --installed --toolchain nightly 2>/dev/null | grep -q '^rust-src' \
  || { log "adding rust-src to nightly"; rustup component add rust-src --toolchain nightly; }

# --- bpf-linker ---------------------------------------------------------------------
# The default `cargo install bpf-linker` wants a system libLLVM; we link it against the
# LLVM that ships inside the nightly toolchain instead (see ../shared/TOOLCHAIN.md).
NIGHTLY_LIB="$(rustc +nightly --print sysroot)/lib"
bpf_linker_ok() {
  command -v bpf-linker >/dev/null && LD_LIBRARY_PATH="$NIGHTLY_LIB" bpf-linker --version >/dev/null 2>&1
}
if ! bpf_linker_ok; then
  log "building bpf-linker against the nightly LLVM (about 2 minutes)"
  llvm_so="$(ls "$NIGHTLY_LIB"/libLLVM.so.*-nightly 2>/dev/null | head -n1)"
  [ -n "$llvm_so" ] || { log "no libLLVM in $NIGHTLY_LIB"; exit 1; }
  llvm_major="$(basename "$llvm_so" | sed -E 's/libLLVM\.so\.([0-9]+).*/\1/')"
  prefix="$(mktemp -d)"
  mkdir -p "$prefix/lib"
  ln -s "$llvm_so" "$prefix/lib/libLLVM.so"
  LLVM_PREFIX="$prefix" cargo install --locked bpf-linker --no-default-features \
    --features "llvm-$llvm_major" >&2
  rm -rf "$prefix"
  bpf_linker_ok || { log "bpf-linker installed but does not run"; exit 1; }
fi
log "ok"
