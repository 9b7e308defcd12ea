#!/usr/bin/env bash
# The run report's page is tested in a real headless browser: Debian's
# chromium, installed here if it is missing (like debootstrap for the lab
# image). Prints the browser's path.
set -euo pipefail
if ! command -v chromium >/dev/null; then
  echo "lab: installing chromium (the run report's browser test)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >&2
fi
command -v chromium
