#!/usr/bin/env bash
# The whole test suite, as CI runs it: setup, formatting, eBPF builds, lints, tests.
# Needs root (the eBPF and netns tests attach XDP programs inside namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*" >&2; }

# One build from scratch: incremental caches would only double the target dir on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# The build needs a few GB; a full disk otherwise shows up as a compiler error deep in
# the log, so say it first.
target_dir="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target_dir"
free_kb="$(df -Pk "$target_dir" | awk 'NR==2 {print $4}')"
if [ "${free_kb:-0}" -lt $((4 * 1024 * 1024)) ]; then
  printf 'warning: only %s MB free for %s; a clean build and test run needs about 3 GB\n' \
    "$((free_kb / 1024))" "$target_dir" >&2
fi

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
