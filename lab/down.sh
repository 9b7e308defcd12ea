#!/usr/bin/env bash
# Remove a lab's hosts and network: lab/down.sh [NAME] (default: demo).
set -uo pipefail
name=${1:-demo}
ids=$(docker ps -aq --filter "label=gantry-lab=$name")
[ -n "$ids" ] && docker rm -f $ids >/dev/null
docker network rm "gantry-lab-$name" >/dev/null 2>&1
exit 0
