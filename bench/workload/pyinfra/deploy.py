# The benchmark's workload for pyinfra (bench/run.sh): the same 12 node-prep
# steps as bench/workload/gantry/roles/bench/tasks.yaml and
# bench/workload/ansible/site.yml, one operation each.
#   pyinfra -y --parallel N STATE/pyinfra_inventory.py bench/workload/pyinfra/deploy.py
# (STATE/* from bench/workload/make-inventories.sh)
from io import StringIO
from pathlib import Path

from pyinfra import host, inventory
from pyinfra.api import QuoteString, StringCommand, operation
from pyinfra.facts.server import Hostname
from pyinfra.operations import files, server

TEMPLATES = Path(__file__).resolve().parent / "templates"


# 1. server.hostname cannot do this on the lab hosts: hostnamectl is
# installed there (the systemd package) but systemd is not running, and
# server.hostname uses hostnamectl whenever it is on the PATH. This is its
# other branch: the live name when it differs, and /etc/hostname.
@operation()
def set_hostname(hostname: str):
    if host.get_fact(Hostname) != hostname:
        yield StringCommand("hostname", "--", QuoteString(hostname))
    yield from files.put._inner(src=StringIO(f"{hostname}\n"), dest="/etc/hostname", mode="644")


set_hostname(name="host name", hostname=host.name)

# 2
files.block(
    name="cluster hosts block",
    path="/etc/hosts",
    marker="# {mark} BENCH",
    content=[f"{h.data.ssh_hostname} {h.name}" for h in inventory],
)

# 3
sysctl_file = files.template(
    name="sysctl file",
    src=str(TEMPLATES / "sysctl.conf.j2"),
    dest="/etc/sysctl.d/90-bench.conf",
    mode="644",
)

# 4
server.shell(
    name="apply sysctl file",
    commands=["sysctl -q -p /etc/sysctl.d/90-bench.conf"],
    _if=sysctl_file.did_change,
)

# 5
files.put(
    name="modules-load file",
    src=StringIO("overlay\nbr_netfilter\n"),
    dest="/etc/modules-load.d/bench.conf",
    mode="644",
)

# 6
files.put(
    name="open files limit",
    src=StringIO("* soft nofile 1048576\n* hard nofile 1048576\n"),
    dest="/etc/security/limits.d/90-bench.conf",
    mode="644",
)

# 7
files.directory(
    name="containerd directory",
    path="/etc/containerd",
    mode="755",
)

# 8
files.template(
    name="containerd config",
    src=str(TEMPLATES / "containerd.toml.j2"),
    dest="/etc/containerd/config.toml",
    mode="644",
    sandbox_image=host.data.sandbox_image,
)

# 9
files.put(
    name="crictl config",
    src=StringIO(
        "runtime-endpoint: unix:///run/containerd/containerd.sock\n"
        "image-endpoint: unix:///run/containerd/containerd.sock\n"
        "timeout: 10\n"
    ),
    dest="/etc/crictl.yaml",
    mode="644",
)

# 10
nft_file = files.template(
    name="nftables rules file",
    src=str(TEMPLATES / "firewall.nft.j2"),
    dest="/etc/nftables-bench.nft",
    mode="644",
    lab_cidr=host.data.lab_cidr,
)

# 11
server.shell(
    name="apply nftables rules",
    commands=["nft -f /etc/nftables-bench.nft"],
    _if=nft_file.did_change,
)

# 12
if "masters" in host.groups:
    files.template(
        name="keepalived config on masters",
        src=str(TEMPLATES / "keepalived.conf.j2"),
        dest="/etc/keepalived/keepalived.conf",
        mode="600",
        vrrp_priority=host.data.vrrp_priority,
        vip=host.data.vip,
    )
