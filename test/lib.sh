# Shared by test/check, test/demo and bench/: packages, build, a throwaway
# cluster and the API simulator. Source it; it defines functions only.

PG_BIN=/usr/lib/postgresql/15/bin
PG_CONFIG=$PG_BIN/pg_config
DBSYNC_PACKAGES="make gcc postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libjansson-dev libssl-dev
  libpq-dev libipc-run-perl python3 curl ca-certificates openssl postgresql-15-cron"
# The unprivileged user that runs clusters (initdb refuses root).
DBSYNC_TEST_USER=${DBSYNC_TEST_USER:-postgres}

log() { printf '== %s\n' "$*" >&2; }

# Installs the Debian packages that are missing (needs root when any is).
ensure_packages() {
  local missing=() p
  for p in $DBSYNC_PACKAGES "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    echo "missing packages: ${missing[*]} (run as root, or install them)" >&2
    return 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Builds with warnings as errors and installs into PostgreSQL 15.
build_and_install() {
  local src=$1
  log "building dbsync"
  make -C "$src" -s PG_CONFIG="$PG_CONFIG" >/dev/null
  if [ -w "$($PG_CONFIG --pkglibdir)" ]; then
    make -C "$src" -s PG_CONFIG="$PG_CONFIG" install >/dev/null
  else
    echo "cannot write $($PG_CONFIG --pkglibdir): run as root to install dbsync" >&2
    return 1
  fi
}

# Runs a command as the unprivileged user in a copy of the tree it can write.
# Usage: run_unprivileged SRC COMMAND...   (the command runs in the copy)
run_unprivileged() {
  local src=$1; shift
  if [ "$(id -u)" != 0 ]; then
    (cd "$src" && "$@")
    return
  fi
  local copy
  copy=$(mktemp -d /tmp/dbsync-run.XXXXXX)
  tar -C "$src" --exclude=.git --exclude=tmp_check --exclude=tmp_check_regress -cf - . | tar -C "$copy" -xf -
  chown -R "$DBSYNC_TEST_USER" "$copy"
  local rc=0
  su "$DBSYNC_TEST_USER" -s /bin/bash -c "cd '$copy' && PATH='$PATH' CI='${CI:-}' $(printf '%q ' "$@")" || rc=$?
  rm -rf "$copy"
  return $rc
}

# Starts the simulator, plain HTTP and HTTPS; sets SIM_PID, DBSYNC_SIM_PORT,
# DBSYNC_SIM_TLS_PORT (HTTPS) and DBSYNC_SIM_CA (absolute path of the throwaway
# CA that signed the HTTPS listener's certificate for 127.0.0.1 and localhost;
# DIR also gets server.pem and server.key). Usage: start_simulator DIR
start_simulator() {
  local dir i
  dir=$(cd "$1" && pwd) || return 1
  rm -f "$dir/sim.port" "$dir/sim-tls.port"
  sh test/sim/make_certs.sh "$dir" || { echo "could not make the simulator's TLS certificates" >&2; return 1; }
  mkdir -p "$dir/odoo"
  python3 test/sim/dbsync_sim.py --port 0 --port-file "$dir/sim.port" --log "$dir/sim.log" --odoo-dir "$dir/odoo" \
    --user api --password "${DBSYNC_SIM_PASSWORD:-S3cr3t-pw}" \
    --tls-cert "$dir/server.pem" --tls-key "$dir/server.key" --tls-port-file "$dir/sim-tls.port" &
  SIM_PID=$!
  # The simulator writes sim-tls.port before sim.port.
  for i in $(seq 1 100); do
    [ -s "$dir/sim.port" ] && break
    kill -0 "$SIM_PID" 2>/dev/null || { echo "the API simulator did not start" >&2; return 1; }
    sleep 0.1
  done
  [ -s "$dir/sim.port" ] && [ -s "$dir/sim-tls.port" ] || { echo "the API simulator did not start in 10 s" >&2; return 1; }
  DBSYNC_SIM_PORT=$(cat "$dir/sim.port")
  DBSYNC_SIM_TLS_PORT=$(cat "$dir/sim-tls.port")
  DBSYNC_SIM_CA=$dir/ca.pem
  export DBSYNC_SIM_PORT DBSYNC_SIM_TLS_PORT DBSYNC_SIM_CA
}

stop_simulator() {
  [ -n "${SIM_PID:-}" ] && kill "$SIM_PID" 2>/dev/null && wait "$SIM_PID" 2>/dev/null
  SIM_PID=
  return 0
}

# A throwaway cluster with dbsync preloaded; sets PGHOST, PGPORT, PGDATA.
# Usage: start_cluster DIR
start_cluster() {
  local dir=$1
  export PGDATA=$dir/data PGHOST=$dir PGPORT=${PGPORT_OVERRIDE:-$((20000 + RANDOM % 20000))} PGUSER=$(id -un)
  export PGDATABASE=postgres
  "$PG_BIN/initdb" -D "$PGDATA" -A trust --no-sync >/dev/null
  cat >> "$PGDATA/postgresql.conf" <<CONF
shared_preload_libraries = 'dbsync'
dbsync.databases = 'postgres'
dbsync.naptime = 5
listen_addresses = ''
unix_socket_directories = '$dir'
port = $PGPORT
fsync = off
CONF
  "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$dir/postgres.log" -w start >/dev/null
}

stop_cluster() {
  [ -n "${PGDATA:-}" ] && [ -f "$PGDATA/postmaster.pid" ] && "$PG_BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
  return 0
}
