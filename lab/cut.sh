#!/usr/bin/env bash
# Cut one lab host off the network, or heal it:
#   lab/cut.sh NAME HOST        # disconnect
#   lab/cut.sh NAME HOST heal   # reconnect with the same address
set -euo pipefail
name=$1 host=$2 action=${3:-cut}
c="gantry-lab-$name-$host"
if [ "$action" = heal ]; then
  ip=$(docker inspect -f '{{index .Config.Labels "gantry-lab-ip"}}' "$c")
  docker network connect --ip "$ip" "gantry-lab-$name" "$c"
else
  docker network disconnect "gantry-lab-$name" "$c"
fi
