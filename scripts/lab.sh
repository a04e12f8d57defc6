#!/usr/bin/env bash
# The main job: the netns lab. A real mfplane cluster in network namespaces (an inside
# client, an outside server, a router running the XDP load balancer, three NAT workers
# on a fabric bridge), long-lived TCP connections streaming verifiable bytes both ways
# through the NAT, and a failover drill: the worker that owns the most connections is
# killed (SIGKILL and link down) while they run. A second drill kills the Raft leader;
# a third adds a worker during traffic. Each prints connections survived, stalls, bytes verified and the external
# endpoints before and after, and removes everything it created. Needs root.
#
# Extra arguments go to both drills, e.g. `scripts/lab.sh --connections 50`.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "==> building mfplane-node, mfpctl and mfplane-lb"
cargo build --locked -p mfplane-node -p mfplane-lb --bins

status=0
echo "==> drill 1: crash of the busiest worker"
target/debug/mfpctl lab drill "$@" || status=1
echo "==> drill 2: crash of the Raft leader"
target/debug/mfpctl lab drill --crash-leader "$@" || status=1
echo "==> drill 3: scale-out during traffic"
target/debug/mfpctl lab drill --scale-out "$@" || status=1
exit "$status"
