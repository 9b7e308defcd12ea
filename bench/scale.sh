#!/usr/bin/env bash
# Scale run: the benchmark's workload on N hosts (default 1,000), cold then
# no-op, reporting wall time, the controller's CPU, peak RSS, peak open fds
# and failures.
#
# A host here is an sshd on its own loopback address (127.1.x.y) with its
# own mount and UTS namespaces: a private /etc (an overlay on a shared copy),
# a private /run (so each has its own gantry lock) and its own hostname. They
# share one network namespace, so the net.* sysctls and the nftables table
# of the workload are shared by all hosts (written identically by each).
# Everything runs inside one lab container (controller included), so nothing
# touches this machine's own network or kernel settings. The hosts run from a
# copy of the lab image's files on this machine's disk (bind-mounted, then
# chroot): docker's fuse-overlayfs root ran out of open files with 1,000 sshds.
#
#   N=1000 bench/scale.sh
#   N=1000 FORKS=100 bench/scale.sh
#   N=200 BASTION=1 bench/scale.sh   # N hosts reached directly and N others
#                                    # through one bastion (one more sshd that
#                                    # forwards), side by side: cold, then
#                                    # REPS no-op runs of each in turn
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-1000}
FORKS=${FORKS:-50}
BASTION=${BASTION:-0}
REPS=${REPS:-3}
# With a bastion: hosts 1..N are reached directly, N+1..2N through it.
hosts=$N
[ "$BASTION" = 1 ] && hosts=$((2 * N))
name=gantry-scale
lab/ensure-docker.sh
image=$(lab/build-image.sh)
cargo build --release --locked --quiet
docker rm -f "$name" >/dev/null 2>&1 || true
trap 'docker rm -f "$name" >/dev/null 2>&1 || true' EXIT
root=/var/tmp/gantry-scale-root.${image#*:}
if [ ! -x "$root/usr/sbin/sshd" ]; then
  rm -rf "$root" && mkdir -p "$root"
  cid=$(docker create "$image")
  docker export "$cid" | tar -x -C "$root"
  docker rm "$cid" >/dev/null
fi
rm -rf "$root/bench" "$root/scale" && mkdir -p "$root/bench" "$root/scale"
cp target/release/gantry /usr/bin/time "$root/bench/"
cp -r bench/workload "$root/bench/workload"
docker run -d --name "$name" --hostname controller --label gantry-bench=scale -v "$root:/sroot" \
  --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined --entrypoint sleep "$image" infinity >/dev/null
docker exec "$name" sh -c 'mount -t proc proc /sroot/proc && mount --rbind /dev /sroot/dev && mount -t tmpfs -o size=4g tmpfs /sroot/scale && mount -t tmpfs tmpfs /sroot/run && mount -t tmpfs tmpfs /sroot/tmp'

addr() { echo "127.1.$(($1 / 250)).$(($1 % 250 + 1))"; }
export -f addr

echo "scale: starting $hosts sshd hosts" >&2
docker exec -e N="$hosts" -e BASTION="$BASTION" "$name" chroot /sroot bash -c '
set -e
mkdir -p /root/.ssh /run/sshd
ssh-keygen -A >/dev/null
cp -a /etc /scale/base-etc
ssh-keygen -q -t ed25519 -N "" -f /bench/id_ed25519
cp /bench/id_ed25519.pub /root/.ssh/authorized_keys
key=$(cut -d" " -f1,2 /etc/ssh/ssh_host_ed25519_key.pub)
: > /bench/known_hosts
'"$(declare -f addr)"'
for i in $(seq 1 "$N"); do
  a=$(addr "$i")
  echo "$a $key" >> /bench/known_hosts
  mkdir -p /scale/h$i/u /scale/h$i/w
  unshare --mount --uts --propagation private -- sh -c "
    mount -t overlay overlay -o lowerdir=/scale/base-etc,upperdir=/scale/h$i/u,workdir=/scale/h$i/w /etc &&
    mount -t tmpfs tmpfs /run && mkdir -p /run/sshd && hostname debian &&
    exec /usr/sbin/sshd -D -e -o ListenAddress=$a -o PidFile=none" >/scale/h$i.log 2>&1 &
done
# The bastion: one more sshd, on an address of its own, that forwards.
if [ "$BASTION" = 1 ]; then
  echo "127.2.0.1 $key" >> /bench/known_hosts
  /usr/sbin/sshd -D -e -o ListenAddress=127.2.0.1 -o PidFile=none -o AllowTcpForwarding=yes >/scale/bastion.log 2>&1 &
fi
for i in $(seq 1 "$N"); do
  a=$(addr "$i")
  for t in $(seq 1 200); do (exec 3<>/dev/tcp/$a/22) 2>/dev/null && break; sleep 0.1; done
  [ "$t" -lt 200 ] || { echo "scale: host $i ($a) never listened: $(cat /scale/h$i.log)" >&2; exit 1; }
done
'
# inventory FILE FIRST [BASTION]: hosts FIRST..FIRST+N-1, reached through
# the bastion when one is named.
inventory() {
  docker exec -e N="$N" -e FIRST="$2" -e JUMP="${3:-}" "$name" chroot /sroot bash -c "
$(declare -f addr)
{
  echo 'cluster: { name: scale, networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12, host_cidr: 127.0.0.0/8 } }'
  echo \"ssh: { user: root, identity_file: /bench/id_ed25519, known_hosts: /bench/known_hosts\${JUMP:+, bastion: { address: \$JUMP \}} }\"
  echo 'hosts:'
  for k in \$(seq 1 \"\$N\"); do
    i=\$((FIRST + k - 1))
    if [ \$k -le 3 ]; then
      echo \"  - { name: node\$k, address: \$(addr \$i), roles: [control-plane], vars: { vrrp_priority: \$((151 - k)) } }\"
    else
      echo \"  - { name: node\$k, address: \$(addr \$i), roles: [worker] }\"
    fi
  done
  echo 'vars: { vip: 127.0.0.250, sandbox_image: registry.local/pause:3.9, lab_cidr: 127.0.0.0/8 }'
} > /bench/$1
"
}
inventory inventory.yaml 1
[ "$BASTION" = 1 ] && inventory bastion.yaml $((N + 1)) 127.2.0.1

# label [inventory]: one timed run inside the container, with its peak open
# fds sampled.
run() {
  local label=$1
  docker exec -e FORKS="$FORKS" -e LABEL="$label" -e INV="${2:-inventory.yaml}" "$name" chroot /sroot bash -c '
cd /bench
/bench/time -f "%e %U %S %M" -o /bench/time.out /bench/gantry apply -i "$INV" -p workload/gantry/playbooks/bench.yaml --skip-preflight --forks "$FORKS" > /bench/$LABEL.log 2>&1 &
tpid=$!
sleep 0.2
g=$(pgrep -f "^/bench/gantry apply" | head -1)
fds=0
while kill -0 $tpid 2>/dev/null; do
  n=$(ls /proc/$g/fd 2>/dev/null | wc -l); [ "$n" -gt "$fds" ] && fds=$n
  sleep 0.2
done
wait $tpid || true
read -r wall user sys rss < <(tail -n 1 /bench/time.out)
printf "%-12s wall %7.2f s   cpu %6.2f s   peak RSS %7d KiB   peak fds %5d   %s\n" "$LABEL" "$wall" "$(awk "BEGIN { print $user + $sys }")" "$rss" "$fds" "$(tail -n 1 /bench/$LABEL.log)"
'
}

echo "N = $N hosts, forks $FORKS, $(nproc) cores, $(date -u +%FT%TZ)"
if [ "$BASTION" != 1 ]; then
  run cold
  run noop
  docker exec "$name" chroot /sroot sh -c 'grep -h -m3 -E "FAILED|UNREACHABLE" /bench/cold.log /bench/noop.log || true'
  exit 0
fi
echo "direct: hosts $(addr 1)..$(addr "$N"); bastion: hosts $(addr $((N + 1)))..$(addr $((2 * N))) through 127.2.0.1"
run cold-direct | tee -a "$root/scale/results"
run cold-bastion bastion.yaml | tee -a "$root/scale/results"
for r in $(seq 1 "$REPS"); do
  run "noop-direct" | tee -a "$root/scale/results"
  run "noop-bastion" bastion.yaml | tee -a "$root/scale/results"
done
docker exec "$name" chroot /sroot sh -c 'grep -h -m3 -E "FAILED|UNREACHABLE" /bench/*.log || true'
# The no-op runs' median wall time, bastion over direct.
median() { awk -v k="$1" '$1 == k { print $3 }' "$root/scale/results" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
d=$(median noop-direct) b=$(median noop-bastion)
awk -v d="$d" -v b="$b" 'BEGIN { printf "no-op median: direct %.2f s, bastion %.2f s, bastion/direct %.2fx\n", d, b, b / d }'
