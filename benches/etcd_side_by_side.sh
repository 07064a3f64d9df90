#!/usr/bin/env bash
# plus-quorum and etcd side by side on this machine and disk, in one run: 3 `quorum_node`
# processes with FileStorage, then 3 etcd members, each loaded by the same `quorum_load` (the
# `KvClient` trait over either store) with puts and linearizable gets of 256-byte values at 1,
# 64 and 256 clients. Prints a table of ops/s, p99, the whole machine's CPU time per operation,
# and the ratios plus-quorum / etcd.
#
#   bash benches/etcd_side_by_side.sh [SECONDS_PER_RUN] [shared|per-client] [KEYS]
#
# Defaults: 5 seconds per run; `shared`: all clients of a run share one client (one connection
# per node, one gRPC connection for etcd, as etcd's own benchmarks and most of its users run);
# `per-client` gives every client its own connections. The gets read KEYS keys at random
# (default 2,000,000), written into each store before its first get run (not timed).
#
# Needs `etcd` (Debian's etcd-server) and `protoc` (protobuf-compiler) for the etcd client.
# Every process it starts is stopped when it exits, also on failure or Ctrl-C. Ports 127.0.0.1
# 27101-27103 (plus-quorum) and 22379-22384 (etcd) must be free.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-5}"
connections="${2:-shared}"
keys="${3:-2000000}"
command -v etcd >/dev/null || { echo "no etcd on PATH: apt-get install etcd-server" >&2; exit 1; }

cargo build --release --locked -q -p examples --features etcd --example quorum_node --example quorum_load
# On disk, not a tmpfs /tmp: the stores' fsyncs must reach a disk.
work=$(mktemp -d /var/tmp/plus-side-by-side.XXXXXX)
# shellcheck source=benches/processes.sh
source benches/processes.sh

# Waits until `quorum_load` gets one put through, so no run measures an election.
wait_ready() {
  local deadline=$((SECONDS + 30))
  until "$bin/quorum_load" "$@" --op put --clients 1 --seconds 1 2>/dev/null | grep -q ' errors=0 '; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "store not ready in 30 s: $*" >&2; exit 1; fi
    sleep 0.5
  done
}

declare -A result
measure() { # name, then the endpoint arguments of quorum_load
  local name=$1; shift
  for op in put get; do
    if [ "$op" = get ]; then
      # The gets' keys written after the puts (as before: the puts' figures stay comparable
      # between sittings) and apart, so no measured run's CPU time includes the fill.
      "$bin/quorum_load" "$@" --op get --clients 1 --seconds 1 --value-size 256 --keys "$keys" >/dev/null
    fi
    for clients in 1 64 256; do
      line=$(run_with_cpu "$bin/quorum_load" "$@" --op "$op" --clients "$clients" --seconds "$seconds" \
        --value-size 256 --connections "$connections" --keys "$keys")
      echo "$name $line" >&2
      result[$name/$op/$clients]="$line"
    done
  done
}

field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" <<<"$1"; }

peers="1=127.0.0.1:27101,2=127.0.0.1:27102,3=127.0.0.1:27103"
for id in 1 2 3; do
  "$bin/quorum_node" --id "$id" --listen "127.0.0.1:2710$id" --peers "$peers" --data "$work/plus-$id" \
    >"$work/plus-$id.log" 2>&1 &
  pids+=($!)
done
wait_ready --endpoints "$peers"
measure plus --endpoints "$peers"
stop_all

cluster="e1=http://127.0.0.1:22380,e2=http://127.0.0.1:22382,e3=http://127.0.0.1:22384"
endpoints=""
for n in 1 2 3; do
  client=$((22377 + 2 * n)) peer=$((22378 + 2 * n))
  etcd --name "e$n" --data-dir "$work/etcd-$n" \
    --listen-client-urls "http://127.0.0.1:$client" --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token plus-side-by-side \
    >"$work/etcd-$n.log" 2>&1 &
  pids+=($!)
  endpoints="${endpoints:+$endpoints,}127.0.0.1:$client"
done
wait_ready --etcd --endpoints "$endpoints"
measure etcd --etcd --endpoints "$endpoints"
stop_all

echo "connections=$connections seconds=$seconds value_size=256 keys=$keys"
echo "cpu us/op: the whole machine's CPU time (every process, the kernel's included) per operation"
printf '%-4s %8s | %12s %10s %10s | %12s %10s %10s | %13s %13s\n' op clients "plus ops/s" "plus p99" "cpu us/op" \
  "etcd ops/s" "etcd p99" "cpu us/op" "plus/etcd ops" "plus/etcd cpu"
for op in put get; do
  for clients in 1 64 256; do
    p=${result[plus/$op/$clients]} e=${result[etcd/$op/$clients]}
    pr=$(field "$p" rps) er=$(field "$e" rps) pc=$(field "$p" cpu_us_per_op) ec=$(field "$e" cpu_us_per_op)
    ratio=$(ratio "$pr" "$er")
    cpu=$(ratio "$pc" "$ec")
    printf '%-4s %8s | %12s %8sus %10s | %12s %8sus %10s | %13s %13s\n' "$op" "$clients" "$pr" "$(field "$p" p99_us)" \
      "$pc" "$er" "$(field "$e" p99_us)" "$ec" "$ratio" "$cpu"
  done
done
