#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, eBPF builds, lints, tests.
# Needs root (the eBPF and netns tests attach XDP programs inside namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

step "setup (idempotent)"
bash scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check

if [ -x scripts/build-ebpf.sh ]; then
  step "eBPF programs for bpfel-unknown-none (proves the no_std core builds for BPF)"
  bash scripts/build-ebpf.sh
fi

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked "$@"
