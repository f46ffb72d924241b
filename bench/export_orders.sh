#!/usr/bin/env bash
# Benchmark: octoplant export orders, dbsync beside the curl command line, in one run.
#
# 1. Following 200 orders to completion. The simulator runs in time mode: an
#    order is done exactly T seconds after it was placed (T = 4.5), whoever
#    asks. Both sides place 200 orders, then poll every unfinished one once
#    per interval (1 s) until all are done:
#      dbsync  200 dbsync_export_order calls; the background worker polls
#              (one export_poll job per order, dbsync.export_poll_interval = 1s)
#      curl    one token, 200 `curl -X POST /v1/order`, then rounds: one
#              `curl GET /v1/order/<name>` per unfinished order, a round per
#              interval (the obvious cron-style script)
#    Figures, from the simulator's own record of each order (created,
#    finished, first_seen_done, polls): the wall time from the first order to
#    the last one seen done, the worst and mean delay between an order
#    finishing and a status reply showing it done, and the most status
#    requests an order got per interval of its life.
#    Goals: every order followed to the end, at most one status request per
#    order per poll interval, no finished order unseen for more than one
#    interval.
# 2. A 1 GiB ZIP download (zip_size = 1 GiB): dbsync_export_download(name,
#    '/path') and `curl -o file -H 'Authorization: Bearer ...'` of the same
#    URL, alternating, 3 rounds (curl first in odd rounds), each after
#    `sync` with the previous file removed; the backend's VmHWM/RssAnon
#    before and after. Goal: dbsync within 1.1x of curl, memory flat.
# Usage: bench/export_orders.sh [rounds]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ]; then
  ensure_packages
  build_and_install "$src"
  run_unprivileged "$src" bench/export_orders.sh --inside "${1:-3}"
  exit
fi
rounds=${2:-3}
ORDERS=200 T=4.5 INTERVAL=1

work=$(mktemp -d /tmp/dbsync-bench-export.XXXXXX)
trap 'stop_cluster; stop_simulator; rm -rf "$work"' EXIT
start_simulator "$work" >/dev/null
start_cluster "$work"
cat >> "$PGDATA/postgresql.conf" <<CONF
dbsync.naptime = 1
dbsync.export_poll_interval = '${INTERVAL}s'
log_statement = none
CONF
"$PG_BIN/pg_ctl" -D "$PGDATA" -w restart -l "$work/postgres.log" >/dev/null
base="http://127.0.0.1:$DBSYNC_SIM_PORT"
psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
psql_q -c "CREATE EXTENSION dbsync" \
  -c "CREATE SERVER plant FOREIGN DATA WRAPPER dbsync OPTIONS (api 'octoplant', url '$base')" \
  -c "CREATE USER MAPPING FOR CURRENT_USER SERVER plant OPTIONS (user 'versiondog', password '${DBSYNC_SIM_PASSWORD:-S3cr3t-pw}')"
sim() { curl -sS --fail -X POST "$base/_sim/octoplant/$1" >/dev/null; }
token() {
  curl -sS --fail "$base/v1/oauth2/token" -d grant_type=password -d username=versiondog \
    -d "password=${DBSYNC_SIM_PASSWORD:-S3cr3t-pw}" -d client_id=public-api \
    -d client_secret=ff99971a-f8c3-4d21-5345-f7cb021b4b54 |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}

# Summarises the simulator's record of the orders named in file $1 (one per line).
summarise() {
  curl -sS --fail "$base/_sim/octoplant/orders" | python3 -c '
import json, math, sys
names = set(open(sys.argv[1]).read().split())
orders = [o for o in json.load(sys.stdin) if o["name"] in names]
interval = float(sys.argv[2])
unseen = [o for o in orders if o["first_seen_done"] is None]
seen = [o for o in orders if o["first_seen_done"] is not None]
delays = [o["first_seen_done"] - o["finished"] for o in seen]
# Status requests per interval of the order life, up to the reply that showed it done.
rates = [o["polls"] / max(1.0, math.ceil((o["first_seen_done"] - o["created"]) / interval)) for o in seen]
wall = max(o["first_seen_done"] for o in seen) - min(o["created"] for o in orders) if seen else float("nan")
total = sum(o["polls"] for o in orders)
print(f"{len(orders)} orders, {len(seen)} seen done, {len(unseen)} never; wall {wall:.2f} s; "
      f"delay after finishing: max {max(delays):.2f} s, mean {sum(delays)/len(delays):.2f} s; "
      f"status requests per interval: max {max(rates):.2f}, total {total}")
print(f"WALL {wall:.3f} MAXDELAY {max(delays):.3f} MAXRATE {max(rates):.3f} UNSEEN {len(unseen)}")
' "$1" "$INTERVAL"
}

echo "== 1. $ORDERS orders, each done $T s after it is placed; poll interval $INTERVAL s"
sim "config?seconds=$T&zip_size=0"
# curl: the script a DBA would write.
tok=$(token)
: > "$work/curl_names"
for i in $(seq "$ORDERS"); do
  curl -sS --fail -H "Authorization: Bearer $tok" -H 'Content-Type: application/json' \
    -d '{"exportContents": {"projectTree": {}}}' "$base/v1/order" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])' >> "$work/curl_names"
done
cp "$work/curl_names" "$work/curl_open"
while [ -s "$work/curl_open" ]; do
  next=$(date +%s.%N)
  : > "$work/curl_still"
  while read -r name; do
    curl -sS --fail -H "Authorization: Bearer $tok" "$base/v1/order/$name" | grep -q '"done": true' ||
      echo "$name" >> "$work/curl_still"
  done < "$work/curl_open"
  mv "$work/curl_still" "$work/curl_open"
  sleep "$(python3 -c "import time; print(max(0, $next + $INTERVAL - time.time()))")"
done
curl_line=$(summarise "$work/curl_names")
# dbsync: the orders, then the worker.
psql_q -c "SELECT count(*) FROM (SELECT dbsync_export_order('plant', '{\"projectTree\": {}}') FROM generate_series(1, $ORDERS)) o" >/dev/null
psql_q -c "SELECT name FROM dbsync.export_order" > "$work/dbsync_names"
for i in $(seq 600); do
  [ "$(psql_q -c "SELECT count(*) FROM dbsync.export_order WHERE NOT done")" = 0 ] && break
  sleep 0.2
done
dbsync_line=$(summarise "$work/dbsync_names")
echo "curl:   ${curl_line%%$'\n'*}"
echo "dbsync: ${dbsync_line%%$'\n'*}"
read -r _ cw _ cd _ cr _ cu <<< "$(tail -1 <<< "$curl_line")"
read -r _ dw _ dd _ dr _ du <<< "$(tail -1 <<< "$dbsync_line")"
python3 -c "print(f'ratio dbsync/curl wall time: {$dw / $cw:.3f}; dbsync: max delay {$dd:.2f} s (goal: at most $INTERVAL), max {$dr:.2f} status requests per order per interval (goal: at most 1), $du never seen done')"
echo "jobs: $(psql_q -c "SELECT string_agg(state || ' ' || n, ', ') FROM (SELECT state, count(*) n FROM dbsync.job WHERE kind = 'export_poll' GROUP BY state) s")"

echo "== 2. a 1 GiB ZIP, $rounds rounds"
sim "config?seconds=0.1&zip_size=1G"
name=$(psql_q -c "SELECT name FROM dbsync_export_order('plant', '{\"projectTree\": {}}')")
psql_q -c "SELECT * FROM dbsync_export_wait('$name', poll_interval => '100 ms')" >/dev/null
tok=$(token)
pid_file=$work/backend_pid
# One psql session for every dbsync download, its backend's memory read around them.
mem() { grep -E '^(VmHWM|RssAnon)' "/proc/$1/status" | awk '{printf "%s %s kB  ", $1, $2}'; }
coproc PSQL { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 2>&1; }
ask() { echo "$1" >&"${PSQL[1]}"; read -r line <&"${PSQL[0]}"; echo "$line"; }
backend=$(ask "SELECT pg_backend_pid();")
before=$(mem "$backend")
: > "$work/t_curl"; : > "$work/t_dbsync"
run_curl() {
  sync
  TIMEFORMAT='%R'
  { time curl -sS --fail -H "Authorization: Bearer $tok" -o "$work/curl.zip" "$base/v1/order/$name/download"; } 2>> "$work/t_curl"
  [ "$(stat -c %s "$work/curl.zip")" = 1073741824 ] || { echo "curl: short file" >&2; exit 1; }
  rm -f "$work/curl.zip"
}
run_dbsync() {
  sync
  ask "SELECT extract(epoch FROM clock_timestamp() - s) FROM (SELECT clock_timestamp() s) t, LATERAL (SELECT * FROM dbsync_export_download('$name', '$work/dbsync.zip')) d;" >> "$work/t_dbsync"
  [ "$(stat -c %s "$work/dbsync.zip")" = 1073741824 ] || { echo "dbsync: short file" >&2; exit 1; }
  rm -f "$work/dbsync.zip"
}
run_dbsync; run_curl; : > "$work/t_curl"; : > "$work/t_dbsync"   # warm-up
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then run_curl; run_dbsync; else run_dbsync; run_curl; fi
done
after=$(mem "$backend")
python3 - "$work/t_curl" "$work/t_dbsync" <<'PY'
import statistics, sys
c = [float(x) for x in open(sys.argv[1]).read().split()]
d = [float(x) for x in open(sys.argv[2]).read().split()]
mb = 1073741824 / 1e6
print(f"curl -o file            median {statistics.median(c):.2f} s ({mb / statistics.median(c):.0f} MB/s), rounds: {', '.join(f'{x:.2f}' for x in c)}")
print(f"dbsync_export_download  median {statistics.median(d):.2f} s ({mb / statistics.median(d):.0f} MB/s), rounds: {', '.join(f'{x:.2f}' for x in d)}")
print(f"ratio dbsync/curl time: median {statistics.median(d) / statistics.median(c):.3f}, best {min(d) / min(c):.3f} (goal: at most 1.1)")
PY
echo "backend memory before: $before"
echo "backend memory after:  $after"
