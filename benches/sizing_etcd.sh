#!/usr/bin/env bash
# benches/sizing.sh's figures for etcd 3.4 on this machine, the column a platform team compares
# with: three etcd members filled by the same `quorum_load --etcd --op put --clients 64 --ops N
# --value-size V`; RSS of a follower, its data directory, its database file (etcd's snapshot
# is the database: `snapshot_mb`, and `snapshot_ms` the time to stream it from a member over
# the HTTP gateway), a SIGKILLed member's restart until it has applied what the leader had,
# and a wiped member's catch-up (removed, added back empty as etcd requires, started with
# `--initial-cluster-state existing`). One line per size, as sizing.sh prints:
#
#   keys=N value=V rss_mb=R bytes_per_key=B disk_mb=D snapshot_mb=S snapshot_ms=M restart_ms=T wiped_catch_up_ms=W
#
# Usage: bash benches/sizing_etcd.sh [N:V ...]   (default 10000:1024 100000:1024 1000000:1024
# 10000:102400). Needs `etcd` (Debian's etcd-server), `curl`, and `protoc` to build the etcd
# client. Every process it starts is stopped when it ends; traffic stays on 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v etcd >/dev/null || { echo "no etcd on PATH: apt-get install etcd-server" >&2; exit 1; }
cargo build --release -q -p examples --features etcd --example quorum_load
work=$(mktemp -d /var/tmp/plus-sizing-etcd.XXXXXX)
source benches/processes.sh

client() { echo $((22477 + 2 * $1)); }   # 22479, 22481, 22483
peer() { echo $((22478 + 2 * $1)); }
cluster="e1=http://127.0.0.1:$(peer 1),e2=http://127.0.0.1:$(peer 2),e3=http://127.0.0.1:$(peer 3)"
endpoints="127.0.0.1:$(client 1),127.0.0.1:$(client 2),127.0.0.1:$(client 3)"
declare -A pid_of
start() { # n state
  local n=$1 state=$2
  etcd --name "e$n" --data-dir "$work/e$n" --quota-backend-bytes $((8 << 30)) \
    --listen-client-urls "http://127.0.0.1:$(client "$n")" --advertise-client-urls "http://127.0.0.1:$(client "$n")" \
    --listen-peer-urls "http://127.0.0.1:$(peer "$n")" --initial-advertise-peer-urls "http://127.0.0.1:$(peer "$n")" \
    --initial-cluster "$cluster" --initial-cluster-state "$state" --initial-cluster-token plus-sizing \
    >>"$work/e$n.log" 2>&1 &
  pid_of[$n]=$!
  pids+=($!)
}
api() { # n path json
  curl -s -m 5 -X POST "http://127.0.0.1:$(client "$1")/v3/$2" -d "$3" 2>/dev/null || true
}
applied() { # n -> the raft index it has applied, or 0
  api "$1" maintenance/status '{}' | sed -n 's/.*"raftAppliedIndex":"\([0-9]*\)".*/\1/p' | head -n 1
}
leader_applied() {
  local best=0 a
  for n in 1 2 3; do a=$(applied "$n"); a=${a:-0}; [ "$a" -gt "$best" ] && best=$a; done
  echo "$best"
}
now_ms() { date +%s%3N; }
wait_caught_up() { # n target [since, in ms] -> ms from since (default: now) until caught up
  local n=$1 target=$2 began=${3:-$(now_ms)}
  while :; do
    local a
    a=$(applied "$n"); a=${a:-0}
    if [ "$a" -ge "$target" ]; then echo $(( $(now_ms) - began )); return; fi
    kill -0 "${pid_of[$n]}" 2>/dev/null || { echo "member $n died (see $work/e$n.log)" >&2; echo died; return; }
    if [ $(( $(now_ms) - began )) -gt 600000 ]; then echo timeout; return; fi
    sleep 0.05
  done
}
member_id() { # n -> its member id (decimal, as the gateway prints it)
  api 1 cluster/member/list '{}' | tr '{' '\n' | grep "\"name\":\"e$1\"" | sed -n 's/.*"ID":"\([0-9]*\)".*/\1/p' | head -n 1
}

sizes=("$@")
[ "${#sizes[@]}" -gt 0 ] || sizes=(10000:1024 100000:1024 1000000:1024 10000:102400)
for size in "${sizes[@]}"; do
  keys=${size%%:*}; value=${size##*:}
  stop_all; rm -rf "${work:?}"/*
  for n in 1 2 3; do start "$n" new; done
  until "$bin/quorum_load" --etcd --endpoints "$endpoints" --op put --clients 1 --seconds 1 2>/dev/null | grep -q ' errors=0 '; do sleep 0.5; done
  base_rss=$(awk '/VmRSS/ {print $2}' "/proc/${pid_of[2]}/status")
  "$bin/quorum_load" --etcd --endpoints "$endpoints" --op put --clients 64 --seconds 3600 --ops "$keys" \
    --value-size "$value" >/dev/null
  target=$(leader_applied)
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' "/proc/${pid_of[2]}/status")
  disk=$(du -sm "$work/e2" | cut -f1)
  began=$(now_ms)
  curl -s -m 600 -X POST "http://127.0.0.1:$(client 2)/v3/maintenance/snapshot" -d '{}' -o "$work/snapshot.json"
  snap_ms=$(( $(now_ms) - began ))
  snap_mb=$(( $(stat -c %s "$work/e2/member/snap/db") >> 20 ))
  rm -f "$work/snapshot.json"
  # A member SIGKILLed and restarted from its directory.
  kill -9 "${pid_of[2]}"; wait "${pid_of[2]}" 2>/dev/null || true
  began=$(now_ms)
  start 2 existing
  restart_ms=$(wait_caught_up 2 "$target" "$began")
  # A member wiped: etcd wants it removed and added back before it starts empty.
  id=$(member_id 3)
  kill -9 "${pid_of[3]}"; wait "${pid_of[3]}" 2>/dev/null || true; rm -rf "${work:?}/e3"
  [ -n "$id" ] || { echo "no member id for e3 in: $(api 1 cluster/member/list '{}')" >&2; exit 1; }
  # Removed once the answer lists the members left (a slow answer is asked again).
  removed=""
  for _ in $(seq 60); do
    said=$(api 1 cluster/member/remove "{\"ID\":\"$id\"}")
    if echo "$said" | grep -qE '"members"|member not found'; then removed=yes; break; fi
    sleep 0.5
  done
  [ -n "$removed" ] || { echo "etcd never removed member 3 ($id); it said: $said" >&2; exit 1; }
  # etcd refuses a reconfiguration until every member has been up a while ("not healthy for
  # reconfigure"), say right after the restart above: ask again until it takes it.
  added="" said=""
  for _ in $(seq 120); do
    said=$(api 1 cluster/member/add "{\"peerURLs\":[\"http://127.0.0.1:$(peer 3)\"]}")
    # An add that took longer than curl waited still took: its URL is then "already" there.
    if echo "$said" | grep -qE '"member"|already exists'; then added=yes; break; fi
    sleep 0.5
  done
  if [ -z "$added" ]; then
    echo "etcd never took member 3 back; it said: $said" >&2
    for n in 1 2; do echo "--- e$n" >&2; tail -n 5 "$work/e$n.log" >&2; done
    exit 1
  fi
  start 3 existing
  # From its start: asking every member for the target takes a while itself.
  began=$(now_ms)
  target=$(leader_applied)
  wiped_ms=$(wait_caught_up 3 "$target" "$began")
  # The new member's own account: it joined and received the database.
  grep -aqE "published|applied (incoming )?snapshot" "$work/e3.log" ||
    echo "warning: member 3 did not say it rejoined (see its log)" >&2
  [ -n "${DEBUG_SIZING:-}" ] && grep -aE "snapshot|published|member" "$work/e3.log" | tail -n 5 >&2
  echo "keys=$keys value=$value rss_mb=$(( rss / 1024 )) bytes_per_key=$(( (rss - base_rss) * 1024 / keys )) disk_mb=$disk snapshot_mb=$snap_mb snapshot_ms=$snap_ms restart_ms=$restart_ms wiped_catch_up_ms=$wiped_ms"
done
