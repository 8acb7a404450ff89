#!/bin/sh
# SPDX-License-Identifier: MIT
# mpirun's "rsh agent" for two_hosts.sh: instead of ssh-ing to HOST, runs the command inside the network namespace
# that MINIBERT_NETNS_MAP maps HOST to ("10.213.0.2=ns-b ..."), under its own hostname (a UTS namespace), so that
# OpenMPI's daemon there counts as another node. Usage (by mpirun): netns_rsh.sh [ssh options] HOST COMMAND...
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do shift; done # ssh options mpirun may pass
host=$1
shift
ns=
for pair in $MINIBERT_NETNS_MAP; do
  [ "${pair%%=*}" = "$host" ] && ns=${pair#*=}
done
[ -n "$ns" ] || { echo "netns_rsh.sh: no namespace for host $host in MINIBERT_NETNS_MAP='$MINIBERT_NETNS_MAP'" >&2; exit 1; }
exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $ns && $*"
