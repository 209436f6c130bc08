# shellcheck shell=bash
# Gateway benchmark, sourced by scripts/bench: a small `select` as a signed-in user, loaded with
# wrk, straight to PostgREST, through dana-bff, and through nginx proxy_pass (Debian's
# nginx-light) to the same PostgREST. Rounds are interleaved so drift weighs on all three alike;
# each figure is the median of ROUNDS rounds.
#   latency:    1 connection, so p50/p99 show what a hop adds to one request
#   throughput: CONNECTIONS connections (default 32), requests per second
# wrk, the BFF, PostgREST and PostgreSQL share the machine's cores; read the figures as relative.

NGINX_PORT=${DANA_NGINX_BENCH_PORT:-54340}
BFF1_PORT=${DANA_BFF1_BENCH_PORT:-54341}
BENCH_SECONDS=${BENCH_SECONDS:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-32}
BENCH_PATH="/subscription_tiers?select=slug,name,price_cents&is_active=eq.true&order=sort_order"

ensure_bench_tools() {
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v nginx >/dev/null || missing+=(nginx-light)
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# The `http {}` block of nginx as a plain reverse proxy to PostgREST with upstream keep-alive, as
# one would deploy it: the same for the wall-clock and the instruction-count benchmarks.
nginx_proxy_http_block() { # folder for the access log, port, upstream keep-alive connections
  cat <<CONF
http {
  access_log $1/access.log;
  upstream postgrest { server 127.0.0.1:$POSTGREST_PORT; keepalive $3; }
  server {
    listen 127.0.0.1:$2;
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
}

start_bench_nginx() {
  local dir=$STATE/nginx-bench
  mkdir -p "$dir"
  {
    cat <<CONF
worker_processes 2;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
CONF
    nginx_proxy_http_block "$dir" "$NGINX_PORT" 64
  } >"$dir/nginx.conf"
  nginx -c "$dir/nginx.conf" -p "$dir"
  wait_http "http://127.0.0.1:$NGINX_PORT/rest/v1/" nginx
}

# A second BFF with one worker per core, to compare with the stack's BFF and its default of one
# worker per two cores (on a machine whose cores PostgREST and PostgreSQL share, fewer event
# loops batch more events per wake-up).
start_bench_bff1() {
  # shellcheck disable=SC2046
  start_daemon bff-bench env $(bff_env | xargs) BFF_LISTEN="127.0.0.1:$BFF1_PORT" BFF_WORKER_THREADS="$(nproc)" \
    "$BFF_BIN" serve
  wait_daemon_http bff-bench "http://127.0.0.1:$BFF1_PORT/healthz"
}

stop_bench_nginx() {
  local pid=$STATE/nginx-bench/nginx.pid
  if [[ -s "$pid" ]]; then kill "$(cat "$pid")" 2>/dev/null || true; fi
  stop_daemon bff-bench
}

# CPU ticks (1/100 s) used so far by a process and its children threads / worker processes.
cpu_ticks() { # pid...
  local total=0 pid
  for pid in "$@"; do
    total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}

proxy_pids() { # target
  case $1 in
    bff) cat "$RUN/bff.pid" ;;
    bff-per-core) cat "$RUN/bff-bench.pid" ;;
    nginx) pgrep -P "$(cat "$STATE/nginx-bench/nginx.pid")" | xargs ;;
    direct) echo "" ;;
  esac
}

# wrk's figures in milliseconds / requests per second: "p50 p99 rps requests".
wrk_run() { # url, connections
  local threads=$(($2 < 2 ? 1 : 2))
  wrk -t"$threads" -c"$2" -d"${BENCH_SECONDS}s" --latency \
    -H "apikey: $ANON_KEY" -H "Authorization: Bearer $ALICE_JWT" "$1" |
    awk '
      function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
      $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) } $1 == "Requests/sec:" { rps = $2 }
      / requests in / { n = $1 } / Non-2xx or 3xx responses/ { bad = $NF }
      END { if (bad) { print "wrk: " bad " error responses" > "/dev/stderr"; exit 1 }; printf "%.3f %.3f %.0f %d\n", p50, p99, rps, n }'
}

median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

gateway_bench() {
  ensure_bench_tools
  start_bench_nginx
  trap stop_bench_nginx EXIT
  start_bench_bff1
  local -A url=(
    [direct]="http://127.0.0.1:$POSTGREST_PORT$BENCH_PATH"
    [bff]="http://127.0.0.1:$API_PORT/rest/v1$BENCH_PATH"
    [bff-per-core]="http://127.0.0.1:$BFF1_PORT/rest/v1$BENCH_PATH"
    [nginx]="http://127.0.0.1:$NGINX_PORT/rest/v1$BENCH_PATH"
  )
  local targets=(direct bff bff-per-core nginx) out=$STATE/gateway-bench
  rm -rf "$out" && mkdir -p "$out"
  for target in "${targets[@]}"; do # warm-up: pools, caches
    BENCH_SECONDS=2 wrk_run "${url[$target]}" "$CONNECTIONS" >/dev/null
  done
  for round in $(seq "$ROUNDS"); do
    log "gateway benchmark round $round/$ROUNDS"
    for target in "${targets[@]}"; do
      wrk_run "${url[$target]}" 1 >>"$out/$target.latency"
      local pids before result
      pids=$(proxy_pids "$target")
      # shellcheck disable=SC2086
      before=$(cpu_ticks $pids)
      result=$(wrk_run "${url[$target]}" "$CONNECTIONS")
      echo "$result" >>"$out/$target.load"
      # µs of proxy CPU per request (user + system, kernel network work included)
      # shellcheck disable=SC2086
      awk -v t="$(($(cpu_ticks $pids) - before))" '{ printf "%.0f\n", t * 10000 / $4 }' <<<"$result" >>"$out/$target.cpu"
    done
  done
  local bff_rss
  bff_rss=$(awk '/VmHWM/ { print $2 }' "/proc/$(cat "$RUN/bff.pid")/status" 2>/dev/null || echo "?")
  col() { awk "{ print \$$2 }" "$out/$1" | median; }
  local direct_p50 direct_rps
  direct_p50=$(col direct.latency 1)
  direct_rps=$(col direct.load 3)
  cat <<TABLE

GET $BENCH_PATH as a signed-in user; median of $ROUNDS rounds of ${BENCH_SECONDS}s each.

| path | p50, 1 conn (ms) | p99, 1 conn (ms) | added p50 (ms) | p50, $CONNECTIONS conns (ms) | p99, $CONNECTIONS conns (ms) | req/s, $CONNECTIONS conns | vs direct | proxy CPU per request (µs) |
|---|---|---|---|---|---|---|---|---|
TABLE
  for target in "${targets[@]}"; do
    local p50 rps
    p50=$(col "$target.latency" 1)
    rps=$(col "$target.load" 3)
    local proxy_cpu="—"
    [[ $target != direct ]] && proxy_cpu=$(col "$target.cpu" 1)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$target" "$p50" "$(col "$target.latency" 2)" \
      "$(awk "BEGIN { printf \"%+.3f\", $p50 - $direct_p50 }")" "$(col "$target.load" 1)" "$(col "$target.load" 2)" \
      "$rps" "$(awk "BEGIN { printf \"%.0f %%\", 100 * $rps / $direct_rps }")" "$proxy_cpu"
  done
  echo
  echo "dana-bff peak RSS during the run: ${bff_rss} KiB"
}
