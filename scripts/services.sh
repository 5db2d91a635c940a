#!/usr/bin/env bash
# Local stand-ins for the Azure services the tests use, on loopback only:
#   Azure Cache for Redis -> redis-server (Debian)          127.0.0.1:6390
#   Blob Storage          -> Azurite (npm, in memory)       127.0.0.1:10000 (queue/table 10001/10002 or free ports)
#   Cosmos DB (NoSQL)     -> @vercel/cosmosdb-server (npm)  https://127.0.0.1:8081
#
#   scripts/services.sh install   redis-server and chromium (headless, for the HTML report test) from apt if
#                                 missing; npm ci if node_modules is missing or outdated
#   scripts/services.sh start     start the three, wait until each port answers, write .services/env
#   scripts/services.sh stop      stop what `start` started (by recorded PID only); safe to run twice
#   scripts/services.sh status    show what runs; exit 0 only when all three run
#
# Every server runs as its own background process whose PID is kept in .services/NAME.pid; logs are
# .services/NAME.log. Nothing is ever killed by name, and a port that something else holds is an
# error, never a reason to kill it. `.services/env` holds KEY='value' lines for the tests:
#   set -a; . .services/env; set +a
# Overrides: CHARGEBACK_SERVICES_DIR, CHARGEBACK_SERVICES_TIMEOUT (seconds per service, default 30),
# CHARGEBACK_REDIS_PORT, CHARGEBACK_AZURITE_BLOB_PORT, CHARGEBACK_AZURITE_QUEUE_PORT,
# CHARGEBACK_AZURITE_TABLE_PORT, CHARGEBACK_COSMOS_PORT.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RUN_DIR="${CHARGEBACK_SERVICES_DIR:-$ROOT/.services}"
ENV_FILE="$RUN_DIR/env"
TIMEOUT="${CHARGEBACK_SERVICES_TIMEOUT:-30}"
HOST=127.0.0.1

REDIS_PORT="${CHARGEBACK_REDIS_PORT:-6390}"
BLOB_PORT="${CHARGEBACK_AZURITE_BLOB_PORT:-10000}"
QUEUE_PORT="${CHARGEBACK_AZURITE_QUEUE_PORT:-10001}"
TABLE_PORT="${CHARGEBACK_AZURITE_TABLE_PORT:-10002}"
COSMOS_PORT="${CHARGEBACK_COSMOS_PORT:-8081}"

# Public, documented development credentials of the emulators (not secrets).
AZURITE_ACCOUNT=devstoreaccount1
AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
COSMOS_KEY='C2y6yDjf5/R+ob0N8A7Cgv30VRDJIWEHLM+4QDU5DE2nQ9nDuVTqobD4b8mGGyPMbIZnqyMsEcaGQy67XIw/Jw=='

AZURITE_JS="$ROOT/node_modules/azurite/dist/src/azurite.js"
COSMOS_JS="$ROOT/node_modules/@vercel/cosmosdb-server/lib/cli.js"
NPM_STAMP="$ROOT/node_modules/.services-installed"

SERVICES=(redis azurite cosmos)

say() { printf 'services: %s\n' "$*"; }
die() { printf 'services: error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------- helpers

port_answers() {  # port_answers PORT: something accepts TCP connections on 127.0.0.1:PORT
    (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

alive() {  # alive PID
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null
}

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }
log_file() { printf '%s/%s.log' "$RUN_DIR" "$1"; }

recorded_pid() {  # recorded_pid NAME: the PID in NAME's pid file, or nothing
    local file
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 0
    tr -dc '0-9' <"$file"
}

command_word() {  # what the process of NAME must be running, to tell it from a reused PID
    case "$1" in
        redis) echo redis-server ;;
        azurite) echo azurite ;;
        cosmos) echo cosmosdb-server ;;
    esac
}

is_ours() {  # is_ours NAME PID: PID is alive and is NAME's server
    local pid="$2" cmdline
    alive "$pid" || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    [[ "$cmdline" == *"$(command_word "$1")"* ]]
}

running_pid() {  # running_pid NAME: the recorded PID when that process is still NAME's server
    local pid
    pid="$(recorded_pid "$1")"
    if [[ -n "$pid" ]] && is_ours "$1" "$pid"; then
        echo "$pid"
    fi
}

service_port() {
    case "$1" in
        redis) echo "$REDIS_PORT" ;;
        azurite) echo "$BLOB_PORT" ;;
        cosmos) echo "$COSMOS_PORT" ;;
    esac
}

log_tail() {  # the end of a log, indented, for error messages
    local file
    file="$(log_file "$1")"
    if [[ -s "$file" ]]; then
        printf '  last lines of %s:\n' "$file"
        tail -n 15 "$file" | sed 's/^/    /'
    fi
}

free_port() {  # a free TCP port on 127.0.0.1, chosen by the kernel
    local python
    python="$(command -v python3 || command -v python || true)"
    [[ -n "$python" ]] || die "no python3 to choose a free port; set CHARGEBACK_AZURITE_QUEUE_PORT/TABLE_PORT"
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# ---------------------------------------------------------------------------------------------- install

as_root() {
    if [[ "$(id -u)" -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root (or sudo) to run: $*"
    fi
}

install_redis() {
    if command -v redis-server >/dev/null 2>&1; then
        say "redis-server present: $(command -v redis-server)"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and there is no apt-get to install it"
    # Refresh the package lists only when they do not know redis-server yet.
    if ! apt-cache policy redis-server 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        say "apt-get update (the package lists do not know redis-server yet)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    say "apt-get install redis-server"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
    command -v redis-server >/dev/null 2>&1 || die "apt-get installed redis-server but it is not on PATH"
    # Debian's package starts its own server on 6379 where there is an init system; we never use it.
}

CHROMIUM=/usr/bin/chromium

install_chromium() {  # Debian's chromium, for the HTML report's headless-browser test (not a service)
    if [[ -x "$CHROMIUM" ]]; then
        say "chromium present: $CHROMIUM"
        return
    fi
    command -v apt-get >/dev/null 2>&1 || die "chromium is missing and there is no apt-get to install it"
    if ! apt-cache policy chromium 2>/dev/null | grep -q 'Candidate: [0-9]'; then
        say "apt-get update (the package lists do not know chromium yet)"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    say "apt-get install chromium (headless browser for tests/test_html_report.py)"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    [[ -x "$CHROMIUM" ]] || die "apt-get installed chromium but $CHROMIUM is missing"
}

lock_hash() {
    local lock="$ROOT/package-lock.json"
    [[ -f "$lock" ]] || lock="$ROOT/package.json"
    sha256sum "$lock" "$ROOT/package.json" | sha256sum | cut -d' ' -f1
}

install_npm() {
    command -v node >/dev/null 2>&1 || die "node is missing (Node 20 or newer is needed for Azurite 3.35.0)"
    command -v npm >/dev/null 2>&1 || die "npm is missing"
    local want
    want="$(lock_hash)"
    if [[ -f "$NPM_STAMP" && "$(cat "$NPM_STAMP")" == "$want" && -f "$AZURITE_JS" && -f "$COSMOS_JS" ]]; then
        say "node_modules up to date"
        return
    fi
    cd "$ROOT"
    if [[ -f package-lock.json ]]; then
        say "npm ci (azurite, @vercel/cosmosdb-server)"
        npm ci --no-audit --no-fund --loglevel=error
    else
        say "npm install (no package-lock.json)"
        npm install --no-audit --no-fund --loglevel=error
    fi
    [[ -f "$AZURITE_JS" && -f "$COSMOS_JS" ]] || die "npm finished but azurite or cosmosdb-server is missing in node_modules"
    lock_hash >"$NPM_STAMP"
}

cmd_install() {
    install_redis
    install_chromium
    install_npm
}

# ---------------------------------------------------------------------------------------------- start

STARTED=()

wait_ready() {  # wait_ready NAME PORT: until the port answers; fail early if the process died
    local name="$1" port="$2" deadline pid
    deadline=$((SECONDS + TIMEOUT))
    while ! port_answers "$port"; do
        pid="$(recorded_pid "$name")"
        if [[ "$name" != redis ]] && ! alive "$pid"; then
            printf 'services: error: %s exited before 127.0.0.1:%s answered (log %s)\n' \
                "$name" "$port" "$(log_file "$name")" >&2
            log_tail "$name" >&2
            return 1
        fi
        if ((SECONDS >= deadline)); then
            printf 'services: error: %s did not answer on 127.0.0.1:%s within %ss (log %s)\n' \
                "$name" "$port" "$TIMEOUT" "$(log_file "$name")" >&2
            log_tail "$name" >&2
            return 1
        fi
        sleep 0.1
    done
}

refuse_taken_port() {  # refuse_taken_port NAME PORT [WHAT]
    if port_answers "$2"; then
        printf 'services: error: 127.0.0.1:%s (%s) is already in use by a process this script did not start;\n' \
            "$2" "${3:-$1}" >&2
        printf '  it is left alone. Stop it, or choose another port (see the overrides at the top of %s).\n' \
            "scripts/services.sh" >&2
        return 1
    fi
}

start_redis() {
    refuse_taken_port redis "$REDIS_PORT" || return 1
    rm -f "$(pid_file redis)"
    redis-server --port "$REDIS_PORT" --bind "$HOST" --save '' --appendonly no \
        --daemonize yes --pidfile "$(pid_file redis)" --logfile "$(log_file redis)" --dir "$RUN_DIR" \
        </dev/null >/dev/null 2>&1 \
        || { say "redis-server failed to start (log $(log_file redis))" >&2; log_tail redis >&2; return 1; }
    STARTED+=(redis)
    wait_ready redis "$REDIS_PORT" || return 1
    # The daemon writes its pid file right after it forks; it is there by the time it listens.
    local deadline=$((SECONDS + 5))
    until [[ -s "$(pid_file redis)" ]]; do
        ((SECONDS < deadline)) || { say "redis-server wrote no pid file" >&2; return 1; }
        sleep 0.1
    done
}

start_azurite() {
    refuse_taken_port azurite "$BLOB_PORT" "Azurite blob" || return 1
    # Queue and Table are not used by the tests: keep the defaults when free, else any free port.
    if port_answers "$QUEUE_PORT"; then QUEUE_PORT="$(free_port)"; fi
    if port_answers "$TABLE_PORT"; then TABLE_PORT="$(free_port)"; fi
    node "$AZURITE_JS" --inMemoryPersistence --skipApiVersionCheck --loose --silent --disableTelemetry \
        --blobHost "$HOST" --blobPort "$BLOB_PORT" \
        --queueHost "$HOST" --queuePort "$QUEUE_PORT" \
        --tableHost "$HOST" --tablePort "$TABLE_PORT" \
        </dev/null >"$(log_file azurite)" 2>&1 &
    echo $! >"$(pid_file azurite)"
    STARTED+=(azurite)
    wait_ready azurite "$BLOB_PORT"
}

start_cosmos() {
    refuse_taken_port cosmos "$COSMOS_PORT" "Cosmos DB stand-in" || return 1
    node "$COSMOS_JS" -p "$COSMOS_PORT" --host "$HOST" </dev/null >"$(log_file cosmos)" 2>&1 &
    echo $! >"$(pid_file cosmos)"
    STARTED+=(cosmos)
    wait_ready cosmos "$COSMOS_PORT"
}

write_env() {
    local connection
    connection="DefaultEndpointsProtocol=http;AccountName=$AZURITE_ACCOUNT;AccountKey=$AZURITE_KEY"
    connection+=";BlobEndpoint=http://$HOST:$BLOB_PORT/$AZURITE_ACCOUNT"
    connection+=";QueueEndpoint=http://$HOST:$QUEUE_PORT/$AZURITE_ACCOUNT"
    connection+=";TableEndpoint=http://$HOST:$TABLE_PORT/$AZURITE_ACCOUNT;"
    {
        echo "# Written by scripts/services.sh start; load with: set -a; . $ENV_FILE; set +a"
        echo "CHARGEBACK_TEST_REDIS_URL='redis://$HOST:$REDIS_PORT/0'"
        echo "CHARGEBACK_TEST_AZURITE_CONNECTION_STRING='$connection'"
        echo "CHARGEBACK_TEST_COSMOS_URL='https://$HOST:$COSMOS_PORT'"
        echo "CHARGEBACK_TEST_COSMOS_KEY='$COSMOS_KEY'"
    } >"$ENV_FILE.tmp"
    mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cmd_start() {
    command -v redis-server >/dev/null 2>&1 || die "redis-server is missing: run scripts/services.sh install"
    [[ -f "$AZURITE_JS" && -f "$COSMOS_JS" ]] || die "node_modules is missing: run scripts/services.sh install"
    local name pid failed=0 port
    for port in "$REDIS_PORT" "$BLOB_PORT" "$QUEUE_PORT" "$TABLE_PORT" "$COSMOS_PORT"; do
        if ! [[ "$port" =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            die "port $port is not a TCP port number"
        fi
    done
    mkdir -p "$RUN_DIR"
    if [[ -f "$ENV_FILE" ]]; then
        # Keep the ports an earlier start chose, so that a second start leaves the env file unchanged.
        QUEUE_PORT="$(sed -n "s|.*QueueEndpoint=http://$HOST:\([0-9]*\)/.*|\1|p" "$ENV_FILE")"
        TABLE_PORT="$(sed -n "s|.*TableEndpoint=http://$HOST:\([0-9]*\)/.*|\1|p" "$ENV_FILE")"
        QUEUE_PORT="${QUEUE_PORT:-${CHARGEBACK_AZURITE_QUEUE_PORT:-10001}}"
        TABLE_PORT="${TABLE_PORT:-${CHARGEBACK_AZURITE_TABLE_PORT:-10002}}"
    fi
    for name in "${SERVICES[@]}"; do
        pid="$(running_pid "$name")"
        if [[ -n "$pid" ]]; then
            say "$name already running (pid $pid)"
            continue
        fi
        rm -f "$(pid_file "$name")"
        if ! "start_$name"; then
            failed=1
            break
        fi
        say "$name ready on 127.0.0.1:$(service_port "$name") (pid $(recorded_pid "$name"), log $(log_file "$name"))"
    done
    if ((failed)); then
        # Leave nothing half-started behind: stop what this call started.
        for name in "${STARTED[@]}"; do stop_one "$name"; done
        rm -f "$ENV_FILE"
        exit 1
    fi
    write_env
    say "endpoints in $ENV_FILE"
}

# ---------------------------------------------------------------------------------------------- stop

stop_one() {  # stop_one NAME: TERM the recorded PID, KILL after 10 s; remove the pid file
    local name="$1" pid deadline
    pid="$(recorded_pid "$name")"
    if [[ -z "$pid" ]]; then
        rm -f "$(pid_file "$name")"
        return 0
    fi
    if ! is_ours "$name" "$pid"; then
        alive "$pid" && say "$name: pid $pid is no longer $name's server; left alone"
        rm -f "$(pid_file "$name")"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
    if alive "$pid"; then
        say "$name (pid $pid) ignored TERM for 10 s; sending KILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.2
    fi
    rm -f "$(pid_file "$name")"
    say "$name stopped (pid $pid)"
}

cmd_stop() {
    [[ -d "$RUN_DIR" ]] || { say "nothing to stop"; return 0; }
    local name
    for name in "${SERVICES[@]}"; do stop_one "$name"; done
    rm -f "$ENV_FILE"
}

# ---------------------------------------------------------------------------------------------- status

cmd_status() {
    local name pid all=0 port
    for name in "${SERVICES[@]}"; do
        pid="$(running_pid "$name")"
        port="$(service_port "$name")"
        if [[ -n "$pid" ]] && port_answers "$port"; then
            say "$name running (pid $pid, 127.0.0.1:$port)"
        elif [[ -n "$pid" ]]; then
            say "$name running (pid $pid) but 127.0.0.1:$port does not answer"
            all=1
        else
            say "$name stopped"
            all=1
        fi
    done
    [[ -f "$ENV_FILE" ]] && say "endpoints in $ENV_FILE"
    return "$all"
}

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 install|start|stop|status" >&2
        exit 2
        ;;
esac
