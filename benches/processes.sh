# Sourced by the sizing and side-by-side scripts: the release examples' directory ($bin), a work
# directory ($work, given or made), and every process started and put in $pids killed, and
# $work removed, when the script ends, also on failure. `run_with_cpu` runs a `quorum_load` and
# adds to its last line the whole machine's CPU time per operation.
bin=$(cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')/release/examples
work=${work:-$(mktemp -d)}
pids=()
stop_all() {
  for p in "${pids[@]:-}"; do kill -9 "$p" 2>/dev/null || true; done
  for p in "${pids[@]:-}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap 'stop_all; rm -rf "$work"' EXIT

# The machine's busy CPU time so far, in clock ticks (user, nice, system, irq, softirq, steal).
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
ticks_per_second=$(getconf CLK_TCK)

# `A / B` as `1.23x`, or `-` when B is not above zero.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }

# Runs the command (a `quorum_load`) and prints its last line with ` cpu_us_per_op=N` added: the
# whole machine's CPU time (every process, the kernel's work included) over its `ops=`.
run_with_cpu() {
  local before line ops
  before=$(busy_ticks)
  line=$("$@" | tail -n 1)
  ops=$(sed -n 's/.* ops=\([0-9]*\).*/\1/p' <<<"$line")
  awk -v line="$line" -v t=$(($(busy_ticks) - before)) -v hz="$ticks_per_second" -v ops="${ops:-0}" \
    'BEGIN { printf "%s cpu_us_per_op=%.1f\n", line, (ops > 0 ? t / hz * 1e6 / ops : 0) }'
}
