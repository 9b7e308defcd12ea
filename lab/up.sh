#!/usr/bin/env bash
# Start a lab: real hosts as containers from the locally built Debian image,
# each with its own hostname, IP address, /etc, systemd as PID 1 and sshd.
#
#   lab/up.sh [NAME] [HOSTS] [NET]
#     NAME   lab name (default: demo); state goes to lab/.state/NAME/
#     HOSTS  name:role+role,... (default: master1:control-plane,worker1:worker,gpu1:worker+gpu)
#     NET    third octet of the lab's 172.29.NET.0/24 network (default: 10)
#
# Writes lab/.state/NAME/inventory.yaml, an SSH key and an empty known_hosts.
# Lab hosts are safe for this machine: /proc/sys is read-only except the
# hosts' own net.* keys, and the units that would reach the shared kernel or
# clock are masked (see build-image.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
name=${1:-demo}
hosts=${2:-master1:control-plane,worker1:worker,gpu1:worker+gpu}
net=${3:-10}
state="$here/.state/$name"
image=$("$here/build-image.sh")

"$here/down.sh" "$name" >/dev/null 2>&1 || true
mkdir -p "$state"
# New hosts: no known keys, no journal or secrets from an earlier lab.
rm -rf "$state/.gantry"
rm -f "$state/id_ed25519" "$state/id_ed25519.pub" "$state/known_hosts"
ssh-keygen -q -t ed25519 -N '' -C "gantry-lab-$name" -f "$state/id_ed25519"
install -m 0644 "$state/id_ed25519.pub" "$state/authorized_keys"
: >"$state/known_hosts"

subnet="172.29.$net.0/24"
docker network create --subnet "$subnet" "gantry-lab-$name" >/dev/null

# Kernel modules the lab may name: only ones this machine has loaded already,
# since loading one would change the shared kernel.
mods=()
for m in overlay nf_conntrack br_netfilter; do
  [ -d "/sys/module/$m" ] && mods+=("$m")
done

inv="$state/inventory.yaml"
{
  echo "# Lab inventory written by lab/up.sh for lab '$name'."
  echo "cluster:"
  echo "  name: lab-$name"
  echo "  kubernetes_version: v1.34.3"
  echo "  control_plane_endpoint: { vip: 172.29.$net.100, port: 6553 }"
  echo "  networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12, host_cidr: $subnet }"
  echo "ssh:"
  echo "  user: root"
  echo "  identity_file: $state/id_ed25519"
  echo "  known_hosts: $state/known_hosts"
  echo "  connect_timeout: 5"
  echo "  command_timeout: 60"
  echo "hosts:"
} >"$inv"

i=10
IFS=, read -ra specs <<<"$hosts"
for spec in "${specs[@]}"; do
  h=${spec%%:*}
  roles=${spec#*:}
  i=$((i + 1))
  ip="172.29.$net.$i"
  # Docker names the UTS hostname; a fresh server says "debian" until gantry names it.
  docker run -d --name "gantry-lab-$name-$h" --hostname debian \
    --network "gantry-lab-$name" --ip "$ip" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined \
    --tmpfs /run --tmpfs /run/lock -v /sys/fs/cgroup:/sys/fs/cgroup:ro \
    -v "$state:/lab:ro" -e container=docker \
    --label gantry-lab="$name" --label gantry-lab-ip="$ip" "$image" >/dev/null
  echo "  - { name: $h, address: $ip, roles: [${roles//+/, }] }" >>"$inv"
done

{
  echo "vars:"
  echo "  # Lab hosts share this machine's kernel: only namespaced net.* keys."
  echo "  sysctl_table:"
  echo "    net.ipv4.ip_forward: 1"
  echo "    net.ipv4.tcp_tw_reuse: 1"
  echo "    net.ipv4.tcp_fin_timeout: 30"
  echo "    net.ipv4.tcp_max_syn_backlog: 65536"
  echo "    net.core.somaxconn: 65536"
  echo "  # Modules already loaded in the shared kernel; gantry persists them."
  echo "  kernel_modules: [$(IFS=,; echo "${mods[*]}" | sed 's/,/, /g')]"
  echo "  # swapoff in a lab host would reach the machine's own swap."
  echo "  swap_off_live: false"
  echo "  # Lab hosts are containers on Docker's overlayfs: containerd unpacks"
  echo "  # images there only with the native snapshotter."
  echo "  containerd_snapshotter: native"
  echo "  # Lab hosts are containers on a small machine: gantry check's hardware"
  echo "  # minima (8 cores, 16 GB, 100 GB) cannot hold here."
  echo "  check_minimums: { cpus: 1, memory_gb: 1, disk_gb: 1 }"
} >>"$inv"

# A swap line in fstab, as a fresh server has, for swap-off to comment out.
for spec in "${specs[@]}"; do
  h=${spec%%:*}
  docker exec "gantry-lab-$name-$h" sh -c 'echo "/swap.img none swap sw 0 0" >>/etc/fstab'
done

# GPU hosts get the STAND-IN nvidia-smi (lab/standin/nvidia-smi), printing
# the seeds' real 575.64.03 output, and the STAND-IN NVIDIA runtime
# (lab/standin/nvidia-container-runtime: it logs, then runs the real runc).
for spec in "${specs[@]}"; do
  h=${spec%%:*}
  case "${spec#*:}" in *gpu*)
    c="gantry-lab-$name-$h"
    docker exec "$c" mkdir -p /usr/local/share/standin
    docker cp "$here/standin/nvidia-smi" "$c:/usr/local/bin/nvidia-smi" >/dev/null
    docker cp "$here/../tests/fixtures/outputs/nvidia-smi-575.64.03.txt" "$c:/usr/local/share/standin/nvidia-smi.txt" >/dev/null
    docker cp "$here/standin/nvidia-container-runtime" "$c:/usr/bin/nvidia-container-runtime" >/dev/null
    ;;
  esac
done

# Control planes get the STAND-IN API server (lab/standin/kube-apiserver) at
# /usr/local/bin/kube-apiserver: the program the kubelet stand-in runs for
# kubeadm's kube-apiserver static pod, in place of that image's content.
for spec in "${specs[@]}"; do
  h=${spec%%:*}
  case "${spec#*:}" in *control-plane*)
    docker cp "$here/standin/kube-apiserver" "gantry-lab-$name-$h:/usr/local/bin/kube-apiserver" >/dev/null
    ;;
  esac
done

# Wait for sshd on every host.
for spec in "${specs[@]}"; do
  h=${spec%%:*}
  for _ in $(seq 1 100); do
    if docker exec "gantry-lab-$name-$h" sh -c 'systemctl is-active -q ssh' 2>/dev/null; then break; fi
    sleep 0.2
  done
  docker exec "gantry-lab-$name-$h" systemctl is-active -q ssh || { echo "lab: sshd did not start on $h" >&2; exit 1; }
done
# And for the rest of boot: a unit still starting can write under /etc
# while a test compares it (seen once: /etc's mtime moved during a
# read-only `gantry check`). Degraded is as good as running here.
for spec in "${specs[@]}"; do
  h=${spec%%:*}
  docker exec "gantry-lab-$name-$h" timeout 60 systemctl is-system-running --wait >/dev/null 2>&1 || true
done
echo "$inv"
