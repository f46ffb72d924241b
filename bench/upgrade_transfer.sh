#!/usr/bin/env bash
# Benchmark: a 2 GiB dump up to and down from the Odoo upgrade simulator, with
# dbsync and with the curl command line, alternating, in one run:
#   upload    dbsync_upgrade_upload(id, '/path/dump') of a real 2 GiB file, and
#             curl -X POST -T dump -H 'Content-Type: application/octet-stream'
#             to /database/v1/upload of another request (curl's --data-binary
#             @dump reads the file into memory and refuses files over 1 GiB);
#   download  the upgraded dump of a sparse request (filename ending
#             .sparse-2G: the simulator generates 2 GiB, stores nothing; it
#             still needs an upload, a small one) after dbsync_upgrade_process
#             and polling dbsync_upgrade_status until done:
#             dbsync_upgrade_download(id, '/path/file'), and curl -o file of
#             the same URL (upgraded_dump_url of dbsync.upgrade_request).
# All dbsync calls run in one psql session (curl runs from it with \!), so the
# backend's memory is read before and after everything (/proc/<pid>/status:
# VmHWM, RssAnon; RssAnon also sampled every 0.1 s). Prints the median (and
# best) time and MB/s (10^6 bytes/s) of each transfer, the ratios dbsync/curl
# of the times and the backend's memory growth.
# Usage: bench/upgrade_transfer.sh [rounds]
#
# A warm-up round (not counted) comes first; then curl goes first in odd
# rounds, dbsync in even ones. Times: wall clock (dbsync: in the backend,
# clock_timestamp() around the call) and CPU (the backend's, from
# /proc/<pid>/stat; curl's user + sys). Checks: each upload arrived whole (the
# simulator's size and SHA-256 of what it stored), each download has 2 GiB,
# and in the warm-up both downloads have the SHA-256 dbsync computed.
#
# Every transfer starts from the same state: `sync` first (no transfer pays
# for an earlier one's writeback), and what the one before it wrote is gone
# (a download's file is removed once checked, an upload by POST /_sim/reset).
# On this project's VM, writing into page cache beyond what is already
# resident costs about three times the CPU (the host backs the guest's
# memory lazily), so whichever transfer came second paid for the first one's
# 2 GiB. The same made the first upload of a round up to twice as slow as
# the second (the simulator copying the body into page cache: 2.5 s instead
# of 0.5 s), so each round starts with an untimed upload (curl, removed at
# once): both timed uploads then come right after one. And the dump is read
# (cat > /dev/null) before each upload, so both read it from page cache.
# Every file (the dump, downloads, the simulator's stored uploads, the
# cluster) lives in one temp dir, removed at exit.
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ] && [ "${1:-}" != --step ]; then
  ensure_packages
  build_and_install "$src"
  run_unprivileged "$src" bench/upgrade_transfer.sh --inside "${1:-3}"
  exit
fi

# --- steps run from the psql session (\! bench/upgrade_transfer.sh --step ...) ---
# They see the settings through the environment (B_WORK, B_BASE, B_SIZE, B_SHA).
# Checks that the simulator stored the dump whole for request $1.
sim_has_dump() {
  local got
  got=$(curl -sS --fail "$B_BASE/_sim/odoo/requests?request=$1" |
    python3 -c 'import json, sys; s = json.load(sys.stdin)["requests"][0]["sim"]; print(s["upload_bytes"], s["upload_sha256"])')
  [ "$got" = "$B_SIZE $B_SHA" ] || { echo "request $1: the simulator stored $got, not the dump" >&2; return 1; }
}
# Appends "real user sys" of a curl command to file $1.
timed_curl() {
  local out=$1; shift
  sync
  TIMEFORMAT='%R %U %S'
  { time curl -sS --fail "$@" 2>"$B_WORK/curl.err"; } 2>>"$out" ||
    { echo "curl failed: $(cat "$B_WORK/curl.err")" >&2; return 1; }
}
if [ "${1:-}" = --step ]; then
  # psql 15 ignores the exit status of \!: a failed step leaves a mark the session checks.
  trap '[ $? = 0 ] || touch "$B_WORK/step_failed"' EXIT
  case $2 in
    curl_up)  # curl_up [TIMES]: times to t_curl_up, or to TIMES (the untimed priming upload)
      read -r id key < "$B_WORK/curl_req" || { echo "no request for curl" >&2; exit 1; }
      # Not --data-binary @file: curl reads that into memory and refuses over 1 GiB
      # ("option --data-binary: out of memory"); -T streams the file as dbsync does.
      cat "$B_WORK/dump" > /dev/null  # in page cache for both (see above)
      timed_curl "$B_WORK/${3:-t_curl_up}" -o "$B_WORK/curl_up.json" -X POST -T "$B_WORK/dump" \
        -H 'Content-Type: application/octet-stream' "$B_BASE/database/v1/upload?key=$key&request=$id"
      grep -q '"failures": \[\]' "$B_WORK/curl_up.json" ||
        { echo "curl upload refused: $(cat "$B_WORK/curl_up.json")" >&2; exit 1; }
      sim_has_dump "$id" ;;
    dbsync_up)  # after dbsync's upload
      sim_has_dump "$(cat "$B_WORK/dbsync_req")" ;;
    curl_down)
      timed_curl "$B_WORK/t_curl_down" -o "$B_WORK/dl.curl" "$(cat "$B_WORK/curl_url")" ;;
    got)  # got FILE ROUND: a download, checked and removed
      [ "$(stat -c %s "$B_WORK/$3")" = "$B_SIZE" ] || { echo "$3 is not $B_SIZE bytes" >&2; exit 1; }
      if [ "$4" = 0 ]; then
        [ "$(openssl dgst -sha256 -r "$B_WORK/$3" | cut -d' ' -f1)" = "$(cat "$B_WORK/dl_sha")" ] ||
          { echo "$3 does not have the SHA-256 dbsync computed" >&2; exit 1; }
      fi
      rm -f "$B_WORK/$3" ;;
    reset)  # the simulator forgets its requests and removes their uploads
      curl -sS --fail -o /dev/null -X POST "$B_BASE/_sim/reset" ;;
    *) echo "unknown step $2" >&2; exit 1 ;;
  esac
  exit
fi

rounds=${2:-3}
mib=${DBSYNC_BENCH_MIB:-2048}  # other sizes for trying the script out only
size=$((mib << 20))
if [ $((mib % 1024)) = 0 ]; then sparse="$((mib / 1024))G" human="$((mib / 1024)) GiB"; else sparse="${mib}M" human="$mib MiB"; fi

work=$(mktemp -d /tmp/dbsync-bench.XXXXXX)
sampler=""
trap '[ -n "$sampler" ] && kill "$sampler" 2>/dev/null; stop_cluster; stop_simulator; rm -rf "$work"' EXIT

start_simulator "$work"  # keeps uploads in $work/odoo (--odoo-dir)
base="http://127.0.0.1:$DBSYNC_SIM_PORT"
start_cluster "$work"

psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
calc() { awk "BEGIN { printf \"%.6f\\n\", $1 }"; }
psql_q -c "CREATE EXTENSION dbsync" \
  -c "CREATE SERVER odoo FOREIGN DATA WRAPPER dbsync OPTIONS (api 'odoo_upgrade', url '$base')" \
  -c "CREATE USER MAPPING FOR CURRENT_USER SERVER odoo OPTIONS (contract 'M123456-abcdef', email 'dba@example.com')"

# The dump: a real file of pseudo-random bytes (AES-CTR keystream; the
# simulator stores and hashes what it gets, compresses nothing).
log "writing a $human dump"
{ openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:dbsync-bench < /dev/zero 2>/dev/null || true; } |
  head -c "$size" > "$work/dump"
[ "$(stat -c %s "$work/dump")" = "$size" ] || { echo "could not write the dump" >&2; exit 1; }
head -c 65536 "$work/dump" > "$work/small"  # the sparse request's upload
sha=$(openssl dgst -sha256 -r "$work/dump" | cut -d' ' -f1)
export B_WORK=$work B_BASE=$base B_SIZE=$size B_SHA=$sha
step="$src/bench/upgrade_transfer.sh --step"

# --- the session's script ---
mem_sql="SELECT string_agg(split_part(l, ':', 1) || '=' || (regexp_match(l, '[0-9]+'))[1], ' ')
  FROM regexp_split_to_table(pg_read_file('/proc/' || pg_backend_pid() || '/status'), '\n') l
 WHERE l ~ '^(VmHWM|VmRSS|RssAnon|RssFile|RssShmem):'"
clk=$(getconf CLK_TCK)
cpu_sql="(SELECT (split_part(s, ' ', 14)::bigint + split_part(s, ' ', 15)::bigint) / $clk.0
            FROM pg_read_file('/proc/' || pg_backend_pid() || '/stat') s)"
# Usage: timed_sql NAME 'SELECT ... \gset' [SHELL]: SHELL and sync first, then the call, its
# wall and backend CPU time.
timed_sql() {
  cat <<SQL
\\! ${3:+$3; }sync
SELECT extract(epoch FROM clock_timestamp()) AS t0, $cpu_sql AS c0 \\gset
$2
SELECT extract(epoch FROM clock_timestamp()) - :t0, $cpu_sql - :c0 \\g |cat >> $work/t_dbsync_$1
SQL
}
# A step of this script, then a check that it did not fail.
step_sql() {
  printf '\\! %s %s\n' "$step" "$1"
  printf "SELECT pg_temp.check(pg_stat_file('%s', true) IS NULL, 'step %s (see its message above)');\\n" \
    "$work/step_failed" "$1"
}
# Forgets every request, here and in the simulator (which removes their uploads).
forget_sql() {
  printf '%s\n' "DELETE FROM dbsync.job WHERE kind = 'upgrade_poll';" "DELETE FROM dbsync.upgrade_request;"
  step_sql reset
}
# Usage: in_order ROUND A B: A then B in odd rounds, B then A in even ones.
in_order() { if [ $(($1 % 2)) = 1 ]; then printf '%s\n%s\n' "$2" "$3"; else printf '%s\n%s\n' "$3" "$2"; fi; }
{
  cat <<SQL
\\pset fieldsep ' '
\\o /dev/null
SELECT pg_backend_pid() \\g $work/pid
SELECT 'before ' || ($mem_sql) \\g |cat >> $work/mem
CREATE FUNCTION pg_temp.check(ok boolean, what text) RETURNS void LANGUAGE plpgsql AS \$\$
BEGIN
  IF ok IS NOT TRUE THEN RAISE EXCEPTION 'check failed: %', what; END IF;
END \$\$;
CREATE FUNCTION pg_temp.wait_done(rid bigint) RETURNS text LANGUAGE plpgsql AS \$\$
DECLARE s text;
BEGIN
  FOR i IN 1..200 LOOP
    SELECT state INTO s FROM dbsync_upgrade_status(rid);
    EXIT WHEN s IN ('done', 'failed', 'cancelled');
    PERFORM pg_sleep(0.05);
  END LOOP;
  RETURN s;
END \$\$;
SQL
  for r in $(seq 0 "$rounds"); do  # round 0: the warm-up, not counted
    up_curl="SELECT id AS c_id FROM dbsync_upgrade_create('odoo', '16.0', 'test', 'curl-$r.dump') \\gset
SELECT id || ' ' || request_key FROM dbsync.upgrade_request WHERE id = :c_id \\g $work/curl_req
$(step_sql curl_up)
$(forget_sql)"
    up_dbsync="SELECT id AS d_id FROM dbsync_upgrade_create('odoo', '16.0', 'test', 'dbsync-$r.dump') \\gset
SELECT :d_id \\g $work/dbsync_req
$(timed_sql up "SELECT bytes AS up_bytes, sha256 AS up_sha FROM dbsync_upgrade_upload(:d_id, '$work/dump') \\gset" "cat $work/dump > /dev/null")
SELECT pg_temp.check(:up_bytes = $size AND :'up_sha' = '$sha', 'dbsync upload: bytes and SHA-256');
$(step_sql dbsync_up)
$(forget_sql)"
    down_curl="$(step_sql curl_down)
$(step_sql "got dl.curl $r")"
    down_dbsync="$(timed_sql down "SELECT bytes AS dl_bytes, sha256 AS dl_sha FROM dbsync_upgrade_download(:s_id, '$work/dl.dbsync') \\gset")
SELECT pg_temp.check(:dl_bytes = $size, 'dbsync download: bytes');
SELECT :'dl_sha' \\g $work/dl_sha
$(step_sql "got dl.dbsync $r")"
    cat <<SQL
\\echo $([ "$r" = 0 ] && echo "warm-up round" || echo "round $r of $rounds")
SELECT id AS c_id FROM dbsync_upgrade_create('odoo', '16.0', 'test', 'prime-$r.dump') \\gset
SELECT id || ' ' || request_key FROM dbsync.upgrade_request WHERE id = :c_id \\g $work/curl_req
$(step_sql "curl_up prime")
$(forget_sql)
$(in_order "$r" "$up_curl" "$up_dbsync")
SELECT id AS s_id FROM dbsync_upgrade_create('odoo', '16.0', 'test', 'dbsync-$r.dump.sparse-$sparse') \\gset
SELECT pg_temp.check(bytes = 65536, 'small upload') FROM dbsync_upgrade_upload(:s_id, '$work/small');
SELECT pg_temp.check(dbsync_upgrade_process(:s_id) = 'pending', 'process');
SELECT pg_temp.check(pg_temp.wait_done(:s_id) = 'done', 'the request is done');
SELECT upgraded_dump_url FROM dbsync.upgrade_request WHERE id = :s_id \\g $work/curl_url
$(if [ "$r" = 0 ]; then printf '%s\n%s\n' "$down_dbsync" "$down_curl"; else in_order "$r" "$down_curl" "$down_dbsync"; fi)
$(forget_sql)
SELECT 'round$r ' || ($mem_sql) \\g |cat >> $work/mem
SQL
  done
} > "$work/bench.sql"

# Samples the backend's private memory (RssAnon) until stop_sampler exists.
sample_anon() {
  local pid="" peak=0 v
  while [ ! -e "$work/stop_sampler" ]; do
    if [ -z "$pid" ]; then
      [ -s "$work/pid" ] && pid=$(cat "$work/pid")
    elif v=$(awk '/^RssAnon:/ {print $2}' "/proc/$pid/status" 2>/dev/null) && [ -n "$v" ]; then
      [ "$v" -gt "$peak" ] && peak=$v
    fi
    sleep 0.1
  done
  echo "$peak" > "$work/anon_peak"
}
sample_anon & sampler=$!
log "$rounds rounds of $human up and down, dbsync and curl"
psql_q -f "$work/bench.sql" >&2
touch "$work/stop_sampler"; wait "$sampler"; sampler=""
for f in t_curl_up t_dbsync_up t_curl_down t_dbsync_down; do  # drop the warm-up's line
  tail -n +2 "$work/$f" > "$work/$f.tmp" && mv "$work/$f.tmp" "$work/$f"
done

median() { sort -g "$1" | awk 'NF {a[++n]=$1} END {print (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2}'; }
best() { sort -g "$1" | head -1; }
col() { awk -v c="$2" '{print $c}' "$work/$1" > "$work/$1.$2"; "${3:-median}" "$work/$1.$2"; }
mbs() { calc "$size / 1000000 / $1"; }
line() {  # NAME FILE (columns: seconds, then CPU: the backend's, or curl's user and sys)
  local t b; t=$(col "$2" 1); b=$(col "$2" 1 best)
  awk '{print ($3 == "") ? $2 : $2 + $3}' "$work/$2" > "$work/$2.cpu"
  printf '%-33s %6.2f s %5.0f MB/s  CPU %5.2f s | best %6.2f s %5.0f MB/s | rounds: %s\n' "$1" "$t" "$(mbs "$t")" \
    "$(median "$work/$2.cpu")" "$b" "$(mbs "$b")" "$(awk '{printf "%s%.2f", (NR > 1 ? ", " : ""), $1}' "$work/$2")"
}
ratio() { calc "$(col "t_dbsync_$1" 1 "$2") / $(col "t_curl_$1" 1 "$2")"; }
echo "dump: $human ($size bytes), rounds: $rounds (median, and best; MB = 10^6 bytes; CPU: median)"
line "upload    curl -X POST -T file" t_curl_up
line "          dbsync_upgrade_upload" t_dbsync_up
line "download  curl -o file" t_curl_down
line "          dbsync_upgrade_download" t_dbsync_down
printf 'ratio dbsync/curl time: upload %.3f, download %.3f (goal: at most 1.1); best times: %.3f, %.3f\n' \
  "$(ratio up median)" "$(ratio down median)" "$(ratio up best)" "$(ratio down best)"
kb() { awk -v w="$1" -v k="$2" '$1 == w {for (i = 2; i <= NF; i++) if (split($i, kv, "=") == 2 && kv[1] == k) print kv[2]}' "$work/mem"; }
mb() { calc "$1 / 1024"; }
hb=$(kb before VmHWM); ha=$(kb "round$rounds" VmHWM); h1=$(kb round0 VmHWM)
ab=$(kb before RssAnon); aa=$(kb "round$rounds" RssAnon); ap=$(cat "$work/anon_peak")
printf 'backend memory (goal: growth under 20 MB):\n'
printf '  VmHWM    before %6.1f MB, after the warm-up %6.1f MB, after round %s %6.1f MB: growth %5.1f MB\n' \
  "$(mb "$hb")" "$(mb "$h1")" "$rounds" "$(mb "$ha")" "$(mb "$((ha - hb))")"
printf '  RssAnon  before %6.1f MB, after %6.1f MB, sampled peak %6.1f MB: growth %5.1f MB (peak %5.1f MB)\n' \
  "$(mb "$ab")" "$(mb "$aa")" "$(mb "$ap")" "$(mb "$((aa - ab))")" "$(mb "$((ap > ab ? ap - ab : 0))")"
printf '  before:     %s (kB)\n  at the end: %s (kB)\n' "$(grep "^before " "$work/mem" | cut -d' ' -f2-)" \
  "$(grep "^round$rounds " "$work/mem" | cut -d' ' -f2-)"
