#!/usr/bin/env bash
# gantry's main job on a built-in default: a local lab of three hosts
# (master1, worker1, gpu1), then validate, check, plan, apply, and apply again.
# The lab stays up afterwards; remove it with lab/down.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
lab/ensure-docker.sh
cargo build --locked --quiet
inv=$(lab/up.sh demo)
g=target/debug/gantry
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "gantry validate -i $inv"
$g validate -i "$inv"
step "gantry check: the guides' requirements per host (new host keys are recorded)"
$g check -i "$inv" --accept-new-host-keys || true
step "gantry plan: what would change (nothing is changed)"
$g plan -i "$inv"
step "gantry apply"
$g apply -i "$inv"
step "gantry apply again: nothing left to change"
$g apply -i "$inv"
step "done: the lab is still up (lab/down.sh removes it); try: $g plan -i $inv -v"
