#!/usr/bin/env bash
# Two "nodes" on one machine as network namespaces (see README, "Several nodes on one machine"):
#   netns.sh up        node0 (10.77.0.1) and node1 (10.77.0.2), one veth pair between them
#   netns.sh cut       takes node1's end of the link down (MPI then hangs with no error)
#   netns.sh restore   brings it back up
#   netns.sh down      deletes both namespaces (and with them the link); safe to repeat
# Needs root and iproute2. mpirun runs inside node0 with --mca plm_rsh_agent cluster/test/netns-agent.sh.
set -euo pipefail
cmd=${1:?usage: netns.sh up|cut|restore|down}
case "$cmd" in
  up)
    "$0" down
    ip netns add node0
    ip netns add node1
    ip link add veth0 type veth peer name veth1
    ip link set veth0 netns node0
    ip link set veth1 netns node1
    ip -n node0 addr add 10.77.0.1/24 dev veth0
    ip -n node1 addr add 10.77.0.2/24 dev veth1
    for n in node0 node1; do ip -n "$n" link set lo up; done
    ip -n node0 link set veth0 up
    ip -n node1 link set veth1 up
    ;;
  cut) ip -n node1 link set veth1 down ;;
  restore) ip -n node1 link set veth1 up ;;
  down)
    for n in node0 node1; do ip netns del "$n" 2>/dev/null || true; done
    ;;
  *) echo "netns.sh: unknown command '$cmd' (expected up, cut, restore or down)" >&2; exit 2 ;;
esac
