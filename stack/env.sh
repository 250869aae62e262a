# Shared settings of the local stack, sourced by ./devstack and the stack/*.sh helpers.
# Every value can be overridden from the environment. The Rust config defaults
# (tributary_runtime::config) match these, so nothing needs to be exported by hand.

STACK_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$STACK_ROOT/.." && pwd)"

# All state (data, logs, pids) of one stack lives in one directory.
: "${TRIBUTARY_STATE_DIR:=$REPO_ROOT/.stack}"
# Downloads and builds that survive fresh clones, keyed by version / content hash.
: "${TRIBUTARY_CACHE:=$HOME/.cache/tributary}"
: "${CARGO_TARGET_DIR:=$TRIBUTARY_CACHE/target}"
export TRIBUTARY_STATE_DIR TRIBUTARY_CACHE CARGO_TARGET_DIR

: "${KAFKA_PORT:=9092}"
: "${KAFKA_CONTROLLER_PORT:=9093}"
# A second listener with TLS and SASL (SCRAM-SHA-512 and OAUTHBEARER), as MSK has: the
# runtime's security settings are tested against it.
: "${KAFKA_SASL_PORT:=9094}"
: "${CASSANDRA_PORT:=9042}"
: "${CASSANDRA_STORAGE_PORT:=7000}"
: "${S3_PORT:=3900}"
: "${GARAGE_RPC_PORT:=3901}"
: "${GARAGE_ADMIN_PORT:=3903}"
: "${CLAMD_PORT:=3310}"

# Development credentials of the local S3 server; Garage key ids are "GK" + 24 hex digits.
: "${TRIBUTARY_S3_BUCKET:=tributary}"
: "${TRIBUTARY_S3_ACCESS_KEY_ID:=GK747269627574617279646576}"
: "${TRIBUTARY_S3_SECRET_ACCESS_KEY:=6465762d6f6e6c792d7365637265742d666f722d6c6f63616c2d737461636b21}"
GARAGE_RPC_SECRET="5472696275746172792d6465762d7270632d7365637265742d303030303030ff"
GARAGE_ADMIN_TOKEN="tributary-dev-admin-token"
# The SASL listener's SCRAM user and its TLS keystore (generated into the state directory).
KAFKA_SCRAM_USER="tributary"
KAFKA_SCRAM_PASSWORD="tributary-dev-scram-password"
KAFKA_TLS_PASSWORD="tributary-dev-keystore"

# Heaps are small on purpose: the whole stack shares a 2-core machine with the builds.
: "${KAFKA_HEAP:=-Xms256m -Xmx512m}"

log() { if [ -t 2 ]; then printf '\033[1m[devstack]\033[0m %s\n' "$*" >&2; else printf '[devstack] %s\n' "$*" >&2; fi; }
die() { printf '[devstack] error: %s\n' "$*" >&2; exit 1; }

# Succeeds when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $2 seconds for port $1; $3 names the service for the error.
wait_port() {
  local port=$1 timeout=$2 name=$3 waited=0
  until port_open "$port"; do
    sleep 1
    waited=$((waited + 1))
    if [ "$waited" -ge "$timeout" ]; then
      die "$name did not open port $port within ${timeout}s; see ./devstack logs $name"
    fi
  done
}

# Refuses to start `name` when its port is taken by a process this stack did not start
# (typically a stack run from another checkout).
ensure_port_free() {
  local port=$1 name=$2
  if port_open "$port"; then
    die "port $port is already in use, so $name cannot start; stop whatever holds it (another checkout's ./devstack down?)"
  fi
}

# pid file helpers: a service is running when its pid file names a live process.
pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Prints one status line for a process started by this stack; fails when it is down.
service_status() {
  local name=$1 pidfile=$2 port=$3
  if pid_alive "$pidfile" && port_open "$port"; then
    printf '%-10s up    127.0.0.1:%s  pid %s\n' "$name" "$port" "$(cat "$pidfile")"
  else
    printf '%-10s down\n' "$name"
    return 1
  fi
}

stop_pid() {
  local pidfile=$1 name=$2 i
  if ! pid_alive "$pidfile"; then rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 1 60); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$pidfile"
}

# Renders a template with @NAME@ placeholders from the variables of the same name.
render() {
  local src=$1 dst=$2 state=$3
  sed -e "s|@STATE@|$state|g" \
      -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
      -e "s|@KAFKA_SASL_PORT@|$KAFKA_SASL_PORT|g" -e "s|@KAFKA_TLS_PASSWORD@|$KAFKA_TLS_PASSWORD|g" \
      -e "s|@CASSANDRA_PORT@|$CASSANDRA_PORT|g" -e "s|@CASSANDRA_STORAGE_PORT@|$CASSANDRA_STORAGE_PORT|g" \
      -e "s|@S3_PORT@|$S3_PORT|g" -e "s|@GARAGE_RPC_PORT@|$GARAGE_RPC_PORT|g" \
      -e "s|@GARAGE_ADMIN_PORT@|$GARAGE_ADMIN_PORT|g" -e "s|@GARAGE_RPC_SECRET@|$GARAGE_RPC_SECRET|g" \
      -e "s|@GARAGE_ADMIN_TOKEN@|$GARAGE_ADMIN_TOKEN|g" -e "s|@CLAMD_PORT@|$CLAMD_PORT|g" \
      "$src" > "$dst"
}

# Makes the shared CARGO_TARGET_DIR safe to use from this checkout. Cargo names a workspace
# crate's artifacts by its path *relative to the workspace*, so two checkouts (a CI clone, a
# worktree) share them, and decides freshness by mtime: a file of this checkout older than
# another checkout's last build would be taken as built, and its binaries would be the other
# checkout's code. When the target directory was last used by another checkout, touching this
# checkout's Rust sources makes cargo rebuild the workspace's own crates (never the
# dependencies).
claim_target_dir() {
  local marker="$CARGO_TARGET_DIR/.tributary-checkout"
  mkdir -p "$CARGO_TARGET_DIR"
  if [ "$(cat "$marker" 2>/dev/null)" != "$REPO_ROOT" ]; then
    log "target directory last built another checkout: rebuilding this workspace's crates"
    (cd "$REPO_ROOT" && git ls-files -z -- '*.rs' '*Cargo.toml' | xargs -0 -r touch) || true
    echo "$REPO_ROOT" > "$marker"
  fi
}

# Fetches the runtime jars of stack/maven/$1.pom.xml into a cache directory keyed by the
# pom's content hash, and prints that directory.
maven_jars() {
  local name=$1 pom="$STACK_ROOT/maven/$1.pom.xml" hash dir
  hash=$(sha256sum "$pom" | cut -c1-16)
  dir="$TRIBUTARY_CACHE/jars/$name-$hash"
  if [ ! -f "$dir/.complete" ]; then
    log "downloading $name jars from Maven Central (first run only)"
    rm -rf "$dir"
    mkdir -p "$TRIBUTARY_CACHE"
    mvn -q -B -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$dir" -Dmaven.repo.local="$TRIBUTARY_CACHE/m2" \
      > "$TRIBUTARY_CACHE/mvn-$name.log" 2>&1 \
      || { tail -n 20 "$TRIBUTARY_CACHE/mvn-$name.log" >&2; die "could not download $name jars (mvn dependency:copy-dependencies failed)"; }
    touch "$dir/.complete"
  fi
  echo "$dir"
}
