#!/usr/bin/env bash
# Benchmark of the bundle's transfer (`upload` module): N light lab hosts
# (sshd as PID 1, own address and filesystem), an artifact set of SIZE_MB
# of random bytes in FILES files, and the controller's link to the lab
# limited by `tc` (tbf on the lab network's bridge device, which carries
# controller->host traffic only; host-to-host frames are bridged past it).
# Reported side by side in one run:
#   once     the set sent to one host: the time the limited link needs
#   direct   the set sent to every host straight from the controller
#   rerun    everything in place: payload bytes sent and time
# with the controller's peak RSS (it must not grow with the artifacts) and
# the bytes that crossed the limited link (the bridge's tx counter).
#
#   N=20 bench/upload.sh                 # 200 MB, 100 Mbit/s
#   N=20 SIZE_MB=50 RATE=1gbit bench/upload.sh
#   N=50 SKIP_DIRECT=1 bench/upload.sh   # direct alone takes N times `once`
#   GANTRY=/other/gantry N=20 bench/upload.sh   # another build, for A/B
#
# Not a test: it takes minutes (direct needs N times `once`), and the
# numbers belong in notes and the README, as ratios from one run.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
SIZE_MB=${SIZE_MB:-200}
FILES=${FILES:-4}
RATE=${RATE:-100mbit}
net=${BENCH_NET:-201}
name=bench-upload
state=$PWD/bench/.state-upload
lab/ensure-docker.sh
image=$(lab/build-image.sh)
. bench/hosts.sh
cargo build --release --quiet
gantry=${GANTRY:-$PWD/target/release/gantry}

addr() { echo "172.29.$net.$((10 + $1))"; }
cleanup() {
  ids=$(docker ps -aq --filter "label=gantry-bench=$name")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  docker network rm "gantry-$name" >/dev/null 2>&1 || true
}
trap cleanup EXIT

up() {
  cleanup
  rm -rf "$state/hosts" && mkdir -p "$state/hosts" "$state/set"
  [ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$state/id_ed25519"
  cp "$state/id_ed25519.pub" "$state/hosts/authorized_keys"
  docker network create --subnet "172.29.$net.0/24" "gantry-$name" >/dev/null
  for i in $(seq 1 "$N"); do
    docker run -d --name "gantry-$name-node$i" --hostname "node$i" --network "gantry-$name" --ip "$(addr "$i")" \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined -e LAB_INIT=sshd \
      -v "$state/hosts:/lab:ro" --label gantry-bench=$name "$image" >/dev/null
  done
  wait_for_sshd
  scan_host_keys "$state/known_hosts"
  {
    echo "cluster: { name: bench, networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12 } }"
    echo "ssh: { user: root, identity_file: $state/id_ed25519, known_hosts: $state/known_hosts }"
    echo "hosts:"
    for i in $(seq 1 "$N"); do echo "  - { name: node$i, address: $(addr "$i"), roles: [control-plane] }"; done
  } >"$state/inventory.yaml"
  # The artifact set, and a playbook that uploads each file.
  mkdir -p "$state/pb/playbooks" "$state/pb/roles/bundle"
  echo "- { name: bundle, hosts: all, roles: [bundle] }" >"$state/pb/playbooks/bundle.yaml"
  : >"$state/pb/roles/bundle/tasks.yaml"
  for f in $(seq 1 "$FILES"); do
    p=$state/set/artifact$f.bin
    [ "$(stat -c %s "$p" 2>/dev/null || echo 0)" = $((SIZE_MB * 1024 * 1024 / FILES)) ] ||
      head -c $((SIZE_MB * 1024 * 1024 / FILES)) /dev/urandom >"$p"
    printf -- '- name: artifact%s\n  upload: { src: %s, dest: /var/lib/gantry/bundle/artifact%s.bin, sha256: %s }\n' \
      "$f" "$p" "$f" "$(sha256sum <"$p" | cut -c1-64)" >>"$state/pb/roles/bundle/tasks.yaml"
  done
  net_id=$(docker network inspect -f '{{.Id}}' "gantry-$name")
  bridge=br-${net_id:0:12}
  tc qdisc replace dev "$bridge" root tbf rate "$RATE" burst 256k latency 400ms
  sleep "${SETTLE:-10}"
}

tx() { cat "/sys/class/net/$bridge/statistics/tx_bytes"; }

# measure LABEL ARGS...: wall time, controller peak RSS, bytes over the
# limited link.
measure() {
  local label=$1; shift
  local before rc=0
  before=$(tx)
  /usr/bin/time -f "%e %M" -o "$state/time" "$gantry" apply --skip-preflight -p "$state/pb/playbooks/bundle.yaml" \
    -i "$state/inventory.yaml" --forks "$N" "$@" >"$state/$label.log" 2>&1 || rc=$?
  read -r wall rss < <(tail -1 "$state/time")
  local mb=$(( ($(tx) - before) / 1048576 ))
  printf '%-8s wall %8.2f s   peak RSS %7d KiB   over the link %6d MiB   exit %d\n' "$label" "$wall" "$rss" "$mb" "$rc"
  echo "$wall" >"$state/$label.wall"
  [ "$rc" = 0 ] || { tail -20 "$state/$label.log" >&2; exit 1; }
}

up
echo "N = $N hosts, $SIZE_MB MB in $FILES files, controller link $RATE, $(nproc) cores, $(date -u +%FT%TZ)"
measure once --limit node1
if [ "${SKIP_DIRECT:-0}" = 1 ]; then
  echo "direct   skipped (SKIP_DIRECT=1)"
  echo 0 >"$state/direct.wall"
else
  measure direct --no-fan-out
fi
# The fan-out from scratch: no host holds the set, so each file must
# leave the controller at least once.
for i in $(seq 1 "$N"); do docker exec "gantry-$name-node$i" sh -c 'rm -rf /var/lib/gantry/bundle' & done; wait
measure fanout
measure rerun
awk -v n="$N" -v once="$(cat "$state/once.wall")" -v direct="$(cat "$state/direct.wall")" -v fan="$(cat "$state/fanout.wall")" -v rerun="$(cat "$state/rerun.wall")" \
  'BEGIN { printf "direct (to the %d hosts that lacked the set)/once %.1fx; fan-out (to all %d)/once %.2fx; rerun %.2f s\n", n - 1, direct / once, n, fan / once, rerun }'
