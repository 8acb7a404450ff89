#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Two hosts on one machine: network namespaces A and B joined by a veth pair (10.213.0.1 and 10.213.0.2). mpirun runs
# in A and starts rank 1's daemon in B through netns_rsh.sh; MPI's messages go over TCP through the veth pair (btl
# tcp,self, on that subnet only), so they cross a real network stack. Runs `mpirun -np 2 PROGRAM ARGS...` there and
# checks that the training's bytes did cross the link. Prints [minibert-skip] where namespaces cannot be made.
# Usage: two_hosts.sh PROGRAM [ARGS...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=$$
nsA=mb-a-$tag
nsB=mb-b-$tag
cleanup() {
  ip netns del "$nsA" 2>/dev/null || true
  ip netns del "$nsB" 2>/dev/null || true
}
trap cleanup EXIT
if ! ip netns add "$nsA" 2>/dev/null; then
  echo "[minibert-skip] cannot create network namespaces here (needs root or CAP_NET_ADMIN and iproute2)"
  exit 0
fi
ip netns add "$nsB"
ip link add vA netns "$nsA" type veth peer name vB netns "$nsB"
ip -n "$nsA" addr add 10.213.0.1/24 dev vA
ip -n "$nsB" addr add 10.213.0.2/24 dev vB
for ns in "$nsA" "$nsB"; do
  ip -n "$ns" link set lo up
done
ip -n "$nsA" link set vA up
ip -n "$nsB" link set vB up

tx_bytes() { ip netns exec "$nsA" cat /sys/class/net/vA/statistics/tx_bytes; }
before=$(tx_bytes)
export MINIBERT_NETNS_MAP="10.213.0.2=$nsB"
ip netns exec "$nsA" env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 \
  mpirun -np 2 --host 10.213.0.1:1,10.213.0.2:1 --bind-to none \
  --mca plm_rsh_agent "$here/netns_rsh.sh" --mca btl tcp,self \
  --mca btl_tcp_if_include 10.213.0.0/24 --mca oob_tcp_if_include 10.213.0.0/24 \
  -x OMP_NUM_THREADS -x MINIBERT_NETNS_MAP "$@"
sent=$(( $(tx_bytes) - before ))
echo "two_hosts.sh: $sent bytes left host A through the veth pair"
if [ "$sent" -lt 1000000 ]; then
  echo "two_hosts.sh: FAILED: under 1 MB crossed the link; the ranks did not talk over the network" >&2
  exit 1
fi
