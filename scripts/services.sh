#!/usr/bin/env bash
# scripts/services.sh — make mp3conv's test services available, idempotently.
#
# Ensures (installing via apt/pip/rustup what is missing):
#   * ffmpeg + ffprobe                      (apt: ffmpeg)
#   * headless Chromium + chromedriver, /usr/bin/chromium and /usr/bin/chromedriver, for the
#     browser tests (tests/web.rs, tests/common/browser.rs)   (apt: chromium chromium-driver)
#   * MariaDB   on 127.0.0.1:3306, root with an empty password (apt: mariadb-server)
#   * RabbitMQ  on 127.0.0.1:5672, guest/guest                 (apt: rabbitmq-server)
#   * SecantusDB (MongoDB wire protocol) on 127.0.0.1:$MP3CONV_MONGO_PORT (default 27217),
#     from PyPI in a venv under $MP3CONV_CACHE (default ~/.cache/mp3conv); its data, log
#     and pidfile live in $MP3CONV_CACHE/secantus-<port>/
#   * the rust target wasm32-wasip2
#   * the deployment validator's Python packages (kubernetes-validate, jsonschema, PyYAML), in
#     a venv under $MP3CONV_CACHE (scripts/validate_deploy.py)
#   * the API fuzzer, schemathesis (PyPI), in a venv under $MP3CONV_CACHE (tests/fuzz.rs)
#
# Usage:
#   scripts/services.sh            ensure everything; prints nothing on stdout
#   scripts/services.sh env        ensure everything, then print `export MP3CONV_TEST_*=...`
#                                  lines:  eval "$(scripts/services.sh env)"
#   scripts/services.sh stop       stop the SecantusDB this script started (by pidfile)
#   source scripts/services.sh     same as `eval "$(scripts/services.sh env)"`
# Progress goes to stderr, prefixed "services:".

if [[ "${BASH_SOURCE[0]}" != "$0" ]]; then   # sourced: run in a child, export into the caller
  _mp3conv_env="$(bash "${BASH_SOURCE[0]}" env)" || return $?
  eval "$_mp3conv_env"; unset _mp3conv_env; return 0
fi

set -euo pipefail

SECANTUS_VERSION=0.7.0b3
PYMONGO_VERSION=4.20.1
CACHE="${MP3CONV_CACHE:-$HOME/.cache/mp3conv}"
MONGO_PORT="${MP3CONV_MONGO_PORT:-27217}"
VENV="$CACHE/secantus-venv"
DEPLOY_VENV="$CACHE/deploy-venv"
KUBERNETES_VALIDATE_VERSION=1.33.1
JSONSCHEMA_VERSION=4.26.0
PYYAML_VERSION=6.0.3
FUZZ_VENV="$CACHE/fuzz-venv"
# Page links (issue #17): the worker resolves video pages with yt-dlp. Pinned, so a test run
# today and one next month resolve the same pages the same way; docs/deploy.md says how to move
# the pin (sites change often).
YTDLP_VERSION=2026.10.26
YTDLP_VENV="$CACHE/ytdlp-$YTDLP_VERSION"
# Both pinned: with a fixed seed, the same versions generate the same requests.
SCHEMATHESIS_VERSION=4.32.5
HYPOTHESIS_VERSION=6.170.17
MONGO_DIR="$CACHE/secantus-$MONGO_PORT"   # per port: one WiredTiger dir can't be shared
MONGO_DATA="$MONGO_DIR/data"
MONGO_LOG="$MONGO_DIR/secantusd.log"
MONGO_PID="$MONGO_DIR/secantusd.pid"

log() { echo "services: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_port PORT SECONDS NAME [PID]: poll until PORT answers; give up early if PID dies.
wait_port() {
  local port=$1 secs=$2 name=$3 pid=${4:-} i
  for ((i = 0; i < secs * 5; i++)); do
    port_open "$port" && { log "$name is up on 127.0.0.1:$port"; return 0; }
    if [[ -n $pid ]] && ! kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) exited before opening port $port"; return 1
    fi
    sleep 0.2
  done
  log "$name did not open 127.0.0.1:$port within ${secs}s"; return 1
}

APT_UPDATED=
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install $* by hand"
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z $APT_UPDATED ]]; then
    log "apt-get update"; apt-get update -qq >&2 || die "apt-get update failed"; APT_UPDATED=1
  fi
  log "apt-get install $*"
  apt-get install -y -qq --no-install-recommends "$@" >&2 || die "apt-get install $* failed"
}

ensure_ffmpeg() {
  command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null && return 0
  apt_install ffmpeg
  command -v ffprobe >/dev/null || die "ffmpeg/ffprobe still missing after install"
}

ensure_browser() {
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
  apt_install chromium chromium-driver
  [[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] ||
    die "/usr/bin/chromium or /usr/bin/chromedriver still missing after install"
}

ensure_mariadb() {
  if ! port_open 3306; then
    [[ -x /usr/sbin/mariadbd ]] || apt_install mariadb-server
    port_open 3306 || {   # the package's postinst may have started it already
      log "starting MariaDB"
      install -d -o mysql -g mysql /run/mysqld
      start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd </dev/null >&2
      wait_port 3306 60 MariaDB || die "MariaDB failed to start (see /var/log/mysql/)"
    }
  fi
  mariadb -uroot -h127.0.0.1 -e 'select 1' >/dev/null ||
    die "MariaDB answers on 3306 but 'mariadb -uroot -h127.0.0.1' (empty password) fails;" \
      "a stock Debian install needs a root@127.0.0.1 account with an empty password"
}

ensure_rabbitmq() {
  port_open 5672 && return 0
  command -v rabbitmq-server >/dev/null || apt_install rabbitmq-server
  port_open 5672 && return 0
  log "starting RabbitMQ"
  rabbitmq-server -detached </dev/null >&2
  wait_port 5672 90 RabbitMQ || die "RabbitMQ failed to start (see /var/log/rabbitmq/)"
}

ensure_secantus() {
  mkdir -p "$CACHE"
  if ! "$VENV/bin/python" -c "import importlib.metadata as m; assert m.version('SecantusDB') == \
      '$SECANTUS_VERSION' and m.version('pymongo') == '$PYMONGO_VERSION'" 2>/dev/null; then
    log "installing SecantusDB==$SECANTUS_VERSION into $VENV"
    [[ -x $VENV/bin/python ]] || python3 -m venv "$VENV" >&2 ||
      { apt_install python3-venv && python3 -m venv --clear "$VENV" >&2; } || die "cannot create venv $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
      "SecantusDB==$SECANTUS_VERSION" "pymongo==$PYMONGO_VERSION" >&2 || die "pip install SecantusDB failed"
  fi
  if ! port_open "$MONGO_PORT"; then
    log "starting SecantusDB on 127.0.0.1:$MONGO_PORT (log: $MONGO_LOG)"
    mkdir -p "$MONGO_DATA"; rm -f "$MONGO_PID"
    # Own session (setsid), no tty, stdout/stderr to the log (so `$(services.sh env)` never
    # waits on it); cwd = its dir so no stray ./secantusd.toml is read. The inner bash
    # writes its pid, then execs the server under that same pid.
    # shellcheck disable=SC2016  # $$ and $1.. are expanded by the inner bash
    setsid nohup bash -c 'cd "$1" && echo $$ >"$2" && shift 2 && exec "$@"' _ "$MONGO_DIR" "$MONGO_PID" \
      "$VENV/bin/secantusd-py" --host 127.0.0.1 --port "$MONGO_PORT" --storage-path "$MONGO_DATA" \
      </dev/null >>"$MONGO_LOG" 2>&1 &
    sleep 0.2
    wait_port "$MONGO_PORT" 60 SecantusDB "$(cat "$MONGO_PID" 2>/dev/null)" ||
      { tail -n 30 "$MONGO_LOG" >&2; rm -f "$MONGO_PID"; die "SecantusDB failed to start"; }
  fi
  # Prove the port speaks the MongoDB wire protocol: insert, read back, drop.
  "$VENV/bin/python" - "$MONGO_PORT" >&2 <<'EOF' || die "MongoDB wire check on port $MONGO_PORT failed"
import sys, pymongo
c = pymongo.MongoClient(f"mongodb://127.0.0.1:{sys.argv[1]}", serverSelectionTimeoutMS=10000)
db = c["mp3conv_services_check"]
db.probe.insert_one({"_id": 1, "ok": True})
assert db.probe.find_one({"_id": 1}) == {"_id": 1, "ok": True}
c.drop_database("mp3conv_services_check")
EOF
}

ensure_wasm_target() {
  command -v rustup >/dev/null || die "rustup not found (needed for target wasm32-wasip2)"
  grep -qx wasm32-wasip2 <<<"$(rustup target list --installed)" && return 0   # no SIGPIPE+pipefail
  log "rustup target add wasm32-wasip2"
  rustup target add wasm32-wasip2 >&2 || die "rustup target add wasm32-wasip2 failed"
}

ensure_deploy_validator() {
  mkdir -p "$CACHE"
  "$DEPLOY_VENV/bin/python" -c "import importlib.metadata as m; \
      assert m.version('kubernetes-validate') == '$KUBERNETES_VALIDATE_VERSION'; \
      assert m.version('jsonschema') == '$JSONSCHEMA_VERSION'; \
      assert m.version('PyYAML') == '$PYYAML_VERSION'" 2>/dev/null && return 0
  log "installing the deployment validator's packages into $DEPLOY_VENV"
  [[ -x $DEPLOY_VENV/bin/python ]] || python3 -m venv "$DEPLOY_VENV" >&2 ||
    { apt_install python3-venv && python3 -m venv --clear "$DEPLOY_VENV" >&2; } ||
    die "cannot create venv $DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "jsonschema==$JSONSCHEMA_VERSION" \
    "PyYAML==$PYYAML_VERSION" >&2 || die "pip install of the deployment validator failed"
}

ensure_fuzzer() {
  mkdir -p "$CACHE"
  "$FUZZ_VENV/bin/python" -c "import importlib.metadata as m; \
      assert m.version('schemathesis') == '$SCHEMATHESIS_VERSION'; \
      assert m.version('hypothesis') == '$HYPOTHESIS_VERSION'" 2>/dev/null && return 0
  log "installing schemathesis==$SCHEMATHESIS_VERSION into $FUZZ_VENV"
  [[ -x $FUZZ_VENV/bin/python ]] || python3 -m venv "$FUZZ_VENV" >&2 ||
    { apt_install python3-venv && python3 -m venv --clear "$FUZZ_VENV" >&2; } ||
    die "cannot create venv $FUZZ_VENV"
  "$FUZZ_VENV/bin/pip" install -q --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "hypothesis==$HYPOTHESIS_VERSION" >&2 ||
    die "pip install of schemathesis failed"
}

ensure_ytdlp() {
  mkdir -p "$CACHE"
  [[ $("$YTDLP_VENV/bin/yt-dlp" --ignore-config --version 2>/dev/null) == "$YTDLP_VERSION" ]] && return 0
  log "installing yt-dlp==$YTDLP_VERSION into $YTDLP_VENV"
  [[ -x $YTDLP_VENV/bin/python ]] || python3 -m venv "$YTDLP_VENV" >&2 ||
    { apt_install python3-venv && python3 -m venv --clear "$YTDLP_VENV" >&2; } ||
    die "cannot create venv $YTDLP_VENV"
  # Wheels only: nothing of the package runs at install time.
  "$YTDLP_VENV/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
    "yt-dlp==$YTDLP_VERSION" >&2 || die "pip install of yt-dlp failed"
  [[ $("$YTDLP_VENV/bin/yt-dlp" --ignore-config --version) == "$YTDLP_VERSION" ]] ||
    die "yt-dlp in $YTDLP_VENV is not version $YTDLP_VERSION"
}

stop_secantus() {
  local pid i=0
  [[ -f $MONGO_PID ]] || { log "SecantusDB: no pidfile ($MONGO_PID), nothing to stop"; return 0; }
  pid=$(cat "$MONGO_PID")
  if grep -qs secantusd "/proc/$pid/cmdline" && kill "$pid"; then
    while kill -0 "$pid" 2>/dev/null && ((i++ < 100)); do sleep 0.2; done   # up to 20 s
    if kill -0 "$pid" 2>/dev/null; then log "SecantusDB (pid $pid) ignored SIGTERM, killing"; kill -9 "$pid"; fi
    log "SecantusDB (pid $pid) stopped"
  else
    log "SecantusDB (pid $pid) was not running"
  fi
  rm -f "$MONGO_PID"
}

case "${1:-}" in
  stop) stop_secantus; exit 0 ;;
  ytdlp) ensure_ytdlp; echo "$YTDLP_VENV/bin/yt-dlp"; exit 0 ;;   # for `make up`: its path
  "" | env) ;;
  *) die "usage: $0 [env|stop|ytdlp]" ;;
esac

ensure_ffmpeg
ensure_browser
ensure_mariadb
ensure_rabbitmq
ensure_secantus
ensure_wasm_target
ensure_deploy_validator
ensure_fuzzer
ensure_ytdlp
log "all services ready"

if [[ ${1:-} == env ]]; then
  echo "export MP3CONV_TEST_MYSQL_URL=mysql://root@127.0.0.1:3306"
  echo "export MP3CONV_TEST_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f"
  echo "export MP3CONV_TEST_MONGO_URL=mongodb://127.0.0.1:$MONGO_PORT/?directConnection=true"
  echo "export MP3CONV_TEST_DEPLOY_PYTHON=$DEPLOY_VENV/bin/python"
  echo "export MP3CONV_TEST_SCHEMATHESIS=$FUZZ_VENV/bin/st"
  echo "export MP3CONV_TEST_YTDLP=$YTDLP_VENV/bin/yt-dlp"
fi
