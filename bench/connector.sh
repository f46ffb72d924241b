#!/usr/bin/env bash
# Benchmark: the connector layer (0.7) in one run, on a throwaway PostgreSQL 15
# cluster of its own (fsync on; run as postgres):
# 1. Apply of CHANGES staged changes (1,000,000) into user tables, dbsync
#    against a hand-written statement, side by side:
#      staging  a subscription made without network (server flexi at
#               http://127.0.0.1:1, start_version 1, disabled); dbsync.change and
#               dbsync.record filled by INSERT ... SELECT: CHANGES changes with
#               distinct rising versions 1..CHANGES over adresar (partners: one
#               for 5 invoices), faktura-vydana (invoices, each referring to one
#               of the first half of the partners by firma "code:K<k>" and
#               firma@ref) and faktura-vydana-polozka (3 lines per invoice,
#               doklFak and doklFak@ref); 70 % of records have one change, 20 %
#               two, 10 % three (a record is created after its parent, its
#               updates spread over the rest of the log, so a parent's last
#               version is often later than its children's); deleted records
#               (the last change a delete): 5 % of the partners (only
#               unreferenced ones), 4 % of the invoices with all their lines, 1
#               in 40 of the other lines. dbsync.record holds each record's last
#               state (version and external ids of its last change). Then phase 'sync',
#               cursor_version = CHANGES + 1 (the next version to read: since
#               commit e853433 records are final below the cursor).
#      tables   partner, invoice, invoice_line as the issue gives them, in
#               schema mine (dbsync) and hand (the baseline, plus remote_id
#               bigint UNIQUE on each table). The tables start empty, so both
#               sides insert every live record and delete nothing (a record
#               deleted remotely never reached a row).
#      dbsync   dbsync_map of the three evidences, then one
#               SELECT * FROM dbsync_map_apply('flexi') from psql (autocommit:
#               its one transaction, commit included in the time).
#      hand     what a DBA would write: in one transaction, INSERT ... SELECT
#               FROM dbsync.record ... ON CONFLICT (remote_id) DO UPDATE of
#               partners, then invoices (partner_id by joining hand.partner on
#               the id of firma@ref), then lines (invoice_id by hand.invoice's
#               remote_id from doklFak@ref); then DELETE of the deleted records'
#               rows, lines, invoices, partners.
#    Each round: every target table, binding and checkpoint emptied (TRUNCATE),
#    mappings' applied_version 0, then both sides one after the other (order
#    alternating between rounds), each after VACUUM ANALYZE and CHECKPOINT. Wall
#    time and the backend's CPU time; median over the rounds; the ratio
#    dbsync / hand (goal: at most 1.5). Afterwards both sides must hold the same
#    rows (counts and md5 of the rows by code, with partner and invoice codes in
#    place of local keys), as many as dbsync.record has live records, and no
#    open checkpoint: otherwise FAIL and exit 1.
#    Profile (CONN_BENCH_PROFILE=1, the default; after the timed rounds, not in
#    their figures): one more apply of each side with pg_stat_statements.track =
#    all (loaded, with track = none otherwise), the top statements by time.
#    Worker (CONN_BENCH_WORKER=1, the default): the same apply by the background
#    worker: dbsync.databases = 'bench', the subscription enabled (its pull job
#    pushed a day ahead), cursor_version moved from 0 to CHANGES + 1 in one
#    transaction (the trigger queues the map_apply job; rounds of
#    dbsync.map_batch_size records, a transaction each); time from that commit
#    (track_commit_timestamp) to the last map_apply job's finished_at.
# 2. Job queue: with dbsync.databases = 'bench' (runners start when woken at the
#    commit, and exit once nothing is due: the time includes starting one), 1,000 noop jobs
#    enqueued in one transaction (SELECT dbsync_job_enqueue('noop') FROM
#    generate_series(1, 1000)); time from that transaction's commit
#    (pg_xact_commit_timestamp) to the last job's finished_at, and wall time
#    from before BEGIN until a poll (every 5 ms, committing between polls) sees
#    all 1,000 done. Goal: under 1 s. CONN_BENCH_NOOP_ROUNDS rounds.
#
# dbsync must be built and installed already (make && make install as root);
# the script does not build it.
#
# Usage: bench/connector.sh   (as root: runs the cluster as postgres)
#   CONN_BENCH_CHANGES      staged changes applied (1000000)
#   CONN_BENCH_ROUNDS       rounds of the two sides, median reported (2)
#   CONN_BENCH_PROFILE      1: profile run with pg_stat_statements (1)
#   CONN_BENCH_WORKER       1: the apply by the background worker too (1)
#   CONN_BENCH_NOOP_JOBS    noop jobs per round (1000)
#   CONN_BENCH_NOOP_ROUNDS  rounds of the noop jobs (3)
#   CONN_BENCH_TIMEOUT      seconds one dbsync apply may take (3600); beyond, its
#                           time is reported as more than that, the other
#                           rounds and the worker's apply are skipped, the
#                           profile's apply stops after at most 600 s, and the
#                           script exits 1
#   CONN_BENCH_PORT         the cluster's port (a random one from 20000)
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ]; then
  [ -x "$PG_BIN/initdb" ] || { echo "PostgreSQL 15 is not installed ($PG_BIN)" >&2; exit 1; }
  libdir=$("$PG_CONFIG" --pkglibdir); extdir=$("$PG_CONFIG" --sharedir)/extension
  if [ ! -f "$libdir/dbsync.so" ] || [ ! -f "$extdir/dbsync.control" ]; then
    echo "dbsync is not installed: run make && make install (as root) first" >&2; exit 1
  fi
  for f in "$src"/sql/*.sql; do
    cmp -s "$f" "$extdir/$(basename "$f")" || log "warning: installed $(basename "$f") differs from the tree's"
  done
  commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo unknown)
  git -C "$src" diff --quiet HEAD -- src sql 2>/dev/null || commit="$commit+changes"
  run_unprivileged "$src" env ${CONN_BENCH_PORT:+CONN_BENCH_PORT=$CONN_BENCH_PORT} \
    CONN_BENCH_CHANGES="${CONN_BENCH_CHANGES:-1000000}" CONN_BENCH_ROUNDS="${CONN_BENCH_ROUNDS:-2}" \
    CONN_BENCH_PROFILE="${CONN_BENCH_PROFILE:-1}" CONN_BENCH_WORKER="${CONN_BENCH_WORKER:-1}" \
    CONN_BENCH_NOOP_JOBS="${CONN_BENCH_NOOP_JOBS:-1000}" CONN_BENCH_NOOP_ROUNDS="${CONN_BENCH_NOOP_ROUNDS:-3}" \
    CONN_BENCH_TIMEOUT="${CONN_BENCH_TIMEOUT:-3600}" \
    bash bench/connector.sh --inside "$commit"
  exit
fi
commit=${2:-unknown}
changes=${CONN_BENCH_CHANGES:-1000000}
rounds=${CONN_BENCH_ROUNDS:-2}
profile=${CONN_BENCH_PROFILE:-1}
worker=${CONN_BENCH_WORKER:-1}
noop_jobs=${CONN_BENCH_NOOP_JOBS:-1000}
noop_rounds=${CONN_BENCH_NOOP_ROUNDS:-3}
timeout=${CONN_BENCH_TIMEOUT:-3600}
started=$(date +%s)
[ "$changes" -ge 1000 ] || { echo "CONN_BENCH_CHANGES must be at least 1000" >&2; exit 1; }

work=$(mktemp -d /tmp/dbsync-bench.XXXXXX)
trap 'stop_cluster; rm -rf "$work"' EXIT

# The cluster: not test/lib.sh's start_cluster (fsync off, a worker at once).
# No dbsync.databases yet: no runner touches the database until part 2 (and the
# worker's apply) sets it.
export PGDATA=$work/data PGHOST=$work PGPORT=${CONN_BENCH_PORT:-$((20000 + RANDOM % 20000))} PGUSER=$(id -un)
export PGDATABASE=bench
"$PG_BIN/initdb" -D "$PGDATA" -A trust --no-sync >/dev/null
cat >> "$PGDATA/postgresql.conf" <<CONF
shared_preload_libraries = 'dbsync, pg_stat_statements'
pg_stat_statements.track = none
pg_stat_statements.max = 1000
track_commit_timestamp = on
listen_addresses = ''
unix_socket_directories = '$work'
port = $PGPORT
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
CONF
"$PG_BIN/pg_ctl" -D "$PGDATA" -l "$work/postgres.log" -w start >/dev/null

psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
calc() { awk "BEGIN { printf \"%.6f\\n\", $1 }"; }
median() { tr ' ' '\n' <<<"$1" | sort -g | awk 'NF {a[++n]=$1} END {print (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2}'; }
now() { date +%s.%N; }
hz=$(getconf CLK_TCK)

psql_q -d postgres -c "CREATE DATABASE bench"
log "cluster on port $PGPORT; $changes staged changes, $rounds rounds"

# The subscription, the tables, the mappings' targets.
psql_q <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION dbsync;
CREATE EXTENSION pg_stat_statements;
CREATE SERVER flexi FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url 'http://127.0.0.1:1', company 'x');
CREATE USER MAPPING FOR CURRENT_USER SERVER flexi OPTIONS (user 'a', password 'b');
SELECT FROM dbsync_subscribe('flexi', start_version => 1, enabled => false);
CREATE SCHEMA mine;
CREATE TABLE mine.partner (id bigserial PRIMARY KEY, code text UNIQUE, name text NOT NULL, email text);
CREATE TABLE mine.invoice (id bigserial PRIMARY KEY, code text UNIQUE, total numeric(12,2),
                           partner_id bigint REFERENCES mine.partner);
CREATE TABLE mine.invoice_line (id bigserial PRIMARY KEY,
                                invoice_id bigint NOT NULL REFERENCES mine.invoice ON DELETE CASCADE, name text);
CREATE SCHEMA hand;
CREATE TABLE hand.partner (id bigserial PRIMARY KEY, code text UNIQUE, name text NOT NULL, email text,
                           remote_id bigint UNIQUE);
CREATE TABLE hand.invoice (id bigserial PRIMARY KEY, code text UNIQUE, total numeric(12,2),
                           partner_id bigint REFERENCES hand.partner, remote_id bigint UNIQUE);
CREATE TABLE hand.invoice_line (id bigserial PRIMARY KEY,
                                invoice_id bigint NOT NULL REFERENCES hand.invoice ON DELETE CASCADE, name text,
                                remote_id bigint UNIQUE);
SQL
sub=$(psql_q -c "SELECT id FROM dbsync.subscription WHERE server = 'flexi'")

# The staged changes. Sizes: ni invoices, 3 ni lines, ni / 5 partners; a little more
# than CHANGES changes are generated, then updates (never a create or a delete) are
# dropped until exactly CHANGES are left.
ni=$(( (changes * 10 + 57) / 58 ))
np=$(( ni / 5 < 2 ? 2 : ni / 5 ))
log "staging $changes changes ($np partners, $ni invoices, $((3 * ni)) lines before trimming)"
t0=$(now)
psql_q <<SQL
SET client_min_messages = warning;
SET work_mem = '256MB';
CREATE SCHEMA gen;
-- Deterministic uniform [0, 1) and change counts (1: 70 %, 2: 20 %, 3: 10 %).
CREATE FUNCTION gen.u(id bigint, seed bigint) RETURNS float8 IMMUTABLE LANGUAGE sql
  AS \$\$ SELECT (hashint8extended(id, seed) & 2147483647)::float8 / 2147483648 \$\$;
CREATE FUNCTION gen.nch(id bigint, seed bigint, del boolean) RETURNS int IMMUTABLE LANGUAGE sql
  AS \$\$ SELECT greatest(CASE WHEN h < 7 THEN 1 WHEN h < 9 THEN 2 ELSE 3 END, CASE WHEN del THEN 2 ELSE 1 END)
          FROM (SELECT (hashint8extended(id, seed) & 2147483647) % 10 AS h) x \$\$;
-- Records: when each is created (base, on a 0..1 time line), its parent, whether deleted.
CREATE UNLOGGED TABLE gen.rec AS
SELECT 'adresar'::text AS ev, p::bigint AS id, NULL::bigint AS parent, 0.7 * gen.u(p, 1) AS base,
       (p > $np / 2 AND p % 10 = 0) AS del
  FROM generate_series(1, $np) p;
INSERT INTO gen.rec
SELECT 'faktura-vydana', i, pr.id, pr.base + (0.85 - pr.base) * gen.u(i, 2), i % 25 = 0
  FROM generate_series(1, $ni) i JOIN gen.rec pr ON pr.ev = 'adresar' AND pr.id = i % ($np / 2) + 1;
INSERT INTO gen.rec
SELECT 'faktura-vydana-polozka', l, ir.id, ir.base + 1e-9 * (l % 3 + 1), ir.del OR l % 40 = 0
  FROM generate_series(1, 3 * $ni) l JOIN gen.rec ir ON ir.ev = 'faktura-vydana' AND ir.id = (l - 1) / 3 + 1;
-- Changes: the create at base, updates (and the delete, last) spread over the rest of the line.
CREATE UNLOGGED TABLE gen.ch AS
SELECT r.ev, r.id, k,
       CASE WHEN k = 0 THEN 'create' WHEN r.del AND k = r.n - 1 THEN 'delete' ELSE 'update' END AS op,
       CASE WHEN k = 0 THEN r.base
            ELSE r.base + (1 - r.base) * (k + 0.5 * gen.u(r.id * 8 + k, hashtext(r.ev))) / r.n END AS key
  FROM (SELECT rec.*, gen.nch(id, hashtext(ev), del) AS n FROM gen.rec) r, generate_series(0, r.n - 1) k;
DO \$\$
DECLARE
  total bigint := (SELECT count(*) FROM gen.ch);
BEGIN
  IF total < $changes THEN
    RAISE EXCEPTION 'generated % changes, fewer than %', total, $changes;
  END IF;
  DELETE FROM gen.ch c USING (SELECT ctid FROM gen.ch WHERE op = 'update'
                               ORDER BY gen.u(id * 8 + k, 99 + hashtext(ev)) LIMIT total - $changes) d
   WHERE c.ctid = d.ctid;
END
\$\$;
CREATE UNLOGGED TABLE gen.chv AS
SELECT ev, id, op, row_number() OVER (ORDER BY key, ev, id, k) AS version FROM gen.ch;
INSERT INTO dbsync.change (subscription_id, version, evidence, operation, changed_at, record_id, external_ids)
SELECT $sub, version, ev, op, timestamp '2026-01-01' + version * interval '10 ms', id,
       CASE ev WHEN 'adresar' THEN ARRAY['code:K' || id] WHEN 'faktura-vydana' THEN ARRAY['code:FV' || id]
               ELSE '{}'::text[] END
  FROM gen.chv ORDER BY version;
INSERT INTO dbsync.record (subscription_id, evidence, record_id, version, deleted, external_ids, payload)
SELECT $sub, s.ev, s.id, s.version, s.deleted,
       CASE s.ev WHEN 'adresar' THEN ARRAY['code:K' || s.id] WHEN 'faktura-vydana' THEN ARRAY['code:FV' || s.id]
                 ELSE '{}'::text[] END,
       CASE s.ev
       WHEN 'adresar' THEN jsonb_build_object('id', s.id, 'kod', 'K' || s.id,
                                              'nazev', format('Partner %s v%s', s.id, s.v),
                                              'email', format('p%s@example.com', s.id))
       WHEN 'faktura-vydana' THEN jsonb_build_object('id', s.id, 'kod', 'FV' || s.id,
                                              'sumCelkem', ((s.id % 100000) * 1.25 + s.v)::numeric(12,2)::text,
                                              'firma', 'code:K' || r.parent,
                                              'firma@ref', format('/c/x/adresar/%s.json', r.parent))
       ELSE jsonb_build_object('id', s.id, 'nazev', format('Item %s v%s', s.id, s.v), 'doklFak', r.parent::text,
                               'doklFak@ref', format('/c/x/faktura-vydana/%s.json', r.parent))
       END
  FROM (SELECT ev, id, max(version) AS version, bool_or(op = 'delete') AS deleted,
               count(*) FILTER (WHERE op <> 'delete') AS v
          FROM gen.chv GROUP BY ev, id) s
  JOIN gen.rec r ON r.ev = s.ev AND r.id = s.id
 ORDER BY s.version;
DROP SCHEMA gen CASCADE;
UPDATE dbsync.subscription SET phase = 'sync', cursor_version = (SELECT max(version) + 1 FROM dbsync.change)
 WHERE id = $sub;
VACUUM ANALYZE dbsync.change, dbsync.record;
SQL
stage_secs=$(calc "$(now) - $t0")
psql_q -F ' ' -c "SELECT count(*), min(version), max(version), count(DISTINCT version) FROM dbsync.change" > "$work/changes"
read -r n_changes v_min v_max v_distinct < "$work/changes"
[ "$n_changes" -eq "$changes" ] && [ "$v_distinct" -eq "$changes" ] ||
  { echo "FAIL: staged $n_changes changes ($v_distinct distinct versions), not $changes" >&2; exit 1; }
psql_q -F '|' -c "SELECT evidence, count(*), count(*) FILTER (WHERE deleted),
                         (SELECT count(*) FROM dbsync.change c WHERE c.evidence = r.evidence),
                         (SELECT count(*) FROM dbsync.change c WHERE c.evidence = r.evidence AND c.operation = 'update'),
                         (SELECT count(*) FROM dbsync.change c WHERE c.evidence = r.evidence AND c.operation = 'delete')
                    FROM dbsync.record r GROUP BY evidence ORDER BY evidence" > "$work/staged"
log "staged in $stage_secs s: versions $v_min..$v_max"

# The mappings (their refs learn the evidence from the staged firma@ref / doklFak@ref).
psql_q <<'SQL' >/dev/null
SELECT dbsync_map('flexi', 'adresar', 'mine.partner', fields => '{"kod": "code", "nazev": "name", "email": "email"}');
SELECT dbsync_map('flexi', 'faktura-vydana', 'mine.invoice', fields => '{"kod": "code", "sumCelkem": "total"}',
                  refs => '{"firma": "partner_id"}');
SELECT dbsync_map('flexi', 'faktura-vydana-polozka', 'mine.invoice_line', fields => '{"nazev": "name"}',
                  refs => '{"doklFak": "invoice_id"}');
SQL

# The hand-written apply, in one transaction.
cat > "$work/hand.sql" <<SQL
BEGIN;
INSERT INTO hand.partner AS x (remote_id, code, name, email)
SELECT r.record_id, r.payload->>'kod', r.payload->>'nazev', r.payload->>'email'
  FROM dbsync.record r
 WHERE r.subscription_id = $sub AND r.evidence = 'adresar' AND NOT r.deleted AND r.version <= $v_max
ON CONFLICT (remote_id) DO UPDATE SET code = excluded.code, name = excluded.name, email = excluded.email;
INSERT INTO hand.invoice AS x (remote_id, code, total, partner_id)
SELECT r.record_id, r.payload->>'kod', (r.payload->>'sumCelkem')::numeric, p.id
  FROM dbsync.record r
  JOIN hand.partner p ON p.remote_id = substring(r.payload->>'firma@ref' FROM '/([0-9]+)\.json$')::bigint
 WHERE r.subscription_id = $sub AND r.evidence = 'faktura-vydana' AND NOT r.deleted AND r.version <= $v_max
ON CONFLICT (remote_id) DO UPDATE SET code = excluded.code, total = excluded.total, partner_id = excluded.partner_id;
INSERT INTO hand.invoice_line AS x (remote_id, name, invoice_id)
SELECT r.record_id, r.payload->>'nazev', i.id
  FROM dbsync.record r
  JOIN hand.invoice i ON i.remote_id = substring(r.payload->>'doklFak@ref' FROM '/([0-9]+)\.json$')::bigint
 WHERE r.subscription_id = $sub AND r.evidence = 'faktura-vydana-polozka' AND NOT r.deleted AND r.version <= $v_max
ON CONFLICT (remote_id) DO UPDATE SET name = excluded.name, invoice_id = excluded.invoice_id;
DELETE FROM hand.invoice_line x USING dbsync.record r
 WHERE r.subscription_id = $sub AND r.evidence = 'faktura-vydana-polozka' AND r.deleted AND r.version <= $v_max
   AND x.remote_id = r.record_id;
DELETE FROM hand.invoice x USING dbsync.record r
 WHERE r.subscription_id = $sub AND r.evidence = 'faktura-vydana' AND r.deleted AND r.version <= $v_max
   AND x.remote_id = r.record_id;
DELETE FROM hand.partner x USING dbsync.record r
 WHERE r.subscription_id = $sub AND r.evidence = 'adresar' AND r.deleted AND r.version <= $v_max
   AND x.remote_id = r.record_id;
COMMIT;
SQL
cat > "$work/dbsync.sql" <<'SQL'
SELECT * FROM dbsync_map_apply('flexi');
SQL

# Empties both sides' tables and dbsync's state of the apply.
reset_all() {
  psql_q <<'SQL'
SET client_min_messages = warning;
TRUNCATE mine.invoice_line, mine.invoice, mine.partner, hand.invoice_line, hand.invoice, hand.partner RESTART IDENTITY;
TRUNCATE dbsync.binding, dbsync.checkpoint;
UPDATE dbsync.mapping SET applied_version = 0, upserted_version = 0, last_applied_at = NULL;
DELETE FROM dbsync.job WHERE kind = 'map_apply';
SQL
}
settle() {
  psql_q -c "VACUUM ANALYZE dbsync.record, dbsync.change, dbsync.binding, dbsync.checkpoint, dbsync.mapping, dbsync.job,
                             mine.partner, mine.invoice, mine.invoice_line, hand.partner, hand.invoice, hand.invoice_line" \
         -c "CHECKPOINT"
}
# Runs one side from a file in one psql session with statement_timeout TIMEOUT seconds (0: none);
# prints "seconds cpu_seconds", or "timeout -" (its output goes to side.out). CPU from
# /proc/self/stat, counted from after ") " (the command name may hold spaces): there, field 3
# (state) is the first, utime and stime are 12 and 13.
run_side() {
  local file=$1 limit=${2:-0}
  if ! psql_q -F ' ' > "$work/side.time" 2> "$work/side.err" <<SQL
SET statement_timeout = '${limit}s';
SELECT extract(epoch FROM clock_timestamp()) AS t0, split_part(pg_read_file('/proc/self/stat'), ') ', 2) AS stat0 \gset
\o $work/side.out
\i $file
\o
SELECT round((extract(epoch FROM clock_timestamp()) - :t0)::numeric, 3),
       round(((split_part(s1, ' ', 12)::bigint + split_part(s1, ' ', 13)::bigint)
              - (split_part(:'stat0', ' ', 12)::bigint + split_part(:'stat0', ' ', 13)::bigint))::numeric / $hz, 2)
  FROM (SELECT split_part(pg_read_file('/proc/self/stat'), ') ', 2) AS s1) s;
SQL
  then
    grep -q 'canceling statement due to statement timeout' "$work/side.err" && { echo "timeout -"; return 0; }
    cat "$work/side.err" >&2
    return 1
  fi
  cat "$work/side.time"
}
# "rows md5" of a side's three tables, in terms of remote codes (local keys differ).
digest() {
  local s=$1
  psql_q -F ' ' <<SQL
SELECT (SELECT count(*) FROM $s.partner), (SELECT count(*) FROM $s.invoice), (SELECT count(*) FROM $s.invoice_line),
       (SELECT md5(string_agg(concat_ws('|', code, name, email), ',' ORDER BY code)) FROM $s.partner),
       (SELECT md5(string_agg(concat_ws('|', i.code, i.total, p.code), ',' ORDER BY i.code))
          FROM $s.invoice i LEFT JOIN $s.partner p ON p.id = i.partner_id),
       (SELECT md5(string_agg(concat_ws('|', l.name, i.code), ',' ORDER BY l.name))
          FROM $s.invoice_line l LEFT JOIN $s.invoice i ON i.id = l.invoice_id);
SQL
}
expected=$(psql_q -F ' ' -c "SELECT count(*) FILTER (WHERE evidence = 'adresar'), count(*) FILTER (WHERE evidence = 'faktura-vydana'),
                                    count(*) FILTER (WHERE evidence = 'faktura-vydana-polozka')
                               FROM dbsync.record WHERE NOT deleted")
fail=0
check_hand() {  # the baseline alone against the staged records
  local hand
  hand=$(digest hand)
  if [ "$(cut -d' ' -f1-3 <<<"$hand")" != "$expected" ]; then
    echo "FAIL ($1): the baseline's rows $(cut -d' ' -f1-3 <<<"$hand"), live staged records $expected"; fail=1
  fi
}
hand_ref=""    # the baseline's digest after its first run: what dbsync's tables must equal
check_sides() {  # after both sides ran (or with the baseline's tables emptied: against hand_ref); $1: what ran
  local mine hand open
  mine=$(digest mine); hand=$(digest hand)
  [ "$(cut -d' ' -f1-3 <<<"$hand")" = "0 0 0" ] && [ -n "$hand_ref" ] && hand=$hand_ref
  [ -n "$hand_ref" ] || hand_ref=$hand
  open=$(psql_q -c "SELECT count(*) FROM dbsync.checkpoint WHERE NOT reviewed")
  if [ "$mine" != "$hand" ]; then
    echo "FAIL ($1): dbsync's tables differ from the baseline's: mine $mine; hand $hand"; fail=1
  fi
  if [ "$(cut -d' ' -f1-3 <<<"$mine")" != "$expected" ]; then
    echo "FAIL ($1): dbsync's rows $(cut -d' ' -f1-3 <<<"$mine"), live staged records $expected"; fail=1
  fi
  if [ "$open" -ne 0 ]; then
    echo "FAIL ($1): $open open checkpoints after the apply"; fail=1
    psql_q -c "SELECT reason, sqlstate, left(error, 200), count(*) FROM dbsync.checkpoint WHERE NOT reviewed GROUP BY 1, 2, 3"
  fi
}

declare -A secs cpu
dnf=0          # 1: a dbsync apply ran out of time
result=""
for r in $(seq 1 "$rounds"); do
  order="hand dbsync"; [ $((r % 2)) -eq 0 ] && order="dbsync hand"
  reset_all
  for side in $order; do
    settle
    log "round $r of $rounds: $side"
    limit=0; [ "$side" = dbsync ] && limit=$timeout
    read -r s c < <(run_side "$work/$side.sql" "$limit")
    if [ "$s" = timeout ]; then
      dnf=1; fail=1
      echo "FAIL (round $r): dbsync_map_apply did not finish in $timeout s (CONN_BENCH_TIMEOUT)"
      log "round $r: $side did not finish in $timeout s"
      continue
    fi
    secs[$side]="${secs[$side]:-} $s"; cpu[$side]="${cpu[$side]:-} $c"
    [ "$side" = dbsync ] && result=$(tr '\n' ' ' < "$work/side.out")
    log "round $r: $side $s s (backend CPU $c s)"
  done
  if [ "$dnf" = 1 ]; then
    check_hand "round $r"
    break
  fi
  check_sides "round $r"
done
m_hand=$(median "${secs[hand]}")
if [ "$dnf" = 0 ]; then
  read -r d_ins d_upd d_del d_wait d_fail d_ver <<<"$(tr '|' ' ' <<<"$result")"
  counts=$(digest mine | cut -d' ' -f1-3)
  bindings=$(psql_q -c "SELECT count(*) FROM dbsync.binding")
  cps=$(psql_q -F ' ' -c "SELECT count(*), count(*) FILTER (WHERE reason = 'reference') FROM dbsync.checkpoint")
  m_dbsync=$(median "${secs[dbsync]}")
  ratio=$(calc "$m_dbsync / $m_hand")
else
  m_dbsync=$timeout
  ratio=$(calc "$timeout / $m_hand")
fi

# Profile: one more apply of each side, every nested statement counted.
if [ "$profile" = 1 ]; then
  reset_all
  for side in hand dbsync; do
    settle
    log "profile: $side with pg_stat_statements.track = all"
    psql_q -c "SELECT pg_stat_statements_reset()" >/dev/null
    { echo "SET pg_stat_statements.track = 'all';"; cat "$work/$side.sql"; } > "$work/profile-$side.sql"
    limit=0; [ "$side" = dbsync ] && limit=$timeout
    [ "$side" = dbsync ] && [ "$dnf" = 1 ] && [ "$timeout" -gt 600 ] && limit=600
    read -r s c < <(run_side "$work/profile-$side.sql" "$limit")
    [ "$s" = timeout ] && s="stopped after $limit s; statements that ended by then:" && c=-
    psql_q -F '|' -c "SELECT calls, round(total_exec_time::numeric / 1000, 3), rows,
                             left(regexp_replace(query, '\s+', ' ', 'g'), 110)
                        FROM pg_stat_statements
                       WHERE dbid = (SELECT oid FROM pg_database WHERE datname = 'bench')
                         AND query !~* '^(SET|SELECT pg_stat_statements_reset|SELECT extract|SELECT round)'
                       ORDER BY total_exec_time DESC LIMIT 14" > "$work/profile-$side.out"
    echo "$s|$c" > "$work/profile-$side.time"
  done
  [ "$dnf" = 0 ] && check_sides profile
fi

# The background worker's apply, then part 2 on the same runners.
psql_q -c "ALTER SYSTEM SET dbsync.databases = 'bench'" -c "SELECT pg_reload_conf()" >/dev/null
# Waits (committing between polls) until the condition holds; ok is false after limit_s seconds.
psql_q <<'SQL'
CREATE FUNCTION public.bench_true(cond text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
  ok boolean;
BEGIN
  EXECUTE 'SELECT ' || cond INTO ok;
  RETURN ok;
END $$;
CREATE PROCEDURE public.bench_wait(cond text, pause float8, limit_s float8 DEFAULT 3600, INOUT ok boolean DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
  deadline timestamptz := clock_timestamp() + make_interval(secs => limit_s);
BEGIN
  LOOP
    ok := public.bench_true(cond);
    EXIT WHEN ok;
    IF clock_timestamp() > deadline THEN
      RETURN;
    END IF;
    COMMIT;
    PERFORM pg_sleep(pause);
  END LOOP;
END $$;
SQL
# Runners start when woken (at the commit of new jobs, or when a job is due) and exit once
# nothing is due: the first one runs the database's due job_purge job.
ok=$(psql_q -c "CALL bench_wait('EXISTS (SELECT FROM dbsync.job WHERE kind = ''job_purge'' AND finished_at IS NOT NULL)
                                 AND NOT EXISTS (SELECT FROM dbsync.job WHERE state = ''running'')', 0.05, 30)")
[ "$ok" = t ] || { echo "FAIL: no dbsync job runner served database bench in 30 s" >&2; exit 1; }

w_dnf=0
[ "$dnf" = 1 ] && [ "$worker" = 1 ] && { worker=skipped; log "worker: skipped (the apply from psql ran out of time)"; }
if [ "$worker" = 1 ]; then
  log "worker: the same apply by the background worker"
  reset_all
  psql_q <<SQL
SET client_min_messages = warning;
-- The subscription's pull (against http://127.0.0.1:1) must not run: a day ahead.
UPDATE dbsync.job SET run_at = now() + interval '1 day' WHERE kind = 'changes_pull';
UPDATE dbsync.subscription SET cursor_version = 0 WHERE id = $sub;
DELETE FROM dbsync.job WHERE kind = 'map_apply';
UPDATE dbsync.subscription SET enabled = true WHERE id = $sub;
SQL
  settle
  w_wall0=$(now)
  xid=$(psql_q -c "UPDATE dbsync.subscription SET cursor_version = $v_max + 1 WHERE id = $sub RETURNING txid_current()")
  ok=$(psql_q -c "CALL bench_wait('NOT EXISTS (SELECT FROM dbsync.job WHERE kind = ''map_apply'' AND state IN (''pending'', ''running''))
                              AND (SELECT min(applied_version) FROM dbsync.mapping) >= $v_max', 0.05, $timeout)")
  w_wall=$(calc "$(now) - $w_wall0")
  if [ "$ok" != t ]; then
    w_dnf=1; fail=1
    echo "FAIL (worker): the worker's apply did not finish in $timeout s (CONN_BENCH_TIMEOUT)"
  fi
  psql_q -F ' ' -c "SELECT round(extract(epoch FROM max(j.finished_at) - pg_xact_commit_timestamp(($xid % 4294967296)::text::xid))::numeric, 3),
                           count(*), count(*) FILTER (WHERE state <> 'done'),
                           sum((j.result->>'rounds')::int)
                      FROM dbsync.job j WHERE j.kind = 'map_apply'" > "$work/worker"
  read -r w_secs w_jobs w_bad w_rounds < "$work/worker"
  psql_q -c "UPDATE dbsync.subscription SET enabled = false WHERE id = $sub"
  if [ "$w_dnf" = 0 ]; then
    [ "$w_bad" -eq 0 ] || { echo "FAIL (worker): $w_bad map_apply jobs did not end done"; fail=1
      psql_q -c "SELECT id, state, last_error FROM dbsync.job WHERE kind = 'map_apply' AND state <> 'done'"; }
    check_sides worker
  fi
  log "worker: $w_secs s from the commit to the last round ($w_jobs jobs, $w_rounds rounds)"
fi

# 2. Noop jobs.
noop_commit=""; noop_wall=""; noop_enq=""
for r in $(seq 1 "$noop_rounds"); do
  settle
  last=$(psql_q -c "SELECT coalesce(max(id), 0) FROM dbsync.job")
  log "noop jobs: round $r of $noop_rounds, $noop_jobs jobs"
  t0=$(now)
  xid=$(psql_q -c "BEGIN" -c "SELECT count(dbsync_job_enqueue('noop')) FROM generate_series(1, $noop_jobs)" \
               -c "SELECT txid_current()" -c "COMMIT" | tail -1)
  t1=$(now)
  ok=$(psql_q -c "CALL bench_wait('(SELECT count(*) FROM dbsync.job WHERE id > $last AND kind = ''noop'' AND state = ''done'') >= $noop_jobs', 0.005, 600)")
  t2=$(now)
  [ "$ok" = t ] || { echo "FAIL: the noop jobs were not all done after 600 s"; fail=1; }
  read -r c_secs n_done < <(psql_q -F ' ' -c "SELECT round(extract(epoch FROM max(finished_at) - pg_xact_commit_timestamp(($xid % 4294967296)::text::xid))::numeric, 3),
                                                     count(*) FROM dbsync.job WHERE id > $last AND kind = 'noop' AND state = 'done'")
  [ "$n_done" -eq "$noop_jobs" ] || { echo "FAIL: $n_done noop jobs done, not $noop_jobs"; fail=1; }
  noop_commit="$noop_commit $c_secs"; noop_wall="$noop_wall $(calc "$t2 - $t0")"; noop_enq="$noop_enq $(calc "$t1 - $t0")"
  log "noop: commit to last finished $c_secs s; wall $(calc "$t2 - $t0") s"
done

# The report.
echo
echo "dbsync connector benchmark: commit $commit, $(date -u '+%Y-%m-%d %H:%M UTC')"
printf 'machine: %s cores, %s, %s GiB; %s; load average %s\n' "$(nproc)" \
  "$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
  "$(awk '/^MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo)" "$(psql_q -c "SELECT version()" | cut -d, -f1)" \
  "$(cut -d' ' -f1-3 /proc/loadavg)"
echo "cluster: fsync on, shared_buffers 2GB, work_mem 32MB, max_wal_size 16GB, dbsync.map_batch_size $(psql_q -c 'SHOW dbsync.map_batch_size'), dbsync.max_runners $(psql_q -c 'SHOW dbsync.max_runners')"
printf 'staged: %s changes, versions %s..%s (staging took %.1f s)\n' "$n_changes" "$v_min" "$v_max" "$stage_secs"
echo "  evidence | records | deleted | changes | of which updates | of which deletes"
sed 's/^/    /' "$work/staged"
echo
echo "1. apply of the staged changes into empty tables, median of $rounds rounds (seconds; backend CPU)"
printf '%-40s %10s %10s   %s\n' side seconds "CPU s" "each round (s)"
printf '%-40s %10.3f %10.2f   %s\n' "hand-written INSERT ... ON CONFLICT" "$m_hand" "$(median "${cpu[hand]}")" "${secs[hand]# }"
if [ "$dnf" = 0 ]; then
  printf '%-40s %10.3f %10.2f   %s\n' "dbsync_map_apply('flexi')" "$m_dbsync" "$(median "${cpu[dbsync]}")" "${secs[dbsync]# }"
  printf 'ratio dbsync / hand-written  %.3f   goal <= 1.5   %s\n' "$ratio" \
    "$(awk "BEGIN { print ($ratio <= 1.5) ? \"met\" : \"missed\" }")"
  echo "rows (partner invoice invoice_line): dbsync $counts, hand-written $(cut -d' ' -f1-3 <<<"$hand_ref"); live staged records $expected"
  echo "dbsync_map_apply: inserted $d_ins, updated $d_upd, deleted $d_del, waiting $d_wait, failed $d_fail, applied_version $d_ver;"
  echo "  $bindings bindings; checkpoints made on the way (all closed): $(cut -d' ' -f1 <<<"$cps") ($(cut -d' ' -f2 <<<"$cps") 'reference')"
else
  printf '%-40s %10s %10s   %s\n' "dbsync_map_apply('flexi')" "> $timeout" "-" "did not finish (CONN_BENCH_TIMEOUT)"
  printf 'ratio dbsync / hand-written  > %.1f   goal <= 1.5   missed\n' "$ratio"
  echo "rows (partner invoice invoice_line): hand-written $(digest hand | cut -d' ' -f1-3) after its last run; live staged records $expected"
fi
if [ "$worker" = 1 ] && [ "$w_dnf" = 0 ]; then
  printf 'background worker: %.3f s from the commit of the cursor to the last round (%s map_apply jobs, %s rounds); wall %.3f s; %.3f of hand-written\n' \
    "$w_secs" "$w_jobs" "$w_rounds" "$w_wall" "$(calc "$w_secs / $m_hand")"
elif [ "$worker" = 1 ]; then
  echo "background worker: did not finish in $timeout s"
elif [ "$worker" = skipped ]; then
  echo "background worker: skipped (the apply from psql did not finish)"
fi
if [ "$profile" = 1 ]; then
  for side in hand dbsync; do
    IFS='|' read -r s c < "$work/profile-$side.time"
    echo
    what="this run $s s, CPU $c s"; [ "$c" = - ] && what=$s
    echo "profile, $side (pg_stat_statements.track = all; $what): calls | seconds | rows | statement"
    sed 's/^/  /' "$work/profile-$side.out"
  done
fi
echo
m_commit=$(median "$noop_commit")
echo "2. $noop_jobs noop jobs enqueued in one transaction, $noop_rounds rounds (seconds)"
echo "  commit to the last job's finished_at:$noop_commit   (median $m_commit)"
echo "  wall, BEGIN until a poll saw all done:$noop_wall"
echo "  of which the enqueueing transaction:$noop_enq"
printf '  goal < 1 s   %s\n' "$(awk "BEGIN { print ($m_commit < 1) ? \"met\" : \"missed\" }")"
[ "$fail" -eq 0 ] && echo "check: dbsync's tables equal the hand-written baseline's after every run; no open checkpoint"
echo "run time: $(( $(date +%s) - started )) s"
exit "$fail"
