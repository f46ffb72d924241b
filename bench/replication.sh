#!/usr/bin/env bash
# Benchmark: one million logged changes delivered to a target three ways, in
# one run, from the same source and the same changes (issue 7):
#   logical  PostgreSQL's built-in logical replication: a publication of the
#            four tables and a subscription created before the changes with
#            enabled = false, copy_data = false (its slot exists before the
#            changes); timed from ALTER SUBSCRIPTION ... ENABLE until the
#            subscriber shows the last change (a marker written by the last
#            transaction of the load), polled every 50 ms on the subscriber
#            by a procedure that commits between polls (one long transaction
#            would hold back the subscriber's xmin horizon: no HOT pruning, and
#            the apply worker walks ever longer version chains); the
#            subscription is disabled again once it has caught up;
#   dbsync   one SELECT dbsync_replication_sync(key) of a config created before
#            the changes (start_version NULL), wall time of the call; checks
#            success and the result's counts;
#   COPY     the ceiling: COPY (SELECT * FROM t) TO STDOUT | COPY t FROM STDIN
#            (two psql processes per table, the four tables one after the
#            other) of the final rows into empty tables that have their primary
#            keys, as the dbsync target has.
# Afterwards every table of the three targets must equal the source (md5 of the
# rows in key order); any difference prints FAIL and the script exits 1.
#
# Clusters (throwaway, fsync on, run as postgres): the source, with dbsync
# preloaded and wal_level = logical; the target, a plain cluster with
# pg_stat_statements, holding three databases: dbsync_tgt and logical_tgt (the
# source's initial rows, by pg_dump) and copy_tgt (the schema only).
# Schema: pgbench -i -s SCALE, plus a bigserial primary key "id" on
# pgbench_history (replication needs a key) seeded with 20,000 * SCALE rows.
# Load (both ways idle: subscription disabled, no dbsync sync), pgbench with
# CLIENTS clients, synchronous_commit off on the source (the load is not timed):
#   tpcb  @7: UPDATE accounts, tellers, branches (delta 1..5000, never 0),
#             INSERT history                                   (4 changes)
#   churn @3: DELETE a random account, DELETE a random seeded history row,
#             INSERT a new account (ids from a sequence)          (<= 3 changes)
# in rounds until fewer than 1,000 changes are missing (a round never
# overshoots), then one-row UPDATEs of pgbench_tellers, a transaction each, up
# to exactly CHANGES entries in dbsync.ilog (counted), the last one writing the
# marker. CHECKPOINT on both
# clusters before each timed phase.
# Profile (printed): CPU of the walsender and the apply worker (logical); CPU
# of the source backend running the sync and the target's statement times by
# kind from pg_stat_statements (dbsync).
#
# Usage: bench/replication.sh   (as root: builds and installs dbsync, runs as postgres)
#   REPL_BENCH_SCALE    pgbench scale of the schema (10: 1,000,000 accounts)
#   REPL_BENCH_CHANGES  logged changes delivered (1000000)
#   REPL_BENCH_CLIENTS  pgbench clients of the load (2)
#   REPL_BENCH_PORT     the source's port; the target's is the next one (random from 20000)
#   REPL_BENCH_ONE_LAYOUT  1: before the load, one session changes one row of each table, so the
#                       iLog layouts exist before pgbench's clients write; 0 (the default): the
#                       clients are the first writers, as after dbsync_track on a busy database
#                       (concurrent first writers can each register a layout of the same shape,
#                       and a replication batch ends where the layout changes)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ]; then
  ensure_packages
  build_and_install "$src"
  commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$src" diff --quiet HEAD -- src sql 2>/dev/null || commit="$commit+changes"
  run_unprivileged "$src" env ${REPL_BENCH_PORT:+REPL_BENCH_PORT=$REPL_BENCH_PORT} \
    REPL_BENCH_SCALE="${REPL_BENCH_SCALE:-10}" REPL_BENCH_CHANGES="${REPL_BENCH_CHANGES:-1000000}" \
    REPL_BENCH_CLIENTS="${REPL_BENCH_CLIENTS:-2}" REPL_BENCH_ONE_LAYOUT="${REPL_BENCH_ONE_LAYOUT:-0}" bash bench/replication.sh --inside "$commit"
  exit
fi
commit=${2:-unknown}
scale=${REPL_BENCH_SCALE:-10}
changes=${REPL_BENCH_CHANGES:-1000000}
clients=${REPL_BENCH_CLIENTS:-2}
one_layout=${REPL_BENCH_ONE_LAYOUT:-0}
sport=${REPL_BENCH_PORT:-$((20000 + RANDOM % 20000))}
tport=$((sport + 1))
seed_history=$((20000 * scale))
tables="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
declare -A keycol=([pgbench_accounts]=aid [pgbench_branches]=bid [pgbench_tellers]=tid [pgbench_history]=id)
started=$(date +%s)

work=$(mktemp -d /tmp/dbsync-bench.XXXXXX)
cleanup() {
  local d
  for d in "$work/src" "$work/tgt"; do
    [ -f "$d/postmaster.pid" ] && "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT

# Both clusters: fsync on, sized for 2 cores and 24 GiB; checkpoints only when asked.
make_cluster() {  # DIR PORT EXTRA-SETTINGS
  "$PG_BIN/initdb" -D "$1" -A trust --no-sync >/dev/null
  cat >> "$1/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$work'
port = $2
shared_buffers = 2GB
effective_cache_size = 8GB
work_mem = 32MB
maintenance_work_mem = 512MB
wal_buffers = 64MB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
random_page_cost = 1.1
$3
CONF
  "$PG_BIN/pg_ctl" -D "$1" -l "$1.log" -w start >/dev/null
}
make_cluster "$work/src" "$sport" "shared_preload_libraries = 'dbsync'
wal_level = logical
max_replication_slots = 10
max_wal_senders = 10"
make_cluster "$work/tgt" "$tport" "shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.max = 1000"

export PGHOST=$work PGUSER=$(id -un)
psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
src_q() { psql_q -p "$sport" -d postgres "$@"; }
tgt_q() { local db=$1; shift; psql_q -p "$tport" -d "$db" "$@"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\\n\", $1 }"; }
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat"; }
ilog_count() { src_q -c "SELECT count(*) FROM dbsync.ilog"; }
checkpoint() { src_q -c CHECKPOINT; tgt_q postgres -c CHECKPOINT; }

log "source on port $sport, target on port $tport; scale $scale, $changes changes, $clients clients"

# The schema and the initial rows.
"$PG_BIN/pgbench" -p "$sport" -i -q -s "$scale" postgres 2> "$work/init.log" || { cat "$work/init.log" >&2; exit 1; }
src_q <<SQL
ALTER TABLE pgbench_history ADD COLUMN id bigserial PRIMARY KEY;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime)
  SELECT 1 + i % (10 * $scale), 1 + i % $scale, 1 + i % (100000 * $scale), i % 5000, now() FROM generate_series(1, $seed_history) i;
CREATE SEQUENCE bench_new_aid START $((100000 * scale + 1));
VACUUM ANALYZE;
SQL
for db in dbsync_tgt logical_tgt copy_tgt; do tgt_q postgres -c "CREATE DATABASE $db"; done
tabargs=$(for t in $tables; do printf -- '-t %s ' "$t"; done)
"$PG_BIN/pg_dump" -p "$sport" -d postgres $tabargs > "$work/initial.sql"
"$PG_BIN/pg_dump" -p "$sport" -d postgres -s $tabargs > "$work/schema.sql"
for db in dbsync_tgt logical_tgt; do tgt_q "$db" -f "$work/initial.sql" >/dev/null; tgt_q "$db" -c "VACUUM ANALYZE"; done
tgt_q copy_tgt -f "$work/schema.sql" >/dev/null
tgt_q postgres -c "CREATE EXTENSION pg_stat_statements"

# Both ways set up before the changes.
src_q <<SQL
CREATE EXTENSION dbsync;
SELECT dbsync_track(t::regclass) FROM unnest('{$(tr ' ' , <<<"$tables")}'::text[]) t;
CREATE SERVER bench_tgt FOREIGN DATA WRAPPER dbsync
  OPTIONS (api 'postgres', host '$work', port '$tport', dbname 'dbsync_tgt', sslmode 'disable',
           connect_timeout '10s', timeout '3600s');
CREATE USER MAPPING FOR CURRENT_USER SERVER bench_tgt OPTIONS (user '$PGUSER');
CREATE PUBLICATION bench_pub FOR TABLE $(tr ' ' , <<<"$tables");
SQL
key=$(src_q -c "SELECT dbsync_replication_config_create('bench', targets => '{bench_tgt}',
  tables => '{$(tr ' ' , <<<"$tables")}', sync_interval => NULL, enabled => true, start_version => NULL)")
tgt_q logical_tgt -c "CREATE SUBSCRIPTION bench_sub CONNECTION 'host=$work port=$sport dbname=postgres user=$PGUSER'
  PUBLICATION bench_pub WITH (enabled = false, copy_data = false, create_slot = true)"
# Statement times of dbsync's session on the target.
tgt_q dbsync_tgt -c "SELECT 1" >/dev/null

# The load.
cat > "$work/tpcb.sql" <<SQL
\set aid random(1, $((100000 * scale)))
\set bid random(1, $scale)
\set tid random(1, $((10 * scale)))
\set delta random(1, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
SQL
cat > "$work/churn.sql" <<SQL
\set aid random(1, $((100000 * scale)))
\set hid random(1, $seed_history)
\set bid random(1, $scale)
BEGIN;
DELETE FROM pgbench_accounts WHERE aid = :aid;
DELETE FROM pgbench_history WHERE id = :hid;
INSERT INTO pgbench_accounts (aid, bid, abalance, filler) VALUES (nextval('bench_new_aid'), :bid, 0, 'new account');
END;
SQL
if [ "$one_layout" = 1 ]; then
  log "one change to each table in one session first (REPL_BENCH_ONE_LAYOUT=1)"
  src_q -c "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid = 1" \
    -c "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = 1" \
    -c "UPDATE pgbench_branches SET bbalance = bbalance + 1 WHERE bid = 1" \
    -c "UPDATE pgbench_history SET delta = delta + 1 WHERE id = 1"
fi
src_q -c "ALTER SYSTEM SET synchronous_commit = off" -c "SELECT pg_reload_conf()" >/dev/null
load_started=$(now)
load_txns=$([ "$one_layout" = 1 ] && echo 4 || echo 0)
count=$(ilog_count)
while [ $((changes - count)) -gt 1000 ]; do
  per_client=$(( (changes - count - 500) / 4 / clients ))
  [ "$per_client" -ge 1 ] || break
  log "load: $count changes logged, pgbench -t $per_client -c $clients"
  "$PG_BIN/pgbench" -p "$sport" -n -f "$work/tpcb.sql@7" -f "$work/churn.sql@3" -c "$clients" -j "$clients" \
    -t "$per_client" postgres > "$work/pgbench.out" 2>&1 || { cat "$work/pgbench.out" >&2; exit 1; }
  load_txns=$((load_txns + per_client * clients))
  count=$(ilog_count)
done
src_q -c "ALTER SYSTEM RESET synchronous_commit" -c "SELECT pg_reload_conf()" >/dev/null
rest=$((changes - count))
[ "$rest" -ge 1 ] || { echo "the load logged $count changes, more than $changes" >&2; exit 1; }
log "load: $count changes logged, $rest one-row transactions to go"
{
  for i in $(seq 1 $((rest - 1))); do
    echo "UPDATE pgbench_tellers SET tbalance = tbalance + 1 WHERE tid = $((1 + i % (10 * scale)));"
  done
  echo "UPDATE pgbench_tellers SET filler = 'bench end' WHERE tid = 1;"
} | src_q >/dev/null
load_txns=$((load_txns + rest))
load_secs=$(calc "$(now) - $load_started")
count=$(ilog_count)
[ "$count" -eq "$changes" ] || { echo "FAIL: dbsync.ilog holds $count entries, not $changes" >&2; exit 1; }
read -r n_ins n_upd n_del < <(src_q -F ' ' -c "SELECT count(*) FILTER (WHERE op = 'I'), count(*) FILTER (WHERE op = 'U'),
  count(*) FILTER (WHERE op = 'D') FROM dbsync.ilog")
wal_bytes=$(src_q -c "SELECT pg_current_wal_lsn() - confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'bench_sub'")
layouts=$(src_q -c "SELECT string_agg(format('%s %s', relid::regclass, n), ', ' ORDER BY relid::regclass::text)
  FROM (SELECT relid, count(*) AS n FROM dbsync.ilog_layout GROUP BY relid) l")
dup_layouts=$(src_q -c "SELECT count(*) - count(DISTINCT (relid, signature)) FROM dbsync.ilog_layout")
log "load done in $load_secs s: $count changes ($n_ins inserts, $n_upd updates, $n_del deletes), $wal_bytes bytes of WAL"

# 1. Built-in logical replication.
# The wait: a procedure that commits between polls, so that it never holds back the
# subscriber's xmin horizon (a DO loop, one transaction, would keep its snapshot and
# stop HOT pruning of the rows the apply worker updates again and again).
tgt_q logical_tgt <<'SQL'
CREATE PROCEDURE bench_wait_end() LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz := clock_timestamp() + interval '2 hours';
BEGIN
  WHILE NOT EXISTS (SELECT FROM pgbench_tellers WHERE tid = 1 AND filler = 'bench end') LOOP
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'the subscriber did not catch up in 2 hours';
    END IF;
    COMMIT;
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
SQL
checkpoint
log "logical replication: enabling the subscription"
t0=$(now)
tgt_q logical_tgt -c "ALTER SUBSCRIPTION bench_sub ENABLE"
tgt_q logical_tgt -c "CALL bench_wait_end()"
logical_secs=$(calc "$(now) - $t0")
sender=$(src_q -c "SELECT active_pid FROM pg_replication_slots WHERE slot_name = 'bench_sub'")
applier=$(tgt_q logical_tgt -c "SELECT pid FROM pg_stat_subscription WHERE subname = 'bench_sub' AND relid IS NULL")
sender_cpu=$(cpu_of "$sender"); applier_cpu=$(cpu_of "$applier")
tgt_q logical_tgt -c "ALTER SUBSCRIPTION bench_sub DISABLE"
log "logical replication: $logical_secs s (walsender CPU $sender_cpu s, apply worker CPU $applier_cpu s)"

# 2. dbsync.
checkpoint
tgt_q postgres -c "SELECT pg_stat_statements_reset()" >/dev/null
log "dbsync: dbsync_replication_sync($key)"
t0=$(now)
fail=0
if src_q > "$work/dbsync.out" 2> "$work/dbsync.err" <<SQL
SELECT dbsync_replication_sync($key) AS result \gset
SELECT pg_read_file('/proc/self/stat') AS stat \gset
\echo :result
\echo :stat
SQL
then
  dbsync_secs=$(calc "$(now) - $t0")
  result=$(sed -n 1p "$work/dbsync.out")
  dbsync_cpu=$(sed -n 2p "$work/dbsync.out" | awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }')
  IFS='|' read -r ok errmsg ms r_ins r_upd r_del r_tx r_entries < <(src_q -F '|' -v r="$result" <<'SQL'
SELECT j->>'success', coalesce(nullif(j->>'errorMessage', ''), '-'), j->>'executionTime',
  j->'stats'->>'numInserts', j->'stats'->>'numUpdates', j->'stats'->>'numDeletes',
  j->'stats'->>'numTransactionLogs', j->'stats'->>'numTargetEntries'
FROM (SELECT (:'r'::jsonb)->0 AS j) s;
SQL
)
  log "dbsync: $dbsync_secs s (success $ok, backend CPU $dbsync_cpu s)"
else
  # The COPY and the checks of the other targets still run (the source may need to recover first).
  dbsync_secs=""
  ok=false
  errmsg="the call raised an error: $(tr '\n' ' ' < "$work/dbsync.err")"
  log "dbsync: FAIL, $errmsg"
  for _ in $(seq 1 120); do "$PG_BIN/pg_isready" -q -h "$work" -p "$sport" && break; sleep 0.5; done
fi
# The target's statements by kind (dbsync's session only: pg_stat_statements was reset).
tgt_q postgres -F '|' -c "SELECT CASE WHEN query ~* '^copy' THEN 'COPY into staging'
      WHEN query ~* '^create temp' THEN 'CREATE TEMP TABLE (staging)'
      WHEN query ~* '^delete' THEN 'DELETE ... USING staging'
      WHEN query ~* '^update dbsync_replica' THEN 'UPDATE dbsync_replica.applied'
      WHEN query ~* '^update' THEN 'UPDATE ... FROM staging'
      WHEN query ~* '^insert into dbsync_replica' THEN 'INSERT INTO dbsync_replica.applied'
      WHEN query ~* '^insert' THEN 'INSERT ... ON CONFLICT from staging'
      WHEN query ~* '^truncate' THEN 'TRUNCATE staging'
      WHEN query ~* '^commit' THEN 'COMMIT'
      ELSE 'other' END AS kind, sum(calls), round(sum(total_exec_time)::numeric / 1000, 3), sum(rows)
  FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = 'dbsync_tgt'
  GROUP BY 1 ORDER BY 3 DESC" > "$work/statements.out"

# 3. The ceiling: COPY of the final rows into the empty tables.
checkpoint
log "COPY of the final rows"
t0=$(now)
for t in $tables; do
  src_q -c "COPY (SELECT * FROM $t) TO STDOUT" | tgt_q copy_tgt -c "COPY $t FROM STDIN"
done
copy_secs=$(calc "$(now) - $t0")
copy_rows=$(src_q -c "SELECT $(for t in $tables; do printf '(SELECT count(*) FROM %s) + ' "$t"; done) 0")
log "COPY: $copy_secs s"

# The three targets against the source.
digest() {  # PORT DB TABLE
  psql_q -p "$1" -d "$2" -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(t::text), '' ORDER BY ${keycol[$3]})), '-') FROM $3 t"
}
dbs="logical_tgt copy_tgt"
[ -n "$dbsync_secs" ] && dbs="logical_tgt dbsync_tgt copy_tgt"
for t in $tables; do
  want=$(digest "$sport" postgres "$t")
  for db in $dbs; do
    got=$(digest "$tport" "$db" "$t")
    if [ "$got" != "$want" ]; then
      echo "FAIL: $db.$t differs from the source: $got rows/md5, source $want"
      fail=1
    fi
  done
done
if [ "$ok" != true ]; then
  echo "FAIL: dbsync_replication_sync did not succeed: $errmsg"; fail=1
  if grep -q 'terminated by signal' "$work/src.log"; then
    echo "the source's log:"; grep -B2 -A2 'terminated by signal' "$work/src.log" | cut -c1-300
  fi
elif [ "$((r_ins + r_upd + r_del))" -ne "$changes" ]; then
  echo "FAIL: dbsync delivered $r_ins + $r_upd + $r_del entries, not $changes"; fail=1
fi

# The report.
echo
echo "dbsync replication benchmark: commit $commit, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'machine: %s cores, %s, %s GiB; %s; load average %s\n' "$(nproc)" \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  "$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" "$(src_q -c "SELECT version()" | cut -d, -f1)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "both clusters: fsync on, shared_buffers 2GB, max_wal_size 16GB; subscription synchronous_commit off (its default)"
printf 'schema: pgbench scale %s (%s accounts), history seeded with %s rows (bigserial key)\n' "$scale" \
  "$((100000 * scale))" "$seed_history"
printf 'changes: %s in dbsync.ilog (%s inserts, %s updates, %s deletes), %s source transactions, %s MB of WAL; load %.1f s\n' \
  "$count" "$n_ins" "$n_upd" "$n_del" "$load_txns" "$((wal_bytes / 1000000))" "$load_secs"
printf 'iLog layouts per table: %s' "$layouts"
[ "$dup_layouts" -gt 0 ] && printf ' (%s duplicate layouts of the same shape: concurrent first writers)' "$dup_layouts"
echo
echo
printf '%-44s %10s %14s\n' "way" "seconds" "changes/s"
printf '%-44s %10.2f %14.0f\n' "logical replication (enable to caught up)" "$logical_secs" "$(calc "$changes / $logical_secs")"
if [ -n "$dbsync_secs" ]; then
  printf '%-44s %10.2f %14.0f\n' "dbsync_replication_sync (one call)" "$dbsync_secs" "$(calc "$changes / $dbsync_secs")"
else
  printf '%-44s %10s\n' "dbsync_replication_sync (one call)" "FAIL"
fi
printf '%-44s %10.2f %14s\n' "COPY of the final rows ($copy_rows rows)" "$copy_secs" "-"
echo
if [ -n "$dbsync_secs" ]; then
  printf 'dbsync / logical  %6.3f   goal < 1     %s\n' "$(calc "$dbsync_secs / $logical_secs")" \
    "$(awk "BEGIN { print ($dbsync_secs < $logical_secs) ? \"met\" : \"missed\" }")"
  printf 'dbsync / COPY     %6.3f   goal <= 2    %s\n' "$(calc "$dbsync_secs / $copy_secs")" \
    "$(awk "BEGIN { print ($dbsync_secs <= 2 * $copy_secs) ? \"met\" : \"missed\" }")"
else
  echo "dbsync / logical  -        goal < 1     FAIL (no dbsync time)"
  echo "dbsync / COPY     -        goal <= 2    FAIL (no dbsync time)"
fi
echo
echo "logical: walsender CPU $sender_cpu s, apply worker CPU $applier_cpu s"
if [ -n "$dbsync_secs" ]; then
  echo "dbsync: executionTime $ms ms; entries $r_ins inserts, $r_upd updates, $r_del deletes; $r_tx transactions;"
  echo "  $r_entries rows written on the target after folding; source backend CPU $dbsync_cpu s"
  stmt_secs=$(awk -F'|' '{ s += $3 } END { printf "%.2f", s }' "$work/statements.out")
  echo "  of its $(printf '%.2f' "$dbsync_secs") s: target statements $stmt_secs s, source backend CPU $dbsync_cpu s (they overlap: the source folds the next batch while the target applies one)"
  echo "  target statements (pg_stat_statements, dbsync_tgt): kind | calls | seconds | rows"
  sed 's/^/    /' "$work/statements.out"
fi
if grep -q 'dbsync:' "$work/src.log"; then
  echo "  the source's log about dbsync:"
  grep 'dbsync:' "$work/src.log" | cut -c1-600 | sed 's/^/    /'
fi
[ "$fail" -eq 0 ] && echo "check: the three targets equal the source (rows and md5 of every table)"
echo "run time: $(( $(date +%s) - started )) s"
exit "$fail"
