#!/usr/bin/env bash
# Benchmark: one 12-step node-prep workload run four ways, side by side on the
# same kind of lab hosts, each cold (fresh hosts) and then as a no-op rerun:
#   floor    one OpenSSH session per host running one precomputed shell
#            script that writes the same files, all hosts at once
#   gantry   `gantry apply` (release build), bench/workload/gantry
#   ansible  ansible-core 2.19.14 (PyPI): pipelining, ControlPersist,
#            forks = N, no fact gathering; bench/workload/ansible
#   pyinfra  pyinfra 3.10.0 (PyPI), all hosts in parallel; bench/workload/pyinfra
# Each host is a light container of the lab image (sshd as PID 1, no systemd)
# with its own address, hostname, /etc and network namespace. Prints wall
# time, the controller's CPU time (user + sys) and peak RSS of each run, and
# the ratios.
#
#   N=50 bench/run.sh                    # all four tools
#   N=50 TOOLS="floor gantry" bench/run.sh
#   N=50 HEAVY=1 bench/run.sh            # root's .bashrc does ~100 ms of work,
#                                        # and counts the logins per host
#   N=50 REPS=3 TOOLS="floor gantry pyinfra" bench/run.sh
#                                        # each tool 3 times, in turn; the
#                                        # ratios are of the medians
#   N=50 bench/run.sh up                 # only bring the hosts up (for profiling)
#   N=50 REPS=3 TOOLS="floor gantry gantry_base" GANTRY_BASE=/other/gantry bench/run.sh
#                                        # this build against another, side by side
#   N=4 TOOLS="floor gantry pyinfra ansible" bench/run.sh verify
#                                        # each tool on fresh hosts: the end
#                                        # states must be the same
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-50}
TOOLS=${TOOLS:-floor gantry pyinfra ansible}
HEAVY=${HEAVY:-0}
REPS=${REPS:-1}
net=${BENCH_NET:-200}
name=bench
state=$PWD/bench/.state
results=$state/results
lab/ensure-docker.sh
image=$(lab/build-image.sh)
. bench/hosts.sh

cleanup() {
  ids=$(docker ps -aq --filter "label=gantry-bench=$name")
  [ -n "$ids" ] && docker rm -f $ids >/dev/null
  # The network can still hold endpoints of containers just removed: retry
  # until it is gone, or the next bring-up finds it there.
  for _ in $(seq 1 40); do
    docker network rm "gantry-$name" >/dev/null 2>&1 || true
    docker network inspect "gantry-$name" >/dev/null 2>&1 || return 0
    sleep 0.5
  done
  echo "bench: the network gantry-$name is still there" >&2
  return 1
}

addr() { echo "172.29.$net.$((10 + $1))"; }

# The heavy login shell: a .bashrc that spends ~100 ms of CPU before it
# returns, as pyenv/conda/nvm setups on GPU servers do. sshd runs every
# command through root's login shell, so a tool pays it on every exec.
# Each run of it also appends a line to a file the hosts share, so the
# benchmark counts the logins (.bashrc runs) each tool needs per host.
heavy_bashrc() {
  echo 'echo x >> /logins/count; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done   # bench: heavy login shell'
}

# Fresh hosts: containers, keys, known_hosts, and every tool's inventory.
up() {
  cleanup
  rm -rf "$state/hosts" "$state/logins" && mkdir -p "$state/hosts" "$state/logins"
  : >"$state/logins/count"
  [ -f "$state/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$state/id_ed25519"
  cp "$state/id_ed25519.pub" "$state/hosts/authorized_keys"
  docker network create --subnet "172.29.$net.0/24" "gantry-$name" >/dev/null
  for i in $(seq 1 "$N"); do
    docker run -d --name "gantry-$name-node$i" --hostname debian --network "gantry-$name" --ip "$(addr "$i")" \
      --cap-add SYS_ADMIN --cap-add NET_ADMIN --security-opt seccomp=unconfined -e LAB_INIT=sshd \
      -v "$state/hosts:/lab:ro" -v "$state/logins:/logins" --label gantry-bench=$name "$image" >/dev/null
  done
  wait_for_sshd
  if [ "$HEAVY" = 1 ]; then
    for i in $(seq 1 "$N"); do docker exec "gantry-$name-node$i" sh -c "$(printf '%s\n' "echo '$(heavy_bashrc)' >> /root/.bashrc")"; done
  fi
  scan_host_keys "$state/known_hosts"
  gantry_inventory >"$state/inventory.yaml"
  bench/workload/make-inventories.sh "$state" "$N" "$net"
  # Let the start-up of N containers die down before anything is timed.
  sleep "${SETTLE:-15}"
}

gantry_inventory() {
  echo "cluster: { name: bench, networking: { pod_cidr: 10.244.0.0/16, service_cidr: 10.96.0.0/12 } }"
  echo "ssh: { user: root, identity_file: $state/id_ed25519, known_hosts: $state/known_hosts }"
  echo "hosts:"
  for i in $(seq 1 "$N"); do
    if [ "$i" -le 3 ]; then
      echo "  - { name: node$i, address: $(addr "$i"), roles: [control-plane], vars: { vrrp_priority: $((151 - i)) } }"
    else
      echo "  - { name: node$i, address: $(addr "$i"), roles: [worker] }"
    fi
  done
  echo "vars: { vip: 172.29.$net.250, sandbox_image: registry.local/pause:3.9, lab_cidr: 172.29.0.0/16 }"
}

# The floor's script for host $1: the workload's end state, precomputed, with
# the two "apply when changed" steps guarded by a compare as the tools do.
floor_script() {
  local i=$1 t=bench/workload/gantry/roles/bench/templates
  cat <<EOS
set -e
put() { if ! cmp -s /tmp/.bench "\$1"; then mv /tmp/.bench "\$1"; chmod "\$2" "\$1"; return 0; fi; rm -f /tmp/.bench; return 1; }
[ "\$(cat /etc/hostname)" = node$i ] || { echo node$i > /etc/hostname; hostname node$i; }
grep -q '^# BEGIN BENCH' /etc/hosts || { echo '# BEGIN BENCH'; for j in \$(seq 1 $N); do echo "172.29.$net.\$((10 + j)) node\$j"; done; echo '# END BENCH'; } >> /etc/hosts
cat > /tmp/.bench <<'X'
$(cat $t/sysctl.conf.j2)
X
put /etc/sysctl.d/90-bench.conf 644 && sysctl -q -p /etc/sysctl.d/90-bench.conf
printf 'overlay\nbr_netfilter\n' > /tmp/.bench; put /etc/modules-load.d/bench.conf 644 || true
printf '* soft nofile 1048576\n* hard nofile 1048576\n' > /tmp/.bench; put /etc/security/limits.d/90-bench.conf 644 || true
mkdir -p /etc/containerd
cat > /tmp/.bench <<'X'
$(sed 's|{{ sandbox_image }}|registry.local/pause:3.9|' $t/containerd.toml.j2)
X
put /etc/containerd/config.toml 644 || true
printf 'runtime-endpoint: unix:///run/containerd/containerd.sock\nimage-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 10\n' > /tmp/.bench; put /etc/crictl.yaml 644 || true
cat > /tmp/.bench <<'X'
$(sed 's|{{ lab_cidr }}|172.29.0.0/16|' $t/firewall.nft.j2)
X
put /etc/nftables-bench.nft 644 && nft -f /etc/nftables-bench.nft
EOS
  if [ "$i" -le 3 ]; then
    cat <<EOS
cat > /tmp/.bench <<'X'
$(sed -e "s|{{ vrrp_priority }}|$((151 - i))|" -e "s|{{ vip }}|172.29.$net.250|" $t/keepalived.conf.j2)
X
put /etc/keepalived/keepalived.conf 600 || true
EOS
  fi
  echo "exit 0"
}

floor() {
  local pids=()
  for i in $(seq 1 "$N"); do
    floor_script "$i" | ssh -q -i "$state/id_ed25519" -o UserKnownHostsFile="$state/known_hosts" -o StrictHostKeyChecking=yes -o BatchMode=yes "root@$(addr "$i")" sh &
    pids+=($!)
  done
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=$((failed + 1)); done
  [ "$failed" = 0 ] || { echo "floor: $failed hosts failed" >&2; return 1; }
}

gantry() {
  "$PWD/target/release/gantry" apply -i "$state/inventory.yaml" -p bench/workload/gantry/playbooks/bench.yaml --forks "$N" --skip-preflight
}

# Another build of gantry (GANTRY_BASE=path), for a before/after comparison
# in one run: TOOLS="floor gantry gantry_base".
gantry_base() {
  : "${GANTRY_BASE:?gantry_base needs GANTRY_BASE=/path/to/the/other/gantry}"
  "$GANTRY_BASE" apply -i "$state/inventory.yaml" -p bench/workload/gantry/playbooks/bench.yaml --forks "$N" --skip-preflight
}

ansible() {
  ANSIBLE_CONFIG="$state/ansible.cfg" "$venv/ansible-playbook" -i "$state/ansible-hosts.ini" bench/workload/ansible/site.yml
}

pyinfra() {
  "$venv/pyinfra" "$state/pyinfra_inventory.py" bench/workload/pyinfra/deploy.py -y --parallel "$N"
}

# label, command: one timed run, its output kept in $state/label.log.
measure() {
  local label=$1; shift
  local rc=0 logins
  logins=$(wc -l <"$state/logins/count")
  /usr/bin/time -f "%e %U %S %M" -o "$state/time" "$@" >"$state/$label.log" 2>&1 || rc=$?
  read -r wall user sys rss < <(tail -n 1 "$state/time")
  local cpu
  cpu=$(echo "$user + $sys" | bc)
  logins=$(( $(wc -l <"$state/logins/count") - logins ))
  printf '%-16s wall %7.2f s   cpu %7.2f s   peak RSS %7d KiB%s%s\n' "$label" "$wall" "$cpu" "$rss" \
    "$([ "$HEAVY" = 1 ] && printf '   logins/host %5.1f' "$(echo "scale=1; $logins / $N" | bc)")" \
    "$([ $rc = 0 ] || echo "   FAILED (exit $rc, see $state/$label.log)")"
  echo "$label $wall $cpu $rss $rc" >>"$results"
}

export -f addr floor floor_script gantry gantry_base ansible pyinfra
export N net state GANTRY_BASE
mkdir -p "$state"
if [ "${1:-}" = up ]; then
  up
  echo "hosts are up; inventories in $state; remove them with: docker rm -f \$(docker ps -aq --filter label=gantry-bench=$name)"
  exit 0
fi
case " $TOOLS " in *" gantry "*) cargo build --release --locked --quiet ;; esac
case " $TOOLS " in *" ansible "* | *" pyinfra "*) export venv=$(bench/tools.sh) ;; esac

# What the workload leaves on a host: names, modes, owners and contents of
# its files, the live hostname, the nftables table and a sysctl.
end_state() {
  local i
  for i in $(seq 1 "$N"); do
    docker exec "gantry-$name-node$i" sh -c 'echo "== $(hostname)"
      for f in /etc/hostname /etc/hosts /etc/sysctl.d/90-bench.conf /etc/modules-load.d/bench.conf \
        /etc/security/limits.d/90-bench.conf /etc/containerd /etc/containerd/config.toml /etc/crictl.yaml \
        /etc/nftables-bench.nft /etc/keepalived/keepalived.conf; do
        stat -c "%n %F %a %U %G" "$f" 2>&1; [ -f "$f" ] && sha256sum <"$f"
      done
      nft list table inet bench | sha256sum; sysctl -n net.core.somaxconn
      find /etc -name "*.gantry.*" -o -name ".bench"'
  done
}

if [ "${1:-}" = verify ]; then
  first=
  for tool in $TOOLS; do
    up
    bash -c "$tool" >"$state/$tool-verify.log" 2>&1 || { echo "verify: $tool failed, see $state/$tool-verify.log" >&2; exit 1; }
    end_state >"$state/$tool.end"
    if [ -z "$first" ]; then
      first=$tool
    elif diff -u "$state/$first.end" "$state/$tool.end"; then
      echo "verify: $tool leaves the same end state as $first on $N hosts"
    else
      echo "verify: $tool and $first differ (above)" >&2
      exit 1
    fi
  done
  cleanup
  exit 0
fi
: >"$results"
echo "N = $N hosts, $(nproc) cores, $([ "$HEAVY" = 1 ] && echo "heavy" || echo "stock") root .bashrc, $(date -u +%FT%TZ)"
# The tools take turns, so drift on this shared machine falls on all of them.
for rep in $(seq 1 "$REPS"); do
  for tool in $TOOLS; do
    up
    if [ "$tool" = floor ] && [ "$HEAVY" = 1 ]; then
      /usr/bin/time -f %e -o "$state/time" ssh -q -i "$state/id_ed25519" -o UserKnownHostsFile="$state/known_hosts" -o BatchMode=yes "root@$(addr 1)" true
      echo "one login on a heavy host: $(cat "$state/time") s (ssh + .bashrc)"
    fi
    measure "$tool-cold" bash -c "$tool"
    measure "$tool-noop" bash -c "$tool"
  done
done
cleanup
# The median wall time of each run kind, then the ratios of those.
sort -k1,1 -k2,2n "$results" | awk -v reps="$REPS" '
  { n[$1]++; v[$1, n[$1]] = $2 }
  END {
    for (t in n) {
      c = n[t]
      w[t] = (c % 2) ? v[t, (c + 1) / 2] : (v[t, c / 2] + v[t, c / 2 + 1]) / 2
      if (t ~ /-cold$/) tools[substr(t, 1, length(t) - 5)] = 1
    }
    if (reps > 1) {
      printf "medians of %d runs:", reps
      for (t in w) printf " %s %.2f s;", t, w[t]
      printf "\n"
    }
    if (!("floor-cold" in w) || !("gantry-cold" in w)) exit
    printf "gantry/floor: cold %.2f, no-op %.2f\n", w["gantry-cold"] / w["floor-cold"], w["gantry-noop"] / w["floor-noop"]
    for (k in tools) if (k != "gantry" && k != "floor")
      printf "%s/gantry: cold %.1fx, no-op %.1fx\n", k, w[k "-cold"] / w["gantry-cold"], w[k "-noop"] / w["gantry-noop"]
  }'
