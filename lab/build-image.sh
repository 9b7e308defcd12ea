#!/usr/bin/env bash
# Build the lab's base image locally: no registry can be reached here, so we
# debootstrap a Debian bookworm rootfs and `docker import` it.
#
# The image is tagged with a hash of this script, so an unchanged script reuses
# the cached image and a changed package list rebuilds it. Prints the tag.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# Contents only: the same scripts in another checkout (CI's fresh clone) reuse the image.
hash=$(cat "$here/build-image.sh" "$here/init.sh" | sha256sum | cut -c1-12)
tag="gantry-lab:$hash"
mirror=${GANTRY_LAB_MIRROR:-http://deb.debian.org/debian}

if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

if ! command -v debootstrap >/dev/null; then
  echo "lab: installing debootstrap" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

work=$(mktemp -d /var/tmp/gantry-lab.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/rootfs"

# What real servers have and the roles touch: systemd as init, sshd, sudo,
# iproute2/nftables for the firewall role, procps for sysctl, kmod for modprobe,
# keepalived + haproxy for the VIP roles, python3 for the benchmark's Ansible
# and python3-yaml for the kubeadm stand-in,
# etcd 3.4 (server and etcdctl) as the real store behind the stand-in API
# servers, so control-plane joins meet real etcd membership,
# containerd (1.6.20, with runc) for the images and Kubernetes roles: real, not
# a stand-in, installed but not started, as a host that has it before gantry,
# firewalld (1.3, nftables backend) for the firewall role's firewalld path
# against the real daemon: installed but not started, tests start it; with
# libpam-systemd, named because debootstrap cannot resolve polkitd's virtual
# default-logind dependency, and netbase, whose /etc/protocols firewalld needs
# to start at all (the stock ipsec service's esp; vrrp in gantry's zone),
# rpm (with rpmbuild) and dnf for the package module's rpm path: tests build
# small local rpms and install them from files, with no repository,
# attr (getfattr/setfattr) for the SELinux label tests: the lab's kernel has
# no SELinux, but security.selinux is an xattr the filesystems still keep.
pkgs=systemd,systemd-sysv,dbus,openssh-server,sudo,iproute2,nftables,procps,kmod,iputils-ping,netcat-openbsd,keepalived,haproxy,ca-certificates,python3,python3-yaml,containerd,etcd-server,etcd-client,openssl,firewalld,libpam-systemd,netbase,rpm,dnf,attr
echo "lab: debootstrap bookworm into $root (a few minutes)" >&2
if ! debootstrap --variant=minbase --include="$pkgs" bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1; then
  tail -n 30 "$work/debootstrap.log" >&2
  echo "lab: debootstrap failed" >&2
  exit 1
fi

# Units that would reach past the container into the shared kernel or clock
# (sysctl.d at boot, module loading, time sync, udev) are masked: lab tests
# must not change this machine's global settings.
for unit in systemd-sysctl.service systemd-modules-load.service systemd-timesyncd.service \
  systemd-udevd.service systemd-udev-trigger.service systemd-udevd-control.socket \
  systemd-udevd-kernel.socket systemd-remount-fs.service getty@tty1.service \
  console-getty.service sys-kernel-config.mount sys-kernel-debug.mount \
  sys-kernel-tracing.mount proc-sys-fs-binfmt_misc.automount systemd-binfmt.service \
  systemd-networkd-wait-online.service \
  systemd-firstboot.service systemd-journald-audit.socket; do
  ln -sf /dev/null "$root/etc/systemd/system/$unit"
done
# Installed, not started at boot: containerd, etcd, and firewalld (its package
# enables it, and names it by the alias dbus-org.fedoraproject.FirewallD1; the
# package ships no D-Bus activation file, so only systemctl starts it).
rm -f "$root/etc/systemd/system/multi-user.target.wants/containerd.service" \
  "$root/etc/systemd/system/multi-user.target.wants/etcd.service" \
  "$root/etc/systemd/system/multi-user.target.wants/firewalld.service" \
  "$root/etc/systemd/system/dbus-org.fedoraproject.FirewallD1.service"
# libpam-systemd is there for the package graph only: logins stay as before
# (no logind session and no user manager started per SSH login).
sed -i '/pam_systemd\.so/d' "$root/etc/pam.d/common-session" "$root/etc/pam.d/common-session-noninteractive" 2>/dev/null || true
# Host keys are made per container at first boot (init.sh), never baked in.
rm -f "$root"/etc/ssh/ssh_host_*
install -m 0755 "$here/init.sh" "$root/usr/local/sbin/lab-init"
echo 'PermitRootLogin prohibit-password' >"$root/etc/ssh/sshd_config.d/lab.conf"
echo 'MaxStartups 200:30:400' >>"$root/etc/ssh/sshd_config.d/lab.conf"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

tar -C "$root" -c . | docker import -c 'CMD ["/usr/local/sbin/lab-init"]' - "$tag" >&2
echo "$tag"
