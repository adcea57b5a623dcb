#!/usr/bin/env bash
# A real PostgreSQL server on loopback in a scratch folder, for a shared MLflow tracking store and
# Optuna RDB storage; no systemd: initdb + pg_ctl as the `postgres` user, stopped by its PID file.
#   scripts/postgres.sh up DIR      # prints the server URI; DIR/env exports PAE_LAB_PG_URI
#   scripts/postgres.sh down DIR
# Databases `mlflow` and `optuna` are created; user `postgres`, trust auth on 127.0.0.1 only.
# Debian package: postgresql (scripts/install_test_services.sh).
set -euo pipefail
cmd=${1:?usage: $0 up|down DIR}
dir=$(realpath -m "${2:?usage: $0 up|down DIR}")
TIMEOUT_S=30

bindir() {  # Debian keeps the server binaries out of PATH, one folder per major version
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$found" ] && [ -x "$found/pg_ctl" ] || { echo "PostgreSQL not found: run scripts/install_test_services.sh" >&2; exit 3; }
  echo "$found"
}

as_pg() {  # the server refuses to run as root
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

down() {
  local f=$dir/postgres.pid pid data
  if [ -s "$f" ]; then
    pid=$(cat "$f")
    kill -INT "$pid" 2>/dev/null || true  # SIGINT: PostgreSQL's fast shutdown
    for _ in $(seq $((TIMEOUT_S * 10))); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$f"
  fi
  if [ -s "$dir/data.path" ]; then  # the cluster lives outside DIR (see up): remove it too
    data=$(cat "$dir/data.path")
    case $data in /tmp/paelab-pg.*) rm -rf "$data" ;; esac
    rm -f "$dir/data.path"
  fi
}

up() {
  local bin port data
  bin=$(bindir)
  mkdir -p "$dir"
  # A folder the postgres user can reach even when DIR sits under a private (0700) temp folder.
  data=$(mktemp -d /tmp/paelab-pg.XXXXXX)
  echo "$data" > "$dir/data.path"
  [ "$(id -u)" = 0 ] && chown postgres: "$data"
  as_pg "$bin/initdb" -D "$data/db" -U postgres --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; down; exit 1; }
  port=$(free_port)
  if ! as_pg "$bin/pg_ctl" -D "$data/db" -l "$data/postgres.log" -w -t "$TIMEOUT_S" \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c max_connections=200" start >/dev/null; then
    cat "$data/postgres.log" >&2; down; exit 1
  fi
  head -1 "$data/db/postmaster.pid" > "$dir/postgres.pid"
  for db in mlflow optuna; do
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db"
  done
  echo "postgresql://postgres@127.0.0.1:$port" > "$dir/uri"
  echo "export PAE_LAB_PG_URI=postgresql://postgres@127.0.0.1:$port" > "$dir/env"
  echo "postgres up: postgresql://postgres@127.0.0.1:$port (databases mlflow, optuna; log $data/postgres.log)"
}

case $cmd in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down DIR" >&2; exit 2 ;;
esac
