#!/usr/bin/env bash
# Make sure a Docker engine answers; start one if this machine has it installed
# but not running (a fresh CI machine may not have started it).
set -euo pipefail
if docker info >/dev/null 2>&1; then exit 0; fi
if ! command -v dockerd >/dev/null; then
  echo "lab: Docker is needed for the lab tests and is not installed" >&2
  exit 1
fi
echo "lab: starting dockerd" >&2
(dockerd >/var/log/gantry-dockerd.log 2>&1 &)
for _ in $(seq 1 60); do
  docker info >/dev/null 2>&1 && exit 0
  sleep 1
done
echo "lab: dockerd did not start; see /var/log/gantry-dockerd.log" >&2
exit 1
