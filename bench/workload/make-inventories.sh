#!/usr/bin/env bash
# Inventories for the benchmark's Ansible and pyinfra runs, the same hosts and
# variables as the gantry inventory bench/run.sh writes:
#   bench/workload/make-inventories.sh STATE_DIR N NET
# writes STATE_DIR/ansible-hosts.ini, STATE_DIR/ansible.cfg and
# STATE_DIR/pyinfra_inventory.py for node1..nodeN at 172.29.NET.(10+i), user
# root, key STATE_DIR/id_ed25519, host keys from STATE_DIR/known_hosts only
# (strict: an unknown host key fails, nothing is added). node1..node3 are the
# masters (gantry's role control-plane), with vrrp_priority 150, 149, 148.
set -euo pipefail
[ $# -eq 3 ] || { echo "usage: $0 STATE_DIR N NET" >&2; exit 2; }
mkdir -p "$1"
state=$(cd "$1" && pwd)
n=$2
net=$3
masters=$((n < 3 ? n : 3))
addr() { echo "172.29.$net.$((10 + $1))"; }

{
  echo "# Written by bench/workload/make-inventories.sh"
  echo "[masters]"
  for i in $(seq 1 "$masters"); do
    echo "node$i ansible_host=$(addr "$i") vrrp_priority=$((151 - i))"
  done
  echo
  echo "[workers]"
  for i in $(seq $((masters + 1)) "$n"); do
    echo "node$i ansible_host=$(addr "$i")"
  done
  echo
  echo "[all:vars]"
  echo "ansible_user=root"
  echo "ansible_ssh_private_key_file=$state/id_ed25519"
  echo "ansible_python_interpreter=/usr/bin/python3"
  echo "vip=172.29.$net.250"
  echo "sandbox_image=registry.local/pause:3.9"
  echo "lab_cidr=172.29.0.0/16"
} >"$state/ansible-hosts.ini"

# ControlPath sockets live in the state dir: a fresh set of hosts (a new
# state dir) never reuses a master connection to the previous containers.
cat >"$state/ansible.cfg" <<EOF
# Written by bench/workload/make-inventories.sh
[defaults]
inventory = $state/ansible-hosts.ini
forks = 50
gathering = explicit
host_key_checking = True
interpreter_python = /usr/bin/python3
retry_files_enabled = False
# Keep the local temp dir and the fact cache out of ~/.ansible.
local_tmp = $state/ansible-tmp

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$state/known_hosts -o StrictHostKeyChecking=yes -o GlobalKnownHostsFile=/dev/null
control_path_dir = $state/cp
EOF

{
  echo "# Written by bench/workload/make-inventories.sh"
  echo "# pyinfra's ssh_strict_host_key_checking defaults to accept-new; \"yes\" makes an"
  echo "# unknown host key fail as OpenSSH's StrictHostKeyChecking=yes does."
  echo "all = ("
  echo "    [$(for i in $(seq 1 "$n"); do printf '"node%s", ' "$i"; done | sed 's/, $//')],"
  echo "    {"
  echo "        \"ssh_user\": \"root\","
  echo "        \"ssh_key\": \"$state/id_ed25519\","
  echo "        \"ssh_known_hosts_file\": \"$state/known_hosts\","
  echo "        \"ssh_strict_host_key_checking\": \"yes\","
  echo "        \"ssh_allow_agent\": False,"
  echo "        \"ssh_look_for_keys\": False,"
  echo "        \"vip\": \"172.29.$net.250\","
  echo "        \"sandbox_image\": \"registry.local/pause:3.9\","
  echo "        \"lab_cidr\": \"172.29.0.0/16\","
  echo "    },"
  echo ")"
  echo "masters = ["
  for i in $(seq 1 "$masters"); do
    echo "    (\"node$i\", {\"ssh_hostname\": \"$(addr "$i")\", \"vrrp_priority\": $((151 - i))}),"
  done
  echo "]"
  echo "workers = ["
  for i in $(seq $((masters + 1)) "$n"); do
    echo "    (\"node$i\", {\"ssh_hostname\": \"$(addr "$i")\"}),"
  done
  echo "]"
} >"$state/pyinfra_inventory.py"
