# shellcheck shell=bash
# Instructions per proxied request, counted by valgrind's callgrind: a figure that does not move
# with the machine's noise (hardware counters are not available here). Each proxy runs under
# callgrind with one worker (dana-bff: BFF_WORKER_THREADS=1; nginx: one worker, no master),
# uninstrumented while it starts and warms up; then counting is switched on, REQUESTS requests
# are sent over one keep-alive connection (the gateway benchmark's request: apikey + Alice's
# Bearer token, so the BFF verifies a JWT every time), and the counts are dumped. Per request =
# instructions counted / REQUESTS. The profiles stay in $STATE/instructions for
# callgrind_annotate.

REQUESTS=${REQUESTS:-2000}
CALLGRIND_BFF_PORT=${DANA_CALLGRIND_BFF_PORT:-54342}
CALLGRIND_NGINX_PORT=${DANA_CALLGRIND_NGINX_PORT:-54343}

ensure_valgrind() {
  command -v valgrind >/dev/null || ensure_apt_packages valgrind
}

# REQUESTS sequential GETs over one keep-alive connection (Python's http.client: its own cost
# is not counted, only the proxy runs under callgrind).
# BENCH_ORIGIN (e.g. http://localhost:3000) adds an Origin header: a browser's cross-origin call.
send_requests() { # port, path prefix, count
  python3 - "$1" "$2$BENCH_PATH" "$3" "$ANON_KEY" "$ALICE_JWT" "${BENCH_ORIGIN:-}" <<'PY'
import http.client, sys
port, path, count, apikey, jwt, origin = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
headers = {"apikey": apikey, "Authorization": "Bearer " + jwt}
if origin:
    headers["Origin"] = origin
for _ in range(count):
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"HTTP {response.status}")
PY
}

# Total instructions (Ir) of the last dump in a callgrind output folder.
callgrind_total() { # file
  awk '/^summary:/ { print $2 }' "$1" | tail -1
}

# Counts one proxy: its command runs under callgrind until the counted requests are done.
count_instructions() { # name, port, path prefix, command...
  local name=$1 port=$2 prefix=$3
  shift 3
  local out=$STATE/instructions/$name
  rm -rf "$out" && mkdir -p "$out"
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out/callgrind.out.%p" \
    "$@" >"$out/log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 600); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.2
  done
  send_requests "$port" "$prefix" 200 # warm-up, uncounted: connections, caches
  callgrind_control -i on "$pid" >/dev/null || die "callgrind_control could not reach $name"
  callgrind_control -z "$pid" >/dev/null
  send_requests "$port" "$prefix" "$REQUESTS"
  callgrind_control -d "$name" "$pid" >/dev/null
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local dump
  dump=$(grep -l "^desc: Trigger: dump $name" "$out"/callgrind.out.* | head -1)
  [[ -n $dump ]] || die "no callgrind dump for $name (log: $out/log)"
  echo "$dump"
}

instructions_bench() {
  gateway_instructions_bench
  db_instructions_bench
}

gateway_instructions_bench() {
  ensure_valgrind
  ensure_bench_tools
  local dir=$STATE/instructions
  mkdir -p "$dir/nginx"
  {
    cat <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 64; }
CONF
    nginx_proxy_http_block "$dir/nginx" "$CALLGRIND_NGINX_PORT" 8
  } >"$dir/nginx.conf"
  log "counting dana-bff's instructions over $REQUESTS requests (callgrind; slow)"
  local bff_dump nginx_dump
  # The settings go in the environment, not through `env`: valgrind would count `env` and let
  # the program it execs run uncounted.
  bff_dump=$(
    set -a
    eval "$(bff_env)"
    set +a
    export BFF_LISTEN=127.0.0.1:$CALLGRIND_BFF_PORT BFF_WORKER_THREADS=1
    count_instructions dana-bff "$CALLGRIND_BFF_PORT" /rest/v1 "$BFF_BIN" serve
  )
  log "counting nginx's instructions over $REQUESTS requests"
  nginx_dump=$(count_instructions nginx "$CALLGRIND_NGINX_PORT" /rest/v1 \
    nginx -c "$dir/nginx.conf" -p "$dir/nginx")
  local bff_total nginx_total
  bff_total=$(callgrind_total "$bff_dump")
  nginx_total=$(callgrind_total "$nginx_dump")
  cat <<TABLE

Instructions per request (callgrind, $REQUESTS requests over one keep-alive connection, one worker):

| proxy | instructions per request | vs nginx |
|---|---|---|
| dana-bff | $((bff_total / REQUESTS)) | $(awk "BEGIN { printf \"%.2f×\", $bff_total / $nginx_total }") |
| nginx | $((nginx_total / REQUESTS)) | 1.00× |

Where dana-bff's go (inclusive, per request; callgrind_annotate --inclusive=yes $bff_dump):
TABLE
  callgrind_annotate --inclusive=yes --threshold=99 "$bff_dump" 2>/dev/null |
    awk -v n="$REQUESTS" 'NR <= 200 && /^ *[0-9,]+ \(/ { c = $1; gsub(",", "", c); sub(/^ *[0-9,]+ \([^)]*\) +/, ""); printf "%10.0f  %s\n", c / n, $0 }' |
    awk 'NR <= 50'
}

# The database figures by instruction count, in a scratch cluster of its own (initdb under
# $STATE/instructions/pg; the stack's cluster is not touched):
#   - a BEFORE UPDATE row trigger, in single-user mode: instructions counted inside
#     ExecBRUpdateTriggersNew (the executor's BEFORE UPDATE dispatch: old tuple, trigger call,
#     new tuple) over a DB_ROWS-row UPDATE, per row, for dana.touch_updated_at() and moddatetime;
#   - count(*) under an owner policy with dana.uid() unwrapped vs the same filter without RLS,
#     on a server (single-user mode skips RLS) under callgrind: each query in a session of its
#     own (a backend, so a profile, of its own), instructions counted in standard_ExecutorRun.
DB_ROWS=${DB_ROWS:-20000}
CALLGRIND_PG_PORT=${DANA_CALLGRIND_PG_PORT:-54344}

fresh_scratch_cluster() {
  local dir=$STATE/instructions/pg
  rm -rf "$dir/data"
  su postgres -s /bin/bash -c "$PG_BIN/initdb -D '$dir/data' -A trust >/dev/null"
}

fail_on_sql_errors() { # log
  if grep -q "ERROR:" "$1"; then
    grep "ERROR:" "$1" >&2
    die "statements failed (log: $1)"
  fi
}

trigger_instructions() { # variant → instructions counted
  local dir=$STATE/instructions/pg
  fresh_scratch_cluster
  su postgres -s /bin/bash -c "cd '$dir' && valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect=ExecBRUpdateTriggersNew --callgrind-out-file='$dir/cg.trigger-$1' \
    $PG_BIN/postgres --single -D '$dir/data' postgres < '$dir/trigger-$1.sql'" >"$dir/trigger-$1.log" 2>&1
  fail_on_sql_errors "$dir/trigger-$1.log"
  callgrind_total "$dir/cg.trigger-$1"
}

# Runs `sql` in a new session of the scratch server; prints its backend's pid.
scratch_session() { # sql
  su postgres -s /bin/bash -c "$PG_BIN/psql -X -q -At -v ON_ERROR_STOP=1 -h '$STATE/instructions/pg' -p $CALLGRIND_PG_PORT -d postgres" <<<"$1" | sed -n 1p
}

db_instructions_bench() {
  ensure_valgrind
  local dir=$STATE/instructions/pg
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  local trigger
  # Single-user mode: one statement per line.
  for trigger in dana moddatetime; do
    local call="dana.touch_updated_at()"
    [[ $trigger == moddatetime ]] && call="moddatetime(updated_at)"
    cat >"$dir/trigger-$trigger.sql" <<SQL
CREATE EXTENSION dana
CREATE EXTENSION moddatetime
CREATE TABLE t (id int PRIMARY KEY, body text NOT NULL, updated_at timestamptz NOT NULL DEFAULT now())
INSERT INTO t (id, body) SELECT i, 'note ' || i FROM generate_series(1, $DB_ROWS) i
CREATE TRIGGER t_touch BEFORE UPDATE ON t FOR EACH ROW EXECUTE FUNCTION $call
UPDATE t SET body = body || '!'
SQL
  done
  chown postgres:postgres "$dir"/*.sql
  log "counting the database's instructions ($DB_ROWS rows; callgrind, slow)"
  local dana_trigger moddatetime
  dana_trigger=$(trigger_instructions dana)
  moddatetime=$(trigger_instructions moddatetime)

  fresh_scratch_cluster
  rm -f "$dir"/cg.server.*
  su postgres -s /bin/bash -c "cd '$dir' && valgrind --tool=callgrind --collect-atstart=no \
    --toggle-collect=standard_ExecutorRun --callgrind-out-file='$dir/cg.server.%p' \
    $PG_BIN/postgres -D '$dir/data' -p $CALLGRIND_PG_PORT -c listen_addresses= \
    -c unix_socket_directories='$dir' -c max_parallel_workers_per_gather=0" >"$dir/server.log" 2>&1 &
  local server=$!
  for _ in $(seq 1 300); do
    su postgres -s /bin/bash -c "$PG_BIN/pg_isready -q -h '$dir' -p $CALLGRIND_PG_PORT" && break
    sleep 0.2
  done
  scratch_session "CREATE EXTENSION dana;
CREATE ROLE reader;
CREATE TABLE notes (id int PRIMARY KEY, user_id uuid NOT NULL, body text NOT NULL);
INSERT INTO notes SELECT i, CASE WHEN i % 2 = 0 THEN 'a11ce000-0000-4000-8000-000000000001'::uuid
  ELSE 'b0b00000-0000-4000-8000-000000000002'::uuid END, 'note ' || i FROM generate_series(1, $DB_ROWS) i;
CREATE TABLE notes_rls (LIKE notes INCLUDING ALL);
INSERT INTO notes_rls SELECT * FROM notes;
ALTER TABLE notes_rls ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner ON notes_rls FOR SELECT USING (user_id = dana.uid());
GRANT SELECT ON notes, notes_rls TO reader;
GRANT USAGE ON SCHEMA dana TO reader;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA dana TO reader;
VACUUM ANALYZE;" >/dev/null
  local as_alice="SET request.jwt.claims = '{\"sub\":\"a11ce000-0000-4000-8000-000000000001\",\"role\":\"authenticated\"}'; SET ROLE reader;"
  local none_pid dana_pid none_rows dana_rows
  none_pid=$(scratch_session "SELECT pg_backend_pid(); $as_alice SELECT count(*) FROM notes WHERE user_id = 'a11ce000-0000-4000-8000-000000000001';")
  dana_pid=$(scratch_session "SELECT pg_backend_pid(); $as_alice SELECT count(*) FROM notes_rls;")
  none_rows=$(scratch_session "$as_alice SELECT count(*) FROM notes WHERE user_id = 'a11ce000-0000-4000-8000-000000000001';")
  dana_rows=$(scratch_session "$as_alice SELECT count(*) FROM notes_rls;")
  [[ $none_rows == "$dana_rows" && $dana_rows -gt 0 && $dana_rows -lt $DB_ROWS ]] ||
    die "the policy did not filter as the query does ($dana_rows vs $none_rows rows)"
  # The postmaster (not `su`, which does not pass signals on): a fast shutdown writes the profiles.
  kill -INT "$(head -1 "$dir/data/postmaster.pid")" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  local none dana
  none=$(callgrind_total "$dir/cg.server.$none_pid")
  dana=$(callgrind_total "$dir/cg.server.$dana_pid")
  cat <<TABLE

Database instructions (callgrind, PostgreSQL $PG_VERSION, $DB_ROWS rows; the count(*) rows include
the session's one \`SELECT pg_backend_pid()\`):

| measure | instructions per row | vs reference |
|---|---|---|
| BEFORE UPDATE trigger \`dana.touch_updated_at()\` | $((dana_trigger / DB_ROWS)) | $(awk "BEGIN { printf \"%.2f×\", $dana_trigger / $moddatetime }") of moddatetime |
| BEFORE UPDATE trigger contrib \`moddatetime\` | $((moddatetime / DB_ROWS)) | 1.00× |
| count(*) of $none_rows of $DB_ROWS rows, filter in the query, no RLS | $((none / DB_ROWS)) | 1.00× |
| count(*), policy \`user_id = dana.uid()\` (unwrapped) | $((dana / DB_ROWS)) | $(awk "BEGIN { printf \"%.2f×\", $dana / $none }") of no RLS |
TABLE
}
