#!/usr/bin/env bash
# gantry's main job on a built-in default: a local lab of three hosts
# (master1, worker1, gpu1) and the lab's offline bundle, then validate,
# check, plan, apply -p cluster (node preparation, containerd and the
# bundle's images, the VIP, kubeadm init and joins, Calico, the GPU node's
# NVIDIA runtime and gpu=on label, the guides' four Helm addons), apply again
# (nothing left to change), and the cluster's nodes, Ready, as the real
# kubectl sees them through `gantry kubeconfig`, with the addons' releases.
# STAND-INS: kubeadm, the kubelet, the API server, helm and nvidia-smi cannot
# run here, so the lab's stand-ins (lab/standin/) take their place, and the
# charts are the lab's small ones under the real names and versions; containerd, etcd, haproxy,
# keepalived, systemd, sshd and kubectl are real. The lab stays up
# afterwards; remove it with lab/down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
lab/ensure-docker.sh
cargo build --locked --quiet
inv=$(lab/up.sh demo)
echo "bundle: $(lab/bundle.sh "$(dirname "$inv")/bundle")" >>"$inv"
cat >>"$inv" <<'EOF'
addons:
  kube-prometheus-stack: {}
  gpu-operator: {}
  hami: {}
  kubernetes-dashboard: {}
EOF
g=target/debug/gantry
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "gantry validate -i $inv -p cluster"
$g validate -i "$inv" -p cluster
step "gantry check: the guides' requirements per host (new host keys are recorded)"
$g check -i "$inv" --accept-new-host-keys || true
step "gantry plan -p cluster: what would change (nothing is changed)"
$g plan -i "$inv" -p cluster
step "gantry apply -p cluster"
$g apply -i "$inv" -p cluster
step "gantry apply -p cluster again: nothing left to change"
$g apply -i "$inv" -p cluster
step "gantry kubeconfig: the admin kubeconfig, for the real kubectl here"
kc="$(dirname "$inv")/admin.conf"
$g kubeconfig -i "$inv" -o "$kc"
for _ in $(seq 1 60); do
  if ! lab/.cache/kubectl-v1.37.1 --kubeconfig "$kc" get nodes --no-headers | grep -qv ' Ready '; then break; fi
  sleep 1
done
lab/.cache/kubectl-v1.37.1 --kubeconfig "$kc" get nodes -L gpu
step "the addons' Helm releases (helm on master1)"
docker exec gantry-lab-demo-master1 sh -c 'h=$(ls -d /var/lib/gantry/helm/v*/helm | tail -n 1); "$h" --kubeconfig /etc/kubernetes/admin.conf list -A'
step "done: the lab is still up (lab/down.sh removes it); try: $g plan -i $inv -p cluster -v"
