#!/usr/bin/env bash
# Benchmark: the cost of the iLog triggers, three modes side by side in one run,
# on a throwaway PostgreSQL 15 cluster of its own (fsync and synchronous_commit
# left at their defaults, on; the settings used are printed):
#   none      no triggers;
#   plpgsql   the hand-written baseline: a PL/pgSQL AFTER ROW trigger
#             (INSERT/UPDATE/DELETE) inserting into bl_log (bigserial primary
#             key, table name, op, to_jsonb(OLD), to_jsonb(NEW), now(),
#             current_user, txid_current());
#   dbsync    SELECT dbsync_track(t) on the same tables.
# 1. pgbench scale 10, 2 clients, 30 s a run, on all four pgbench tables
#    (pgbench_history has no key), the default tpcb-like script and -N; before
#    each run: pgbench -i -s 10 (dropping and recreating the tables), the logs
#    emptied (TRUNCATE bl_log, dbsync.ilog, dbsync.ilog_xact), the mode's
#    triggers, CHECKPOINT; then pgbench -n. TPS and the ratio to no triggers
#    (with ILOG_BENCH_ROUNDS > 1: every mode again each round, median TPS).
# 2. One 200,000-row statement each on a plain table (id int primary key, a int,
#    b text of 20 characters, c timestamptz): INSERT ... SELECT generate_series,
#    UPDATE of one column of every row, DELETE of every row; timed with
#    clock_timestamp() in one psql session (each statement commits on its own,
#    the commit is in its time); VACUUM and CHECKPOINT between statements.
#    Microseconds per row over no trigger; median of the rounds.
# 3. Log bytes per pgbench row after the tpcb-like run: the size
#    (pg_total_relation_size) of every partition of dbsync.ilog and
#    dbsync.ilog_xact over the rows of dbsync.ilog; bl_log's size over its rows.
# Goals: dbsync at 0.90 or more of no triggers on tpcb-like, under 3 us/row on
# the bulk statements, at most 200 log bytes per pgbench row.
#
# Usage: bench/ilog.sh   (as root: builds and installs dbsync, runs as postgres)
#   ILOG_BENCH_SECONDS  pgbench duration of each run (30)
#   ILOG_BENCH_ROUNDS   rounds of the pgbench runs, median reported (1)
#   ILOG_BULK_ROWS      rows of the bulk statements (200000)
#   ILOG_BULK_ROUNDS    rounds of the bulk statements, median reported (3)
#   ILOG_PORT           the cluster's port (a random one from 20000)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ]; then
  ensure_packages
  build_and_install "$src"
  commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$src" diff --quiet HEAD -- src sql 2>/dev/null || commit="$commit+changes"
  run_unprivileged "$src" env ${ILOG_PORT:+ILOG_PORT=$ILOG_PORT} ILOG_BENCH_SECONDS="${ILOG_BENCH_SECONDS:-30}" ILOG_BENCH_ROUNDS="${ILOG_BENCH_ROUNDS:-1}" \
    ILOG_BULK_ROWS="${ILOG_BULK_ROWS:-200000}" ILOG_BULK_ROUNDS="${ILOG_BULK_ROUNDS:-3}" \
    bash bench/ilog.sh --inside "$commit"
  exit
fi
commit=${2:-unknown}
seconds=${ILOG_BENCH_SECONDS:-30}
bench_rounds=${ILOG_BENCH_ROUNDS:-1}
rows=${ILOG_BULK_ROWS:-200000}
rounds=${ILOG_BULK_ROUNDS:-3}
scale=10
clients=2
modes="none plpgsql dbsync"
tables="pgbench_accounts pgbench_branches pgbench_tellers pgbench_history"
started=$(date +%s)

work=$(mktemp -d /tmp/dbsync-bench.XXXXXX)
trap 'stop_cluster; rm -rf "$work"' EXIT

# The cluster: not test/lib.sh's start_cluster, which turns fsync off. Sized
# for 2 cores and 24 GiB; checkpoints only when asked (before each run).
export PGDATA=$work/data PGHOST=$work PGPORT=${ILOG_PORT:-$((20000 + RANDOM % 20000))} PGUSER=$(id -un)
export PGDATABASE=postgres
"$PG_BIN/initdb" -D "$PGDATA" -A trust --no-sync >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
shared_preload_libraries = 'dbsync'
listen_addresses = ''
unix_socket_directories = '$work'
port = $PGPORT
shared_buffers = 4GB
effective_cache_size = 16GB
work_mem = 32MB
maintenance_work_mem = 1GB
wal_buffers = 64MB
max_wal_size = 16GB
min_wal_size = 1GB
checkpoint_timeout = 30min
checkpoint_completion_target = 0.9
random_page_cost = 1.1
CONF
"$PG_BIN/pg_ctl" -D "$PGDATA" -l "$work/postgres.log" -w start >/dev/null

psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
calc() { awk "BEGIN { printf \"%.6f\\n\", $1 }"; }
median() { tr ' ' '\n' <<<"$1" | sort -g | awk 'NF {a[++n]=$1} END {print (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2}'; }

psql_q <<'SQL'
CREATE EXTENSION dbsync;
-- The hand-written baseline.
CREATE TABLE bl_log (
    id         bigserial PRIMARY KEY,
    table_name text NOT NULL,
    op         text NOT NULL,
    old_row    jsonb,
    new_row    jsonb,
    logged_at  timestamptz NOT NULL,
    username   name NOT NULL,
    txid       bigint NOT NULL);
CREATE FUNCTION bl_log_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO bl_log (table_name, op, old_row, new_row, logged_at, username, txid)
    VALUES (TG_TABLE_NAME, TG_OP, to_jsonb(OLD), to_jsonb(NEW), now(), current_user, txid_current());
    RETURN NULL;
END
$$;
SQL

# Usage: triggers MODE TABLE...   (on tables that have none)
triggers() {
  local mode=$1 t; shift
  for t in "$@"; do
    case $mode in
      none) ;;
      plpgsql) psql_q -c "CREATE TRIGGER bl_log AFTER INSERT OR UPDATE OR DELETE ON $t
                            FOR EACH ROW EXECUTE FUNCTION bl_log_trigger()" ;;
      dbsync) psql_q -c "SELECT dbsync_track('$t')" >/dev/null ;;
    esac
  done
}
empty_logs() {
  psql_q -c "TRUNCATE bl_log, dbsync.ilog, dbsync.ilog_xact" -c "VACUUM ANALYZE bl_log, dbsync.ilog, dbsync.ilog_xact"
}
# Log sizes: "bytes rows" of a mode's log.
log_size() {
  case $1 in
    none) echo "0 0" ;;
    plpgsql) psql_q -F ' ' -c "SELECT pg_total_relation_size('bl_log'), (SELECT count(*) FROM bl_log)" ;;
    dbsync) psql_q -F ' ' -c "SELECT (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('dbsync.ilog'))
                                    + (SELECT sum(pg_total_relation_size(relid)) FROM pg_partition_tree('dbsync.ilog_xact')),
                                    (SELECT count(*) FROM dbsync.ilog)" ;;
  esac
}

log "cluster on port $PGPORT; pgbench: $bench_rounds rounds of $seconds s runs; bulk statements of $rows rows, $rounds rounds"
declare -A tps lat txs logrows logbytes
# 1. pgbench, each script in the three modes, interleaved.
for br in $(seq 1 "$bench_rounds"); do
for script in tpcb N; do
  for mode in $modes; do
    log "pgbench ${script/N/-N}, $mode, round $br of $bench_rounds"
    empty_logs
    "$PG_BIN/pgbench" -i -q -s "$scale" 2> "$work/init.log" || { cat "$work/init.log" >&2; exit 1; }
    triggers "$mode" $tables
    psql_q -c "CHECKPOINT"
    opt=""; [ "$script" = N ] && opt=-N
    "$PG_BIN/pgbench" -n $opt -c "$clients" -j "$clients" -T "$seconds" > "$work/pgbench.out" 2>&1 ||
      { cat "$work/pgbench.out" >&2; exit 1; }
    k=$script,$mode
    t=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$work/pgbench.out")
    [ -n "$t" ] || { cat "$work/pgbench.out" >&2; exit 1; }
    tps[$k]="${tps[$k]:-} $t"
    lat[$k]="${lat[$k]:-} $(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' "$work/pgbench.out")"
    # The last round's transactions and log (the log's sizes and rows per transaction).
    txs[$k]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$work/pgbench.out")
    read -r logbytes[$k] logrows[$k] <<<"$(log_size "$mode")"
    if [ "$mode" = dbsync ]; then  # the untracked tables are dropped by the next pgbench -i
      for t in $tables; do psql_q -c "SELECT dbsync_untrack('$t')" >/dev/null; done
    fi
  done
done
done

# 2. The bulk statements. One psql session per mode and round; prints
# "ins upd del" in seconds.
cat > "$work/bulk.sql" <<SQL
\set rows $rows
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
INSERT INTO bulk SELECT i, i, substr(md5(i::text), 1, 20), timestamptz '2026-01-01 00:00+00' + i * interval '1 second'
  FROM generate_series(1, :rows) i;
SELECT extract(epoch FROM clock_timestamp()) - :t0 AS ins \gset
VACUUM ANALYZE bulk;
CHECKPOINT;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
UPDATE bulk SET a = a + 1;
SELECT extract(epoch FROM clock_timestamp()) - :t0 AS upd \gset
VACUUM ANALYZE bulk;
CHECKPOINT;
SELECT extract(epoch FROM clock_timestamp()) AS t0 \gset
DELETE FROM bulk;
SELECT extract(epoch FROM clock_timestamp()) - :t0 AS del \gset
\echo :ins :upd :del
SQL
declare -A t_ins t_upd t_del bulk_logrows
for r in $(seq 1 "$rounds"); do
  for mode in $modes; do
    log "bulk statements, round $r of $rounds, $mode"
    psql_q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS bulk" \
      -c "CREATE TABLE bulk (id int PRIMARY KEY, a int NOT NULL, b text NOT NULL, c timestamptz NOT NULL)"
    empty_logs
    triggers "$mode" bulk
    psql_q -c "CHECKPOINT"
    read -r i u d < <(psql_q -f "$work/bulk.sql")
    t_ins[$mode]="${t_ins[$mode]:-} $i"; t_upd[$mode]="${t_upd[$mode]:-} $u"; t_del[$mode]="${t_del[$mode]:-} $d"
    read -r _ bulk_logrows[$mode] <<<"$(log_size "$mode")"
    [ "$mode" = dbsync ] && psql_q -c "SELECT dbsync_untrack('bulk')" >/dev/null
  done
done
psql_q -c "DROP TABLE bulk"

# The report.
echo
echo "dbsync iLog benchmark: commit $commit, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'machine: %s cores, %s, %s GiB; %s\n' "$(nproc)" "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  "$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" "$(psql_q -c "SELECT version()" | cut -d, -f1)"
echo "settings (fsync and synchronous_commit at their defaults):"
psql_q -F ' ' -c "SELECT name, current_setting(name) FROM pg_settings
  WHERE name IN ('shared_buffers', 'effective_cache_size', 'work_mem', 'maintenance_work_mem', 'wal_buffers',
                 'max_wal_size', 'min_wal_size', 'checkpoint_timeout', 'checkpoint_completion_target',
                 'random_page_cost', 'fsync', 'synchronous_commit', 'full_page_writes', 'wal_level',
                 'autovacuum', 'shared_preload_libraries', 'max_connections')
  ORDER BY name" | awk '{printf "  %-30s %s\n", $1, $2}'
echo
echo "1. pgbench -s $scale, $clients clients, $seconds s a run (pgbench -i before each; -n), median of $bench_rounds rounds"
printf '%-10s %-8s %10s %8s %12s %10s %12s %11s\n' script mode TPS ratio "latency ms" txns "log rows/tx" "bytes/row"
declare -A mtps
for k in "${!tps[@]}"; do mtps[$k]=$(median "${tps[$k]}"); done
for script in tpcb N; do
  for mode in $modes; do
    k=$script,$mode
    per_tx=$(calc "${logrows[$k]} / ${txs[$k]}")
    per_row="-"; [ "${logrows[$k]}" -gt 0 ] && per_row=$(printf '%.0f' "$(calc "${logbytes[$k]} / ${logrows[$k]}")")
    printf '%-10s %-8s %10.1f %8.3f %12.3f %10d %12.2f %11s\n' "${script/N/-N}" "$mode" "${mtps[$k]}" \
      "$(calc "${mtps[$k]} / ${mtps[$script,none]}")" "$(median "${lat[$k]}")" "${txs[$k]}" "$per_tx" "$per_row"
  done
done
if [ "$bench_rounds" -gt 1 ]; then
  echo "  (each round's TPS:"
  for script in tpcb N; do
    for mode in $modes; do echo "   ${script/N/-N} $mode:${tps[$script,$mode]}"; done
  done
  echo "  )"
fi
echo
echo "2. one statement of $rows rows, median of $rounds rounds: seconds; us/row over no trigger"
printf '%-8s %10s %10s %10s %10s %10s %10s %14s\n' mode INSERT UPDATE DELETE "us/row ins" "us/row upd" "us/row del" "log rows"
declare -A med
for mode in $modes; do
  med[$mode,ins]=$(median "${t_ins[$mode]}"); med[$mode,upd]=$(median "${t_upd[$mode]}"); med[$mode,del]=$(median "${t_del[$mode]}")
done
for mode in $modes; do
  printf '%-8s %10.3f %10.3f %10.3f' "$mode" "${med[$mode,ins]}" "${med[$mode,upd]}" "${med[$mode,del]}"
  for s in ins upd del; do
    printf ' %10.2f' "$(calc "(${med[$mode,$s]} - ${med[none,$s]}) * 1000000 / $rows")"
  done
  printf ' %14s\n' "${bulk_logrows[$mode]}"
done
echo "  (each round's seconds, INSERT / UPDATE / DELETE:"
for mode in $modes; do
  echo "   $mode:${t_ins[$mode]} /${t_upd[$mode]} /${t_del[$mode]}"
done
echo "  )"
echo
echo "3. log bytes per row after the tpcb-like run (whole log relations, indexes included, over the log's rows)"
for mode in plpgsql dbsync; do
  printf '  %-8s %12s bytes / %9s rows = %6.1f bytes/row\n' "$mode" "${logbytes[tpcb,$mode]}" "${logrows[tpcb,$mode]}" \
    "$(calc "${logbytes[tpcb,$mode]} / ${logrows[tpcb,$mode]}")"
done
echo
ratio=$(calc "${mtps[tpcb,dbsync]} / ${mtps[tpcb,none]}")
worst=$(for s in ins upd del; do calc "(${med[dbsync,$s]} - ${med[none,$s]}) * 1000000 / $rows"; done | sort -g | tail -1)
bytes=$(calc "${logbytes[tpcb,dbsync]} / ${logrows[tpcb,dbsync]}")
verdict() { awk "BEGIN { print ($1) ? \"met\" : \"missed\" }"; }
echo "summary (dbsync)"
printf '  tpcb-like TPS ratio to no triggers  %8.3f   goal >= 0.90      %s\n' "$ratio" "$(verdict "$ratio >= 0.90")"
printf '  bulk us/row over no trigger (worst) %8.2f   goal < 3          %s\n' "$worst" "$(verdict "$worst < 3")"
printf '  log bytes per pgbench row           %8.1f   goal <= 200       %s\n' "$bytes" "$(verdict "$bytes <= 200")"
printf '  (plpgsql baseline: tpcb-like ratio %.3f, -N ratio %.3f; dbsync -N ratio %.3f)\n' \
  "$(calc "${mtps[tpcb,plpgsql]} / ${mtps[tpcb,none]}")" "$(calc "${mtps[N,plpgsql]} / ${mtps[N,none]}")" \
  "$(calc "${mtps[N,dbsync]} / ${mtps[N,none]}")"
echo "run time: $(( $(date +%s) - started )) s"
