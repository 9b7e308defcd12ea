#!/usr/bin/env bash
# Cut one lab host off the network, or heal it:
#   lab/cut.sh NAME HOST        # disconnect
#   lab/cut.sh NAME HOST heal   # reconnect, same address
# The host's own interface goes down (its network namespace only; the
# container has NET_ADMIN): packets to it are dropped silently, as with a
# pulled cable, and Docker's networks are not touched.
set -euo pipefail
name=$1 host=$2 action=${3:-cut}
c="gantry-lab-$name-$host"
# The default route goes with the link; it is kept aside and put back.
if [ "$action" = heal ]; then
  timeout 30 docker exec "$c" sh -c 'ip link set eth0 up &&
    if [ -s /run/gantry-lab-cut-route ]; then ip route replace $(cat /run/gantry-lab-cut-route); fi'
else
  timeout 30 docker exec "$c" sh -c 'ip route show default > /run/gantry-lab-cut-route; ip link set eth0 down'
fi
