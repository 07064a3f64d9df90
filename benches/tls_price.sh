#!/usr/bin/env bash
# The price of mutual TLS on plus-quorum, in one run: 3 `quorum_node` processes with FileStorage
# in plain text, then the same 3 with `--tls-*` (certificates from `quorum_certs`), each loaded
# by the same `quorum_load` with durable puts and linearizable gets of 256-byte values. Prints
# ops/s and p99 of each and the ratio of times (TLS / plain: above 1 means TLS is slower), and
# the whole machine's CPU time per operation (every process, kernel included, from /proc/stat:
# where the machine is busy throughout, the price of TLS in time is its price in CPU).
#
#   bash benches/tls_price.sh [SECONDS_PER_RUN] [CLIENTS] [ROUNDS]
#
# Defaults: 5 seconds per run, 64 clients sharing one connection per node, 2 rounds (plain,
# TLS, plain, TLS: the machine drifts, so each is run more than once and the best of each kept).
# Every process it starts is stopped when it exits, also on failure or Ctrl-C. Ports 127.0.0.1
# 27201-27203 must be free.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-5}"
clients="${2:-64}"
rounds="${3:-2}"

cargo build --release --locked -q -p examples --example quorum_node --example quorum_load --example quorum_certs
work=$(mktemp -d /var/tmp/plus-tls-price.XXXXXX)
# shellcheck source=benches/processes.sh
source benches/processes.sh

"$bin/quorum_certs" --out "$work/certs" --nodes 1,2,3 --client load >/dev/null
peers="1=127.0.0.1:27201,2=127.0.0.1:27202,3=127.0.0.1:27203"

# Starts the three nodes (`tls` or `plain`) on fresh data directories.
start() {
  local mode=$1 run=$2
  for id in 1 2 3; do
    local security=()
    if [ "$mode" = tls ]; then
      security=(--tls-cert "$work/certs/node-$id.pem" --tls-key "$work/certs/node-$id.key" --tls-ca "$work/certs/ca.pem")
    fi
    "$bin/quorum_node" --id "$id" --listen "127.0.0.1:2720$id" --peers "$peers" --data "$work/$mode-$run-$id" \
      "${security[@]}" >"$work/$mode-$run-$id.log" 2>&1 &
    pids+=($!)
  done
}

client_security() {
  if [ "$1" = tls ]; then
    echo --tls-cert "$work/certs/client-load.pem" --tls-key "$work/certs/client-load.key" --tls-ca "$work/certs/ca.pem"
  fi
}

# Waits until one put goes through, so no run measures an election.
wait_ready() {
  local deadline=$((SECONDS + 30))
  # shellcheck disable=SC2046
  until "$bin/quorum_load" --endpoints "$peers" $(client_security "$1") --op put --clients 1 --seconds 1 2>/dev/null | grep -q ' errors=0 '; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "store ($1) not ready in 30 s" >&2; exit 1; fi
    sleep 0.5
  done
}

field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }

declare -A best
for run in $(seq 1 "$rounds"); do
  for mode in plain tls; do
    start "$mode" "$run"
    wait_ready "$mode"
    for op in put get; do
      # shellcheck disable=SC2046
      line=$(run_with_cpu "$bin/quorum_load" --endpoints "$peers" $(client_security "$mode") --op "$op" \
        --clients "$clients" --seconds "$seconds" --value-size 256 --connections shared)
      echo "$mode round $run: $line" >&2
      grep -q ' errors=0 ' <<<"$line" || { echo "errors in the $mode $op run: $line" >&2; exit 1; }
      rps=$(field "$line" rps)
      if [ -z "${best[$mode/$op]:-}" ] || awk -v a="$rps" -v b="$(field "${best[$mode/$op]}" rps)" 'BEGIN { exit !(a > b) }'; then
        best[$mode/$op]="$line"
      fi
    done
    stop_all
  done
done

echo "clients=$clients seconds=$seconds value_size=256 rounds=$rounds (best of each)"
printf '%-4s | %12s %10s %10s | %12s %10s %10s | %14s %13s\n' op "plain ops/s" "plain p99" "cpu us/op" \
  "tls ops/s" "tls p99" "cpu us/op" "tls/plain time" "tls/plain cpu"
for op in put get; do
  p=${best[plain/$op]} t=${best[tls/$op]}
  pr=$(field "$p" rps) tr=$(field "$t" rps) pc=$(field "$p" cpu_us_per_op) tc=$(field "$t" cpu_us_per_op)
  ratio=$(ratio "$pr" "$tr")
  cpu=$(ratio "$tc" "$pc")
  printf '%-4s | %12s %8sus %10s | %12s %8sus %10s | %14s %13s\n' "$op" "$pr" "$(field "$p" p99_us)" "$pc" \
    "$tr" "$(field "$t" p99_us)" "$tc" "$ratio" "$cpu"
done
