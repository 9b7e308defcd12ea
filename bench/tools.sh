#!/usr/bin/env bash
# The benchmark's other tools: Ansible and pyinfra, pinned, in bench/.venv.
# A rerun with the pinned versions already there installs nothing.
# Prints the venv's bin dir on stdout (and nothing else).
#   VENV=$(bench/tools.sh)
set -euo pipefail
cd "$(dirname "$0")"
ansible_version=2.19.14
pyinfra_version=3.10.0
venv=$PWD/.venv

installed() {
  "$venv/bin/python" - "$ansible_version" "$pyinfra_version" <<'EOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if (version("ansible-core"), version("pyinfra")) == tuple(sys.argv[1:3]) else 1)
EOF
}

if ! [ -x "$venv/bin/python" ] || ! installed; then
  echo "bench: installing ansible-core==$ansible_version pyinfra==$pyinfra_version into $venv" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "ansible-core==$ansible_version" "pyinfra==$pyinfra_version" >&2
  installed || { echo "bench: the venv does not have the pinned versions" >&2; exit 1; }
fi
echo "$venv/bin"
