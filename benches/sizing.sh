#!/usr/bin/env bash
# What a platform team sizes the store by, on this machine: three `quorum_node` processes
# (release, file storage) filled with N keys of V bytes, then memory per key, bytes on disk
# per node, the time a node SIGKILLed comes back from its directory and catches up, and the
# time a wiped node catches up (from the leader's log or a snapshot). One line per size:
#
#   keys=N value=V rss_mb=R bytes_per_key=B disk_mb=D snapshot_mb=S snapshot_ms=M restart_ms=T wiped_catch_up_ms=W
#
# Usage: bash benches/sizing.sh [N:V ...]   (default 10000:1024 100000:1024 1000000:1024
# 10000:102400). Every process it starts is stopped when it ends, also on failure; traffic
# stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p examples --example quorum_node --example quorum_ctl --example quorum_load
source benches/processes.sh

P=1=127.0.0.1:7411,2=127.0.0.1:7412,3=127.0.0.1:7413
declare -A pid_of
start() { # id [extra args]
  local id=$1; shift
  RUST_LOG=warn,plus_quorum::file_storage=info \
    "$bin/quorum_node" --id "$id" --listen "127.0.0.1:741$id" --peers "$P" --data "$work/$id" "$@" \
    >>"$work/$id.log" 2>&1 &
  pid_of[$id]=$!
  pids+=($!)
}
applied() { # id -> its applied index, or 0
  "$bin/quorum_ctl" --endpoints "$P" --timeout 2 status 2>/dev/null |
    sed -n "s/^node $1 [A-Za-z]* term=[0-9]* leader=[-0-9]* commit=[0-9]* applied=\([0-9]*\).*/\1/p" | head -n 1
}
leader_applied() {
  "$bin/quorum_ctl" --endpoints "$P" --timeout 2 status 2>/dev/null |
    sed -n 's/^node [0-9] Leader term=[0-9]* leader=[-0-9]* commit=[0-9]* applied=\([0-9]*\).*/\1/p' | head -n 1
}
now_ms() { date +%s%3N; }
wait_caught_up() { # id target -> ms waited (gives up after 600 s)
  local id=$1 target=$2 began
  began=$(now_ms)
  while :; do
    local a
    a=$(applied "$id"); a=${a:-0}
    if [ "$a" -ge "$target" ]; then echo $(( $(now_ms) - began )); return; fi
    if [ $(( $(now_ms) - began )) -gt 600000 ]; then echo timeout; return; fi
    sleep 0.05
  done
}

sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(10000:1024 100000:1024 1000000:1024 10000:102400)
for size in "${sizes[@]}"; do
  keys=${size%%:*}; value=${size##*:}
  stop_all; rm -rf "${work:?}"/*
  # Requests up to the value, and a quota above the state.
  limits=(--max-request-bytes $(( value + 4096 )) --quota-bytes $(( keys * (value + 256) * 2 + (64 << 20) )))
  for id in 1 2 3; do start "$id" "${limits[@]}"; done
  sleep 2
  base_rss=$(awk '/VmRSS/ {print $2}' "/proc/${pid_of[2]}/status")
  "$bin/quorum_load" --endpoints "$P" --op put --clients 64 --seconds 3600 --ops "$keys" \
    --value-size "$value" >/dev/null
  target=$(leader_applied)
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' "/proc/${pid_of[2]}/status")
  disk=$(du -sm "$work/2" | cut -f1)
  # The last snapshot node 2 wrote while filling: its size and how long encoding and writing
  # it took (its log line; `-` when the fill stayed under the snapshot threshold).
  snap=$(grep -a "snapshot saved" "$work/2.log" | tail -n 1 || true)
  snap_mb=$(sed -n 's/.*bytes=\([0-9]*\).*/\1/p' <<<"$snap"); snap_mb=${snap_mb:+$(( snap_mb >> 20 ))}
  snap_ms=$(sed -n 's/.*took_ms=\([0-9]*\).*/\1/p' <<<"$snap")
  # A node SIGKILLed and restarted from its directory.
  kill -9 "${pid_of[2]}"; wait "${pid_of[2]}" 2>/dev/null || true
  start 2 "${limits[@]}"
  restart_ms=$(wait_caught_up 2 "$target")
  # A node wiped and brought back empty.
  kill -9 "${pid_of[3]}"; wait "${pid_of[3]}" 2>/dev/null || true; rm -rf "${work:?}/3"
  start 3 --join "${limits[@]}"
  wiped_ms=$(wait_caught_up 3 "$target")
  echo "keys=$keys value=$value rss_mb=$(( rss / 1024 )) bytes_per_key=$(( (rss - base_rss) * 1024 / keys )) disk_mb=$disk snapshot_mb=${snap_mb:--} snapshot_ms=${snap_ms:--} restart_ms=$restart_ms wiped_catch_up_ms=$wiped_ms"
done
