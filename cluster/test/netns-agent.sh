#!/usr/bin/env bash
# Open MPI's plm_rsh_agent for namespaces: called as `netns-agent.sh [ssh options] HOST command…`,
# runs the command inside network namespace HOST (no ssh; the namespaces share this machine).
while [ $# -gt 0 ]; do
  case "$1" in
    -x|-T|-t|-n|-q|-a|-A|-4|-6) shift ;;
    -o|-p|-l|-i|-F) shift 2 ;;
    -*) shift ;;
    *) break ;;
  esac
done
host=${1:?netns-agent.sh: no host}
shift
exec ip netns exec "$host" /bin/sh -c "$*"
