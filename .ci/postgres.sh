# Sourced by .ci/services.sh: a throw-away PostgreSQL server on loopback for the store tests, stopped on exit.
# Sets TANSAKU_TEST_POSTGRES_URL (tests run on SQLite only when it is unset); stop_postgres stops it by PID.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pg_bin)" ]; then
    echo "installing PostgreSQL with apt-get"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
PG_BIN="$(pg_bin)"
PG_DIR="$(mktemp -d /tmp/tansaku-pg.XXXXXX)"
PG_PORT="${TANSAKU_PG_PORT:-55432}"
chown postgres "$PG_DIR"
as_postgres() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_postgres "$PG_BIN/initdb" -D "$PG_DIR/data" -U postgres --auth=trust -E UTF8 >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w \
    -o "-h 127.0.0.1 -p $PG_PORT -k $PG_DIR -c max_connections=200" start >/dev/null
PG_PID="$(head -1 "$PG_DIR/data/postmaster.pid")"
stop_postgres() { kill "$PG_PID" 2>/dev/null; while kill -0 "$PG_PID" 2>/dev/null; do sleep 0.2; done; rm -rf "$PG_DIR"; }

as_postgres "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres tansaku_test
export TANSAKU_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/tansaku_test"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (pid $PG_PID)"
