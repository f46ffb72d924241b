#!/usr/bin/env bash
# Benchmark: read a change log of 100,000 changes in pages of 1,000 from the
# simulator, with dbsync_changes_fetch (one psql session following
# next_version) and with the curl command line fetching the same 100 pages over
# one kept-alive connection (the practical ceiling). Prints both rates and the
# ratio of dbsync's time to curl's. Usage: bench/changes_fetch.sh [rounds]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
. "$src/test/lib.sh"

if [ "${1:-}" != --inside ]; then
  ensure_packages
  build_and_install "$src"
  run_unprivileged "$src" bench/changes_fetch.sh --inside "${1:-5}"
  exit
fi
rounds=${2:-5}
changes=100000
page=1000

work=$(mktemp -d /tmp/dbsync-bench.XXXXXX)
trap 'stop_cluster; stop_simulator; rm -rf "$work"' EXIT
start_simulator "$work"
start_cluster "$work"
base="http://127.0.0.1:$DBSYNC_SIM_PORT"
pw=${DBSYNC_SIM_PASSWORD:-S3cr3t-pw}

psql_q() { "$PG_BIN/psql" -X -q -t -A -v ON_ERROR_STOP=1 "$@"; }
psql_q -c "CREATE EXTENSION dbsync" \
  -c "CREATE SERVER gen FOREIGN DATA WRAPPER dbsync OPTIONS (api 'flexi', url '$base', company 'gen$changes')" \
  -c "CREATE USER MAPPING FOR CURRENT_USER SERVER gen OPTIONS (user 'api', password '$pw')"

# The same pages for curl: the start of each page, read once by following next.
psql_q -o "$work/starts" -c "
  WITH RECURSIVE pages(start) AS (
    SELECT 0::bigint
    UNION ALL
    SELECT (SELECT max(next_version) FROM dbsync_changes_fetch('gen', start => p.start, \"limit\" => $page))
      FROM pages p WHERE p.start IS NOT NULL)
  SELECT start FROM pages WHERE start IS NOT NULL"
urls=()
while read -r s; do urls+=("$base/c/gen$changes/changes.json?limit=$page&start=$s"); done < "$work/starts"

cat > "$work/walk.sql" <<SQL
DO \$\$
DECLARE
  next_start bigint := 0;
  total bigint := 0;
  n bigint;
BEGIN
  WHILE next_start IS NOT NULL LOOP
    SELECT count(*), max(next_version) INTO n, next_start
      FROM dbsync_changes_fetch('gen', start => next_start, "limit" => $page);
    total := total + n;
  END LOOP;
  IF total <> $changes THEN
    RAISE EXCEPTION 'read % changes, expected $changes', total;
  END IF;
END \$\$;
SQL

now() { date +%s.%N; }
run_dbsync() { psql_q -f "$work/walk.sql"; }
run_curl() {
  local bytes
  bytes=$(curl -sS --fail -u "api:$pw" -H 'Accept: application/json' "${urls[@]}" | wc -c)
  [ "$bytes" -gt 0 ]
}

# One warm-up each, then alternate rounds; the median of each is reported.
run_dbsync; run_curl
: > "$work/t_dbsync"; : > "$work/t_curl"
for r in $(seq 1 "$rounds"); do
  t0=$(now); run_curl; t1=$(now); echo "$t1 - $t0" | bc -l >> "$work/t_curl"
  t0=$(now); run_dbsync; t1=$(now); echo "$t1 - $t0" | bc -l >> "$work/t_dbsync"
done
median() { sort -g "$1" | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
tc=$(median "$work/t_curl"); td=$(median "$work/t_dbsync")
echo "pages: ${#urls[@]} of $page, changes: $changes, rounds: $rounds (median)"
printf 'curl (one connection):   %.3f s  %8.0f changes/s\n' "$tc" "$(echo "$changes / $tc" | bc -l)"
printf 'dbsync_changes_fetch:    %.3f s  %8.0f changes/s\n' "$td" "$(echo "$changes / $td" | bc -l)"
printf 'ratio dbsync/curl time:  %.3f (goal: at most 1.25)\n' "$(echo "$td / $tc" | bc -l)"
