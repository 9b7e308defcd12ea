#!/usr/bin/env bash
# Memory of planning at fleet size: `gantry graph` on a generated inventory
# of N hosts (default 5000: 3 control planes behind a VIP, the rest workers)
# with playbook P (default cluster). Prints the DAG's node count and the
# peak RSS. Offline: no host is contacted.
#   N=5000 bench/graph.sh
#   N=10000 P=node-prep bench/graph.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
P=${P:-cluster}
GANTRY=${GANTRY:-target/release/gantry}
[ -x "$GANTRY" ] || cargo build --release --locked --quiet
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
inv=$dir/inventory.yaml
{
  echo "cluster:"
  echo "  name: big"
  echo "  control_plane_endpoint: { vip: 172.31.255.250, port: 6553 }"
  echo "  networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12, host_cidr: 172.16.0.0/12 }"
  echo "hosts:"
  for i in $(seq 1 "$N"); do
    a=$((i / 250)); b=$((i % 250 + 1))
    if [ "$i" -le 3 ]; then r=control-plane; else r=worker; fi
    echo "  - { name: h$i, address: 172.16.$a.$b, roles: [$r] }"
  done
} >"$inv"
nodes=$("$GANTRY" graph -i "$inv" -p "$P" | grep -c '\[label=')
rss=$( { /usr/bin/time -f %M "$GANTRY" graph -i "$inv" -p "$P" >/dev/null; } 2>&1 | tail -n 1)
echo "hosts=$N playbook=$P nodes=$nodes peak_rss=$((rss / 1024)) MB ($((rss * 1024 / nodes)) bytes a node)"
