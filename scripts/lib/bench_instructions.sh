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
send_requests() { # port, path prefix, count
  python3 - "$1" "$2$BENCH_PATH" "$3" "$ANON_KEY" "$ALICE_JWT" <<'PY'
import http.client, sys
port, path, count, apikey, jwt = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", int(port))
headers = {"apikey": apikey, "Authorization": "Bearer " + jwt}
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
  ensure_valgrind
  ensure_bench_tools
  local dir=$STATE/instructions
  mkdir -p "$dir/nginx"
  cat >"$dir/nginx.conf" <<CONF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx/nginx.pid;
error_log $dir/nginx/error.log warn;
events { worker_connections 64; }
http {
  access_log $dir/nginx/access.log;
  upstream postgrest { server 127.0.0.1:$POSTGREST_PORT; keepalive 8; }
  server {
    listen 127.0.0.1:$CALLGRIND_NGINX_PORT;
    location / { return 200; }
    location /rest/v1/ {
      proxy_pass http://postgrest/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Cookie "";
    }
  }
}
CONF
  log "counting dana-bff's instructions over $REQUESTS requests (callgrind; slow)"
  local bff_dump nginx_dump
  # The settings go in the environment, not through `env`: valgrind would count `env` and let
  # the program it execs run uncounted.
  bff_dump=$(
    set -a
    eval "$(bff_env)"
    set +a
    export BFF_LISTEN=127.0.0.1:$CALLGRIND_BFF_PORT BFF_WORKER_THREADS=1
    count_instructions dana-bff "$CALLGRIND_BFF_PORT" /rest/v1 "$ROOT/target/release/dana-bff" serve
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
