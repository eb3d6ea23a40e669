#!/usr/bin/env bash
# Finds or starts a PostgreSQL for `make run` and `make test`, and prints
# the shell lines that point the service and the tests at it:
#   1. DATABASE_URL, when it is set;
#   2. otherwise a server answering on localhost:5432 (a `teleconsult`
#      database is created in it);
#   3. otherwise a private cluster under .data/pg on 127.0.0.1:55432, started
#      from the PostgreSQL binaries on the machine (installing Debian's
#      postgresql package first when they are missing and we are root).
# Usage: eval "$(scripts/postgres.sh)"
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "postgres.sh: $*" >&2; }
DB=teleconsult
PGUSER_NAME=${PGUSER:-postgres}

emit() { # $1 = server URL without database
  echo "export DATABASE_URL='${DATABASE_URL:-$1/$DB?sslmode=disable}'"
  echo "export TEST_DATABASE_URL='${TEST_DATABASE_URL:-$1/postgres?sslmode=disable}'"
}

if [ -n "${DATABASE_URL:-}" ]; then
  base=${DATABASE_URL%%\?*}; base=${base%/*}
  emit "$base"
  exit 0
fi

answers() { # host port
  if command -v pg_isready >/dev/null; then pg_isready -q -h "$1" -p "$2" -t 2; else (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; fi
}

ensure_db() { # host port
  if command -v psql >/dev/null; then
    if psql -h "$1" -p "$2" -U "$PGUSER_NAME" -d postgres -tAc "SELECT 1" >/dev/null 2>&1; then
      if [ -z "$(psql -h "$1" -p "$2" -U "$PGUSER_NAME" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$DB'")" ]; then
        psql -h "$1" -p "$2" -U "$PGUSER_NAME" -d postgres -qc "CREATE DATABASE $DB" >&2
        log "created database $DB on $1:$2"
      fi
      return 0
    fi
  fi
  return 1
}

if answers localhost 5432 && ensure_db localhost 5432; then
  emit "postgres://$PGUSER_NAME@localhost:5432"
  exit 0
fi

# A private cluster of our own.
PORT=55432
DATA=$PWD/.data/pg
RUN=$PWD/.data/pg-run
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
if [ -z "$bindir" ]; then
  if [ "$(id -u)" = 0 ]; then
    log "installing Debian's postgresql package"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    bindir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  else
    log "no PostgreSQL found: set DATABASE_URL, start a server on localhost:5432, or install the postgresql package"
    exit 1
  fi
fi
as_owner=()
if [ "$(id -u)" = 0 ]; then as_owner=(runuser -u postgres --); fi
mkdir -p "$DATA" "$RUN"
if [ "$(id -u)" = 0 ]; then chown postgres "$DATA" "$RUN"; chmod 700 "$DATA"; chmod o+x "$PWD/.data" "$PWD" 2>/dev/null || true; fi
if [ ! -f "$DATA/PG_VERSION" ]; then
  log "creating a private cluster in $DATA"
  "${as_owner[@]}" "$bindir/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
fi
if ! answers 127.0.0.1 $PORT; then
  log "starting the private cluster on 127.0.0.1:$PORT"
  "${as_owner[@]}" "$bindir/pg_ctl" -D "$DATA" -l "$RUN/postgres.log" -w -t 60 \
    -o "-p $PORT -k $RUN -c listen_addresses=127.0.0.1 -c max_connections=300 -c fsync=on" start >&2
fi
PGUSER_NAME=postgres
if ! ensure_db 127.0.0.1 $PORT; then
  "$bindir/psql" -h 127.0.0.1 -p $PORT -U postgres -d postgres -qc "CREATE DATABASE $DB" >&2 || true
fi
emit "postgres://postgres@127.0.0.1:$PORT"
