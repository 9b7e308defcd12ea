#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of the inventory loader,
# the role loader and the journal reader: hostile or torn files must give an
# error, never a panic. Not part of ./test.sh (it runs for minutes); every
# crash it finds is kept in fuzz/regressions/TARGET/ and replayed by
# `cargo test --test fuzz_regressions`, which ./test.sh runs.
#
#   fuzz/run.sh            # each target 120 s
#   SECS=600 fuzz/run.sh journal
set -euo pipefail
cd "$(dirname "$0")"
secs=${SECS:-120}
targets=${*:-inventory role journal}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz/run.sh: installing cargo-fuzz (crates.io)" >&2
  cargo install cargo-fuzz --locked
fi
# Seeds: the project's own valid files, so the fuzzer starts from the shape.
mkdir -p corpus/inventory corpus/role corpus/journal
cp ../inventory/*.yaml corpus/inventory/ 2>/dev/null || true
for r in ../roles/*/; do
  { cat "$r/tasks.yaml"; printf '\377'; cat "$r/defaults.yaml" 2>/dev/null || true; } >"corpus/role/$(basename "$r")"
done
printf '%s\n' '{"run":"1-1-aa","at":1,"start":"apply","playbook":"node-prep"}' \
  '{"run":"1-1-aa","at":1,"host":"m1","begin":[0,1]}' \
  '{"run":"1-1-aa","at":2,"host":"m1","task":"r/t","seq":0,"input":"ab","outcome":"ok","reason":""}' \
  >corpus/journal/seed
for t in $targets; do
  echo "== $t: ${secs}s"
  mkdir -p "regressions/$t"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" \
    -artifact_prefix="regressions/$t/" -timeout=10 -rss_limit_mb=2048 2>&1 |
    grep -E '^#[0-9]+.*(DONE|NEW)|Done [0-9]+ runs|ERROR|panicked|SUMMARY|Test unit written' | tail -5 || true
done
ls -1 regressions/*/ 2>/dev/null | grep -v ':$' | grep -c . | xargs -I{} echo "regression inputs kept: {}"
