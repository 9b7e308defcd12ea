#!/usr/bin/env bash
# Run every test of gantry: unit and fixture tests, the CLI tests, and the lab
# tests against real hosts (containers with systemd and sshd, from a Debian
# image this script builds locally and caches).
#
#   ./test.sh            # everything
#   ./test.sh lab        # cargo test filter, passed through
set -euo pipefail
cd "$(dirname "$0")"

if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --check || { echo "test.sh: the code is not formatted; run cargo fmt" >&2; exit 1; }
else
  echo "test.sh: SKIPPED the format check: rustfmt is not installed"
fi

if cargo clippy --version >/dev/null 2>&1; then
  cargo clippy --locked --all-targets --quiet -- -D warnings ||
    { echo "test.sh: clippy warns; fix the warnings above" >&2; exit 1; }
else
  echo "test.sh: SKIPPED the clippy check: clippy is not installed"
fi

lab/ensure-docker.sh
echo "test.sh: lab image $(lab/build-image.sh)"
echo "test.sh: browser $(lab/ensure-browser.sh)"

# Lab tests share this machine's two cores and Docker; run them one by one.
# --no-fail-fast: one failing test binary does not hide the others.
# A ceiling, so that a hang fails here, saying what was left running, instead
# of running CI past its limit (every lab step has a limit of its own too).
limit=${GANTRY_TEST_LIMIT:-70m}
rc=0
timeout --kill-after=30s "$limit" \
  cargo test --locked --no-fail-fast -- --include-ignored --test-threads=1 "$@" || rc=$?
if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
  echo "test.sh: FAILED: the tests ran past $limit and were stopped. Lab containers left:" >&2
  timeout 30 docker ps -a --filter label=gantry-lab --format '{{.Names}} {{.Status}}' >&2 ||
    echo "test.sh: (docker ps did not answer within 30 s: the daemon is stuck)" >&2
fi
exit "$rc"
