# Apicurio Registry 2.x, a Confluent-compatible Schema Registry (API under
# http://127.0.0.1:8085/apis/ccompat/v7), in-memory storage: schemas live as long as the process.
# Built once from Maven Central jars by stack/maven/registry/ (see the comment in its pom.xml)
# and cached under ~/.cache/tributary, keyed by Apicurio version and the build files' hash.
# Sourced by ./devstack; functions: registry_install, registry_start, registry_wait,
# registry_stop, registry_status.

: "${REGISTRY_PORT:=8085}"
: "${REGISTRY_HEAP:=-Xms32m -Xmx192m}"
REGISTRY_STATE="$TRIBUTARY_STATE_DIR/registry"
REGISTRY_BUILD="$STACK_ROOT/maven/registry"

# Builds the registry once and prints the directory with its runner jar (and lib/).
registry_install() {
  local version hash dir
  version=$(sed -n 's|.*<apicurio.version>\(.*\)</apicurio.version>.*|\1|p' "$REGISTRY_BUILD/pom.xml")
  hash=$(cd "$REGISTRY_BUILD" && find pom.xml settings.xml src -type f | LC_ALL=C sort \
    | xargs sha256sum | sha256sum | cut -c1-16)
  dir="$TRIBUTARY_CACHE/apicurio-registry-$version-$hash"
  if [ ! -f "$dir/.complete" ]; then
    log "building apicurio registry $version from Maven Central jars (first run only)"
    rm -rf "$dir"
    mkdir -p "$TRIBUTARY_CACHE"
    # settings.xml keeps Maven on Central (Apicurio's parent pom names other repositories).
    mvn -q -B -s "$REGISTRY_BUILD/settings.xml" -f "$REGISTRY_BUILD/pom.xml" package \
      -Dregistry.build.dir="$dir/build" -Dmaven.repo.local="$TRIBUTARY_CACHE/m2" \
      > "$TRIBUTARY_CACHE/mvn-registry.log" 2>&1 \
      || { tail -n 20 "$TRIBUTARY_CACHE/mvn-registry.log" >&2; die "could not build apicurio registry (mvn package failed)"; }
    touch "$dir/.complete"
  fi
  echo "$dir/build"
}

registry_start() {
  mkdir -p "$REGISTRY_STATE/logs" "$REGISTRY_STATE/tmp"
  if pid_alive "$REGISTRY_STATE/pid"; then log "registry already running"; return 0; fi
  ensure_port_free "$REGISTRY_PORT" registry
  local build; build=$(registry_install)
  log "starting schema registry on http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
  # shellcheck disable=SC2086
  setsid nohup java $REGISTRY_HEAP -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Djava.io.tmpdir="$REGISTRY_STATE/tmp" \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.datasource.jdbc.initial-size=2 -Dquarkus.datasource.jdbc.min-size=2 \
    -jar "$build/apicurio-registry-runner.jar" \
    > "$REGISTRY_STATE/logs/registry.log" 2>&1 < /dev/null &
  echo $! > "$REGISTRY_STATE/pid"
}

# Quarkus opens its HTTP port last, once the application has started.
registry_wait() { wait_port "$REGISTRY_PORT" 120 registry; }

registry_stop() { stop_pid "$REGISTRY_STATE/pid" registry; }

registry_status() { service_status registry "$REGISTRY_STATE/pid" "$REGISTRY_PORT"; }
