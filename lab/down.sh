#!/usr/bin/env bash
# Remove a lab's hosts and network: lab/down.sh [NAME] (default: demo).
# Each docker command is bounded: a stuck daemon fails this script (exit 1,
# saying so) instead of hanging whoever called it.
set -uo pipefail
name=${1:-demo}
rc=0
ids=$(timeout 60 docker ps -aq --filter "label=gantry-lab=$name") || {
  echo "lab/down.sh: docker ps did not answer within 60 s" >&2; exit 1; }
if [ -n "$ids" ]; then
  timeout 120 docker rm -f $ids >/dev/null ||
    { echo "lab/down.sh: docker rm -f of lab $name failed or took over 120 s" >&2; rc=1; }
fi
if timeout 60 docker network inspect "gantry-lab-$name" >/dev/null 2>&1; then
  timeout 60 docker network rm "gantry-lab-$name" >/dev/null ||
    { echo "lab/down.sh: docker network rm gantry-lab-$name failed" >&2; rc=1; }
fi
exit $rc
