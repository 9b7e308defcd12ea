#!/usr/bin/env bash
# STAND-IN for kube-apiserver on a lab host (the real one cannot run here):
# TLS on :6443 with a self-signed certificate, GET /healthz -> 200 "ok" as the
# real API server answers it, and GET /host -> the host's name, so a client
# can tell which control plane served it. It is `openssl s_server -HTTP`,
# kept running by systemd.
#   lab/standin-apiserver.sh LAB HOST [stop|start]
set -euo pipefail
lab=$1 host=$2 action=${3:-install}
c="gantry-lab-$lab-$host"
case "$action" in
  stop|start) docker exec "$c" systemctl "$action" standin-apiserver; exit 0 ;;
esac
d=/var/lib/standin-apiserver
unit="[Unit]
Description=STAND-IN kube-apiserver (TLS /healthz on 6443) for the gantry lab
[Service]
WorkingDirectory=$d/www
ExecStart=/usr/bin/openssl s_server -quiet -HTTP -accept 6443 -cert $d/cert.pem -key $d/key.pem
Restart=always
[Install]
WantedBy=multi-user.target"
docker exec "$c" sh -c "
set -e
mkdir -p $d/www
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=kube-apiserver -keyout $d/key.pem -out $d/cert.pem 2>/dev/null
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nok' > $d/www/healthz
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n%s\n' '$host' > $d/www/host
printf '%s\n' '$unit' > /etc/systemd/system/standin-apiserver.service
systemctl daemon-reload
systemctl enable --now standin-apiserver >/dev/null 2>&1
"
