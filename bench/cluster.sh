#!/usr/bin/env bash
# Benchmark of the cluster playbook on the guide's 7-host topology in the
# lab (3 control planes behind the VIP, 2 workers, 2 GPU workers; kubeadm,
# the kubelet and the API server are the lab's stand-ins): the bring-up
# from bare hosts split by play, then no-op reruns of the whole cluster
# playbook and of node-prep alone on the same hosts, alternated, REPS each.
# Reported side by side in one run: the medians and their ratio (the
# target: a cluster no-op within 1.5x a node-prep no-op).
#
#   bench/cluster.sh                 # REPS=9
#   GANTRY=/other/gantry bench/cluster.sh
#
# Not a test: it takes minutes, and its numbers belong in notes.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-9}
lab/ensure-docker.sh
cargo build --release --quiet
gantry=${GANTRY:-$PWD/target/release/gantry}
inv=$(lab/up.sh bench-cluster "master1:control-plane,master2:control-plane,master3:control-plane,worker1:worker,worker2:worker,gpu1:worker+gpu,gpu2:worker+gpu" 202)
trap 'lab/down.sh bench-cluster >/dev/null 2>&1 || true' EXIT
echo "bundle: $(lab/bundle.sh "$(dirname "$inv")/bundle")" >>"$inv"
secs() { local s e; s=$(date +%s.%N); "$@" >/tmp/bench-cluster.out 2>&1 || { cat /tmp/bench-cluster.out; exit 1; }; e=$(date +%s.%N); echo "$e - $s" | bc; }

# The bring-up, with each play's span read from the run's journal.
t=$(secs "$gantry" apply -i "$inv" -p cluster --accept-new-host-keys)
echo "bring-up (7 bare hosts to all nodes registered): ${t}s"
python3 - "$(dirname "$inv")/.gantry/journal.jsonl" <<'PY'
import json, sys
t0, spans = None, {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "start" in e:
        t0, spans = e["at"], {}  # the last run's
    elif "task" in e and t0 is not None:
        role = e["task"].split("/")[0]
        lo, hi = spans.get(role, (e["at"], e["at"]))
        spans[role] = (min(lo, e["at"]), max(hi, e["at"]))
print("  by role, seconds after the run began (the journal's 1 s clock): first task done .. last")
for role, (lo, hi) in spans.items():
    print(f"  {role:15s} {lo - t0:4d} .. {hi - t0:4d}")
PY

prep=() cluster=()
for _ in $(seq 1 "$REPS"); do
  prep+=("$(secs "$gantry" apply -i "$inv" -p node-prep)")
  cluster+=("$(secs "$gantry" apply -i "$inv" -p cluster)")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
mp=$(median "${prep[@]}") mc=$(median "${cluster[@]}")
echo "no-op node-prep: ${prep[*]} (median ${mp}s)"
echo "no-op cluster:   ${cluster[*]} (median ${mc}s)"
echo "ratio cluster / node-prep: $(echo "scale=2; $mc / $mp" | bc)"
