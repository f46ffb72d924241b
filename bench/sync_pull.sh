#!/usr/bin/env bash
# Benchmark: one million changes pulled from the simulator into staging, with
# the records they touch, three ways in one run:
#   ceiling   the curl command line fetching the same change pages and record
#             batches dbsync requests, over one kept-alive connection, no
#             database work;
#   baseline  what a DBA would script: the same URLs through curl | jq (TSV) |
#             psql COPY into a staging table, then INSERT into a change log and
#             INSERT ... ON CONFLICT into current records (tables like dbsync's);
#   dbsync    a subscription (page_size 1000) read by SELECT * FROM
#             dbsync_changes_pull('srv') until the cursor is at the end; checks
#             1,000,000 rows in dbsync.change and reads the backend's VmHWM;
#             the same with max_pages => 100 (a transaction per call).
# Then one run by the background worker. Prints changes/s, the ratios, backend
# CPU time and peak RSS. Usage: bench/sync_pull.sh [rounds]   (median of the rounds)
#
# The log: company live0 grown by 1,000,000 changes (POST /_sim/append) after
# the subscription's initial load, so the subscription reads all of them from
# its cursor; the simulator runs with --precompute gen1000000, whose pinned
# pages are the ones this log serves (a change's text depends on its index
# only). Generated logs cycle over five evidences, 200,000 changes each; four
# would need an evidence filter, whose pages are not precomputed.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ]; then
  ensure_packages jq
  build_and_install "$src"
  run_unprivileged "$src" bench/sync_pull.sh --inside "${1:-1}"
  exit
fi
rounds=${2:-1}
changes=${DBSYNC_BENCH_CHANGES:-1000000}  # other values for trying the script out only
company=live0
pw=${DBSYNC_SIM_PASSWORD:-S3cr3t-pw}

work=$(mktemp -d /tmp/dbsync-bench.XXXXXX)
sampler=""
trap '[ -n "$sampler" ] && kill "$sampler" 2>/dev/null; stop_cluster; stop_simulator; rm -rf "$work"' EXIT

# The simulator as start_simulator starts it, plain HTTP only, with the pages
# of a million changes built before it answers.
log "starting the simulator (precomputing gen$changes)"
python3 test/sim/dbsync_sim.py --port 0 --port-file "$work/sim.port" --log "$work/sim.log" \
  --user api --password "$pw" --precompute "gen$changes" &
SIM_PID=$!
for _ in $(seq 1 1200); do
  [ -s "$work/sim.port" ] && break
  kill -0 "$SIM_PID" 2>/dev/null || { echo "the API simulator did not start" >&2; exit 1; }
  sleep 0.1
done
[ -s "$work/sim.port" ] || { echo "the API simulator did not start in 120 s" >&2; exit 1; }
DBSYNC_SIM_PORT=$(cat "$work/sim.port")
base="http://127.0.0.1:$DBSYNC_SIM_PORT"
start_cluster "$work"
# The worker serves this database (used by the one worker run at the end).
echo "dbsync.databases = 'postgres'" >> "$PGDATA/postgresql.conf"
"$PG_BIN/pg_ctl" -D "$PGDATA" reload >/dev/null

psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
sim_post() { curl -sS --fail -o /dev/null -X POST "$base/_sim/$1"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\\n\", $1 }"; }

psql_q -c "CREATE EXTENSION dbsync" \
  -c "CREATE SERVER srv FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url '$base', company '$company')" \
  -c "CREATE USER MAPPING FOR CURRENT_USER SERVER srv OPTIONS (user 'api', password '$pw')"

# The baseline's tables: dbsync.change and dbsync.record without the subscription.
psql_q <<'SQL'
CREATE SCHEMA bl;
CREATE TABLE bl.change (
    version      bigint PRIMARY KEY,
    evidence     text NOT NULL,
    operation    text NOT NULL CHECK (operation IN ('create', 'update', 'delete')),
    changed_at   timestamp NOT NULL,
    record_id    bigint NOT NULL,
    external_ids text[] NOT NULL,
    pulled_at    timestamptz NOT NULL DEFAULT now());
CREATE INDEX ON bl.change (evidence, record_id);
CREATE TABLE bl.record (
    evidence   text NOT NULL,
    record_id  bigint NOT NULL,
    version    bigint NOT NULL,
    deleted    boolean NOT NULL DEFAULT false,
    payload    jsonb,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (evidence, record_id));
SQL

# A fresh subscription whose initial load is done (live0 has no records), then
# the million changes on the server. Disabled: the worker leaves it to SQL.
fresh_subscription() {
  psql_q -c "TRUNCATE dbsync.change, dbsync.record" \
    -c "SELECT dbsync_unsubscribe(server) FROM dbsync.subscription" >/dev/null
  sim_post reset
  psql_q -c "SELECT dbsync_subscribe('srv', page_size => 1000, enabled => false)" \
    -c "SELECT outcome FROM dbsync_changes_pull('srv')" >/dev/null
  sim_post "append?company=$company&count=$changes"
  psql_q -c "CHECKPOINT"
}

fresh_subscription
cursor0=$(psql_q -c "SELECT cursor_version FROM dbsync.subscription")

# The URLs dbsync requests, from the simulator's ground truth (as
# src/sync_round.c does it): pages of 1000 from the cursor, following next;
# per page, each record's last operation wins; the records not deleted, per
# evidence (in strcmp order), in id order, in batches of at most 200.
curl -sS --fail "$base/_sim/log?company=$company&start=$cursor0" > "$work/truth.json"
python3 - "$work/truth.json" "$base" "$company" "$cursor0" "$work" <<'PY'
import json, sys
from urllib.parse import quote
truth, base, company, cursor, work = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
log = json.load(open(truth))["changes"]
page_size, per_request = 1000, 200
urls, start = [], cursor
for p in range(0, max(len(log), 1), page_size):
    page = log[p:p + page_size]
    urls.append(f"/c/{quote(company)}/changes.json?limit={page_size}&start={start}")
    last = {}
    for version, evidence, operation, rid in page:
        key = (evidence.encode(), rid)
        if key not in last or last[key][0] < version:
            last[key] = (version, operation)
    for ev in sorted({k[0] for k in last}):
        ids = sorted(rid for (e, rid), (v, op) in last.items() if e == ev and op != "delete")
        for b in range(0, len(ids), per_request):
            urls.append(f"/c/{quote(company)}/{quote(ev.decode(), safe='')}/(id%20in%20("
                        + ",".join(map(str, ids[b:b + per_request]))
                        + ")).json?limit=0&detail=full")
    if page:
        start = page[-1][0] + 1
with open(f"{work}/targets", "w") as f:
    f.write("".join(u + "\n" for u in urls))
with open(f"{work}/urls.cfg", "w") as f:
    f.write("".join(f'url = "{base}{u}"\n' for u in urls))
PY
end_cursor=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['changes'][-1][0] + 1)" "$work/truth.json")
npages=$(grep -c '/changes.json' "$work/targets")
nbatches=$(grep -vc '/changes.json' "$work/targets")

curl_all() { curl -sS --fail --globoff -u "api:$pw" -H 'Accept: application/json' --config "$work/urls.cfg"; }

# (a) the transfer ceiling.
run_ceiling() { curl_all | wc -c > "$work/bytes"; }

# (b) the scripted baseline: one pipeline, one transaction.
cat > "$work/tsv.jq" <<'JQ'
.winstrom as $w
| if $w | has("changes") then
    $w.changes[]
    | ["c", .["@in-version"], .["@evidence"], .["@operation"], .["@timestamp"], .id,
       "{" + (.["external-ids"] | map("\"" + . + "\"") | join(",")) + "}", null]
  else
    $w | to_entries[] | select(.value | type == "array") | .key as $ev
    | .value[] | ["r", null, $ev, null, null, .id, null, tojson]
  end
| @tsv
JQ
run_baseline() {
  psql_q -c "TRUNCATE bl.change, bl.record"
  curl_all | jq -r -f "$work/tsv.jq" | psql_q -1 \
    -c "CREATE TEMP TABLE stage (n bigserial, kind text, version bigint, evidence text, operation text,
          changed_at timestamp, record_id bigint, external_ids text[], payload text)" \
    -c "COPY stage (kind, version, evidence, operation, changed_at, record_id, external_ids, payload)
          FROM STDIN WITH (NULL '')" \
    -c "INSERT INTO bl.change (version, evidence, operation, changed_at, record_id, external_ids)
          SELECT version, evidence, operation, changed_at, record_id, external_ids FROM stage WHERE kind = 'c'" \
    -c "INSERT INTO bl.record AS r (evidence, record_id, version, deleted, payload)
          SELECT c.evidence, c.record_id, c.version, c.operation = 'delete', p.payload::jsonb
            FROM (SELECT DISTINCT ON (evidence, record_id) evidence, record_id, version, operation
                    FROM stage WHERE kind = 'c' ORDER BY evidence, record_id, version DESC) c
            LEFT JOIN (SELECT DISTINCT ON (evidence, record_id) evidence, record_id, payload
                         FROM stage WHERE kind = 'r' ORDER BY evidence, record_id, n DESC) p
                   USING (evidence, record_id)
          ON CONFLICT (evidence, record_id) DO UPDATE
            SET version = excluded.version, deleted = excluded.deleted,
                payload = coalesce(excluded.payload, r.payload), updated_at = now()
            WHERE r.version <= excluded.version"
  [ "$(psql_q -c "SELECT count(*) FROM bl.change")" = "$changes" ] ||
    { echo "baseline: bl.change does not have $changes rows" >&2; return 1; }
}

# (c) dbsync: one session calls dbsync_changes_pull until a call says done;
# reads its backend's wall and CPU time, its rows and its memory.
clk=$(getconf CLK_TCK)
backend_cpu="(SELECT (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint) / $clk.0
                FROM pg_read_file('/proc/' || pg_backend_pid() || '/stat') s)"
cat > "$work/dbsync.sql" <<SQL
SELECT extract(epoch FROM clock_timestamp()) AS t0, $backend_cpu AS cpu0 \gset
\ir pull.sql
SELECT extract(epoch FROM clock_timestamp()) - :t0 AS seconds, $backend_cpu - :cpu0 AS cpu \gset
\echo seconds=:seconds
\echo cpu=:cpu
SELECT 'rows=' || count(*) FROM dbsync.change;
SELECT 'mem=' || string_agg(split_part(l, ':', 1) || '=' || (regexp_match(l, '[0-9]+'))[1], ' ')
  FROM regexp_split_to_table(pg_read_file('/proc/' || pg_backend_pid() || '/status'), '\n') l
 WHERE l ~ '^(VmHWM|RssAnon|RssFile|RssShmem):';
SQL
# Samples the private memory (RssAnon) of a process until stop_sampler exists.
# Usage: sample_anon 'SQL giving its pid' (polled until it gives one)
sample_anon() {
  local pid="" peak=0 v
  while [ -d "$work" ] && [ ! -e "$work/stop_sampler" ]; do
    if [ -z "$pid" ]; then
      pid=$(psql_q -c "$1" || true)
    elif v=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$v" ]; then
      [ "$v" -gt "$peak" ] && peak=$v
    fi
    sleep 0.1
  done
  echo "$peak" > "$work/anon_peak"
}
# Usage: run_dbsync NAME 'arguments of dbsync_changes_pull'
run_dbsync() {
  local name=$1 mark
  cat > "$work/pull.sql" <<SQL
SELECT outcome <> 'done' AS more FROM dbsync_changes_pull($2) \gset
\if :more
\ir pull.sql
\endif
SQL
  fresh_subscription
  mark=$(wc -l < "$work/sim.log")
  rm -f "$work/stop_sampler"
  sample_anon "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbsync-bench'" & sampler=$!
  PGAPPNAME=dbsync-bench psql_q -f "$work/dbsync.sql" > "$work/dbsync.out"
  touch "$work/stop_sampler"; wait "$sampler"; sampler=""
  grep -q "^rows=$changes\$" "$work/dbsync.out" ||
    { echo "dbsync: dbsync.change does not have $changes rows" >&2; cat "$work/dbsync.out" >&2; return 1; }
  # The requests dbsync made are exactly the ceiling's.
  tail -n +"$((mark + 1))" "$work/sim.log" | awk '$1 == "GET" && $2 ~ "^/c/" {print $2}' > "$work/dbsync_targets"
  cmp -s "$work/dbsync_targets" "$work/targets" ||
    { echo "dbsync requested other URLs than the ceiling's list" >&2; diff "$work/dbsync_targets" "$work/targets" | head >&2; return 1; }
  sed -n 's/^seconds=//p' "$work/dbsync.out" >> "$work/t_$name"
  sed -n 's/^cpu=//p' "$work/dbsync.out" >> "$work/cpu_$name"
  echo "$(sed -n 's/^mem=//p' "$work/dbsync.out") AnonPeak=$(cat "$work/anon_peak")" > "$work/mem_$name"
}

log "pages: $npages, record batches: $nbatches, cursor $cursor0 -> $end_cursor"
for f in ceiling baseline pull pull100; do : > "$work/t_$f"; : > "$work/cpu_$f"; done
run_ceiling  # warm-up (record texts, token tables)
for r in $(seq 1 "$rounds"); do
  log "round $r of $rounds"
  t0=$(now); run_ceiling; t1=$(now); calc "$t1 - $t0" >> "$work/t_ceiling"
  t0=$(now); run_baseline; t1=$(now); calc "$t1 - $t0" >> "$work/t_baseline"
  run_dbsync pull "'srv'"
  run_dbsync pull100 "'srv', max_pages => 100"
done
baseline_records=$(psql_q -c "SELECT count(*) || ' (' || count(*) FILTER (WHERE deleted) || ' deleted)' FROM bl.record")
dbsync_records=$(psql_q -c "SELECT count(*) || ' (' || count(*) FILTER (WHERE deleted) || ' deleted)' FROM dbsync.record")

# One run by the background worker (a transaction per page, 100 pages per job
# run): enable the subscription, wait for the cursor to reach the end. Its time
# ends at the last page's pulled_at (the start of that page's transaction).
log "worker run"
fresh_subscription
t0=$(psql_q -c "SELECT dbsync_subscription_alter('srv', enabled => true, pull_interval => '1 second')" \
            -c "SELECT extract(epoch FROM clock_timestamp())" | tail -1)
rm -f "$work/stop_sampler"
sample_anon "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbsync job runner'" & sampler=$!
runner=""
for _ in $(seq 1 6000); do
  [ -z "$runner" ] && runner=$(psql_q -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'dbsync job runner'")
  [ "$(psql_q -c "SELECT cursor_version FROM dbsync.subscription")" = "$end_cursor" ] && break
  sleep 0.1
done
touch "$work/stop_sampler"; wait "$sampler"; sampler=""
[ "$(psql_q -c "SELECT cursor_version FROM dbsync.subscription")" = "$end_cursor" ] ||
  { echo "the worker did not reach the end in 10 minutes" >&2; exit 1; }
tw=$(psql_q -c "SELECT extract(epoch FROM max(pulled_at)) - $t0 FROM dbsync.change")
worker_rows=$(psql_q -c "SELECT count(*) FROM dbsync.change")
# The runner stays (its job is due again within a second): its peak and CPU time.
awk '/^(VmHWM|RssAnon|RssFile|RssShmem):/ {sub(":", "", $1); printf "%s=%s ", $1, $2}' "/proc/$runner/status" > "$work/mem_worker"
echo "AnonPeak=$(cat "$work/anon_peak")" >> "$work/mem_worker"
cpu_worker=$(awk -v clk="$clk" '{print ($14 + $15) / clk}' "/proc/$runner/stat")
psql_q -c "SELECT dbsync_subscription_alter('srv', enabled => false)"
[ "$worker_rows" = "$changes" ] || { echo "worker: dbsync.change has $worker_rows rows" >&2; exit 1; }

median() { sort -g "$1" | awk 'NF {a[++n]=$1} END {print (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2}'; }
tc=$(median "$work/t_ceiling"); tb=$(median "$work/t_baseline")
td=$(median "$work/t_pull"); td100=$(median "$work/t_pull100")
line() { printf '%-50s %7.2f s  %8.0f changes/s%s\n' "$1" "$2" "$(calc "$changes / $2")" "${3:-}"; }
cpu() { printf ', backend CPU %.1f s' "$1"; }
mem() {  # VmHWM (the goal's measure), and what the process holds at the end
  local f="$work/mem_$2"
  mb() { awk -v k="$1" '{for (i = 1; i <= NF; i++) if (split($i, kv, "=") == 2 && kv[1] == k) printf "%.1f", kv[2] / 1024}' "$f"; }
  printf '  %-20s VmHWM %5s MB; at the end RssShmem %5s MB (shared buffers it touched), RssFile %4s MB, RssAnon %4s MB (private; sampled peak %4s MB)\n' \
    "$1" "$(mb VmHWM)" "$(mb RssShmem)" "$(mb RssFile)" "$(mb RssAnon)" "$(mb AnonPeak)"
}
echo "changes: $changes (5 evidences x $((changes / 5))) in $npages pages of 1000 + $nbatches record batches (<= 200 ids),"
echo "         $(cat "$work/bytes") bytes; rounds: $rounds (median)"
line "(a) ceiling: curl, one connection" "$tc"
line "(b) baseline: curl | jq | COPY + upsert" "$tb"
line "(c) dbsync_changes_pull('srv'), until done" "$td" "$(cpu "$(median "$work/cpu_pull")")"
line "    dbsync_changes_pull(max_pages => 100) calls" "$td100" "$(cpu "$(median "$work/cpu_pull100")")"
line "    the background worker (one run)" "$tw" "$(cpu "$cpu_worker")"
printf 'ratio dbsync/ceiling time:   %5.2f (goal: at most 1.5); max_pages 100: %.2f, worker: %.2f\n' \
  "$(calc "$td / $tc")" "$(calc "$td100 / $tc")" "$(calc "$tw / $tc")"
printf 'ratio dbsync/baseline time:  %5.2f (goal: below 1);     max_pages 100: %.2f, worker: %.2f\n' \
  "$(calc "$td / $tb")" "$(calc "$td100 / $tb")" "$(calc "$tw / $tb")"
echo "records: dbsync $dbsync_records, baseline $baseline_records"
echo "peak RSS of the backend doing the work (goal: under 100 MB; last round):"
mem "dbsync_changes_pull" pull
mem "max_pages => 100" pull100
mem "worker" worker
