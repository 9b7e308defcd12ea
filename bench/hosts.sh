# Shared by the benchmarks (sourced): waiting for N light lab hosts and
# learning their host keys. The caller defines N and addr I (host I's
# address).

# Every host's port 22 open, or exit.
wait_for_sshd() {
  local pending i
  for _ in $(seq 1 300); do
    pending=0
    for i in $(seq 1 "$N"); do timeout 1 bash -c "</dev/tcp/$(addr "$i")/22" 2>/dev/null || pending=$((pending + 1)); done
    [ "$pending" = 0 ] && break
    sleep 0.2
  done
  [ "$pending" = 0 ] || { echo "bench: $pending hosts never opened port 22" >&2; exit 1; }
}

# Every host's ed25519 key in FILE. Under the load of N sshds starting, a
# scan can time out: the missing are scanned again.
scan_host_keys() {
  local file=$1 missing a i
  : >"$file"
  for _ in 1 2 3 4 5; do
    missing=$(for i in $(seq 1 "$N"); do a=$(addr "$i"); grep -q "^$a " "$file" || echo "$a"; done)
    [ -z "$missing" ] && break
    ssh-keyscan -T 10 -t ed25519 $missing >>"$file" 2>/dev/null || true
  done
  [ "$(wc -l <"$file")" = "$N" ] || { echo "bench: ssh-keyscan got $(wc -l <"$file") of $N host keys" >&2; exit 1; }
}
