#!/usr/bin/env bash
# Benchmark (issue 6, first part): gantry against the floor, side by side on
# the same N lab hosts, cold and no-op.
#   floor: one OpenSSH session per host running one precomputed shell script
#          that writes the same node-prep files, all hosts at once.
#   gantry: `gantry apply` with playbooks/node-prep.yaml (release build).
# Hosts are light containers from the lab image with sshd as PID 1 (no
# systemd), each with its own address, hostname and /etc.
# Ansible and pyinfra, the heavy-login-shell variant and the 1,000-host run
# are not here yet (see the issue).
#   N=50 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-20}
net=${BENCH_NET:-200}
name=bench
state=bench/.state
results=$(mktemp)
lab/ensure-docker.sh
image=$(lab/build-image.sh)
cargo build --release --locked --quiet
g=$PWD/target/release/gantry

cleanup() {
  ids=$(docker ps -aq --filter "label=gantry-bench=$name")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  docker network rm "gantry-$name" >/dev/null 2>&1 || true
}

up() {
  cleanup
  rm -rf "$state" && mkdir -p "$state"
  ssh-keygen -q -t ed25519 -N '' -f "$state/id_ed25519"
  cp "$state/id_ed25519.pub" "$state/authorized_keys"
  docker network create --subnet "172.29.$net.0/24" "gantry-$name" >/dev/null
  {
    echo "cluster: { name: bench, networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12 } }"
    echo "ssh: { user: root, identity_file: $PWD/$state/id_ed25519, known_hosts: $PWD/$state/known_hosts }"
    echo "hosts:"
    for i in $(seq 1 "$N"); do
      echo "  - { name: node$i, address: 172.29.$net.$((10 + i)), roles: [$([ "$i" = 1 ] && echo control-plane || echo worker)] }"
    done
    echo "vars:"
    echo "  sysctl_table: { net.ipv4.ip_forward: 1, net.ipv4.tcp_tw_reuse: 1, net.ipv4.tcp_fin_timeout: 30, net.ipv4.tcp_max_syn_backlog: 65536, net.core.somaxconn: 65536 }"
    echo "  kernel_modules: [$(for m in overlay nf_conntrack; do [ -d /sys/module/$m ] && printf '%s, ' $m; done | sed 's/, $//')]"
    echo "  swap_off_live: false"
    echo "  check_minimums: { cpus: 1, memory_gb: 1, disk_gb: 1 }"
  } >"$state/inventory.yaml"
  for i in $(seq 1 "$N"); do
    docker run -d --name "gantry-$name-node$i" --hostname debian --network "gantry-$name" --ip "172.29.$net.$((10 + i))" \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined -e LAB_INIT=sshd \
      -v "$PWD/$state:/lab:ro" --label gantry-bench=$name "$image" >/dev/null
  done
  for i in $(seq 1 "$N"); do
    for _ in $(seq 1 100); do nc -z -w 1 "172.29.$net.$((10 + i))" 22 2>/dev/null && break; sleep 0.1; done
  done
  ssh-keyscan -t ed25519 $(seq -f "172.29.$net.%g" 11 $((10 + N))) >"$state/known_hosts" 2>/dev/null
}

# The floor's script: the same files node-prep writes, written blindly.
floor_script() {
  local i=$1
  cat <<EOS
set -e
echo node$i > /etc/hostname; hostname node$i
grep -q 'BEGIN GANTRY' /etc/hosts || { echo '# BEGIN GANTRY MANAGED BLOCK'; for j in \$(seq 1 $N); do echo "172.29.$net.\$((10 + j)) node\$j"; done; echo '# END GANTRY MANAGED BLOCK'; } >> /etc/hosts
printf 'net.ipv4.ip_forward = 1\nnet.core.somaxconn = 65536\n' > /etc/sysctl.d/99-gantry.conf
sysctl -q -w net.ipv4.ip_forward=1 net.ipv4.tcp_tw_reuse=1 net.ipv4.tcp_fin_timeout=30 net.ipv4.tcp_max_syn_backlog=65536 net.core.somaxconn=65536
echo overlay > /etc/modules-load.d/overlay.conf
sed -i 's|^\([^#].* swap .*\)$|# \1|' /etc/fstab
mkdir -p /etc/security/limits.d /etc/systemd/system.conf.d /etc/gantry
echo '* soft nofile 65536' > /etc/security/limits.d/90-gantry.conf
printf '[Manager]\nDefaultLimitNOFILE=65536\n' > /etc/systemd/system.conf.d/90-gantry-limits.conf
printf 'table inet gantry {}\ndelete table inet gantry\ntable inet gantry { chain input { type filter hook input priority filter - 1; policy accept; } }\n' > /etc/gantry/firewall.nft
nft -f /etc/gantry/firewall.nft
EOS
}

measure() { # label, command...
  local label=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$state/time" "$@" >"$state/$label.log" 2>&1 || echo "($label exited $?)" >&2
  read -r wall user sys rss <"$state/time"
  printf '%-16s wall %6.2f s   cpu %6.2f s   peak RSS %7d KiB\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" "$rss"
  echo "$label $wall" >>"$results"
}

floor() {
  for i in $(seq 1 "$N"); do
    floor_script "$i" | ssh -q -i "$state/id_ed25519" -o UserKnownHostsFile="$state/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes "root@172.29.$net.$((10 + i))" sh &
  done
  wait
}
export -f floor floor_script
export N net state

echo "N = $N hosts, $(nproc) cores"
up
measure floor-cold bash -c floor
measure floor-noop bash -c floor
up
measure gantry-cold "$g" apply -i "$state/inventory.yaml" --skip-preflight
measure gantry-noop "$g" apply -i "$state/inventory.yaml" --skip-preflight
measure gantry-noop+pre "$g" apply -i "$state/inventory.yaml"
awk '{t[$1]=$2} END {printf "ratios: gantry/floor cold %.2f, no-op %.2f\n", t["gantry-cold"]/t["floor-cold"], t["gantry-noop"]/t["floor-noop"]}' "$results"
cleanup
