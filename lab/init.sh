#!/bin/sh
# PID 1 of a lab host. Docker bind-mounts /etc/hosts, /etc/hostname and
# /etc/resolv.conf; a real server has plain files there, and gantry replaces
# files by rename, which a bind mount refuses. At first boot, turn Docker's
# files into plain ones; at a later boot (docker start after docker kill: a
# reboot), drop Docker's mounts so the host's own files show again.
first=true
[ -e /etc/.lab-booted ] && first=false
for f in /etc/hosts /etc/hostname /etc/resolv.conf; do
  if $first && [ -f "$f" ]; then
    cp "$f" "$f.lab" && umount "$f" 2>/dev/null; mv -f "$f.lab" "$f"
  else
    umount "$f" 2>/dev/null
  fi
done
touch /etc/.lab-booted
# Docker mounts /proc/sys read-only. Make only /proc/sys/net writable: those
# keys belong to this host's own network namespace, while vm.*, fs.* and
# kernel.* stay read-only, so no lab test can change the machine's kernel.
mount --bind /proc/sys/net /proc/sys/net && mount -o remount,bind,rw /proc/sys/net
if ! $first; then
  # What a real server's boot does and the lab's masked units cannot: the
  # name from /etc/hostname, and the sysctl.d settings, net.* only here.
  hostname "$(cat /etc/hostname)"
  cat /etc/sysctl.d/*.conf 2>/dev/null | grep -E '^[[:space:]]*net\.' | sysctl -q -p /dev/stdin 2>/dev/null
fi
# Each host gets its own host keys, made at first boot.
ssh-keygen -A >/dev/null 2>&1
mkdir -p /root/.ssh && chmod 700 /root/.ssh
if [ -f /lab/authorized_keys ] && [ ! -s /root/.ssh/authorized_keys ]; then
  install -m 600 /lab/authorized_keys /root/.ssh/authorized_keys
fi
if [ "${LAB_INIT:-systemd}" = systemd ] && [ -x /sbin/init ]; then
  exec /sbin/init
fi
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
