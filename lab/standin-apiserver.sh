#!/usr/bin/env bash
# Run the STAND-IN kube-apiserver (lab/standin/kube-apiserver) on a lab host,
# kept running by systemd, with a self-signed certificate: TLS on :6443,
# health endpoints answered as the real server answers them, 403 for other
# paths, GET /host naming the host (the lab's own addition).
#   lab/standin-apiserver.sh LAB HOST              install and start
#   lab/standin-apiserver.sh LAB HOST stop|start   the service
#   lab/standin-apiserver.sh LAB HOST unhealthy    /healthz answers 500
#   lab/standin-apiserver.sh LAB HOST healthy      /healthz answers 200 again
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
lab=$1 host=$2 action=${3:-install}
c="gantry-lab-$lab-$host"
d=/var/lib/standin-apiserver
case "$action" in
  stop|start) docker exec "$c" systemctl "$action" standin-apiserver; exit 0 ;;
  unhealthy) docker exec "$c" touch "$d/unhealthy"; exit 0 ;;
  healthy) docker exec "$c" rm -f "$d/unhealthy"; exit 0 ;;
esac
docker cp "$here/standin/kube-apiserver" "$c:/usr/local/bin/kube-apiserver" >/dev/null
unit="[Unit]
Description=STAND-IN kube-apiserver (lab/standin/kube-apiserver) for the gantry lab
[Service]
Environment=STANDIN_STATE=$d
ExecStart=/usr/local/bin/kube-apiserver --secure-port=6443 --tls-cert-file=$d/cert.pem --tls-private-key-file=$d/key.pem
Restart=always
[Install]
WantedBy=multi-user.target"
docker exec "$c" sh -c "
set -e
mkdir -p $d
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=kube-apiserver -keyout $d/key.pem -out $d/cert.pem 2>/dev/null
printf '%s\n' '$unit' > /etc/systemd/system/standin-apiserver.service
systemctl daemon-reload
systemctl enable --now standin-apiserver >/dev/null 2>&1
"
# Serving once it answers its health check.
for _ in $(seq 1 50); do
  if docker exec "$c" sh -c "printf 'GET /healthz HTTP/1.0\r\n\r\n' | timeout 2 openssl s_client -quiet -connect 127.0.0.1:6443 2>/dev/null | tail -n 1 | grep -qx ok"; then
    exit 0
  fi
  sleep 0.2
done
echo "lab: the stand-in kube-apiserver did not start on $host" >&2
exit 1
