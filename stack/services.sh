# Tributary's own binaries, built from this workspace and run against the local engines.
# Sourced by ./devstack; functions: services_up, services_down, services_status.

SERVICES_STATE="$TRIBUTARY_STATE_DIR/services"
# The binaries `./devstack up` runs; each new service binary is added here.
TRIBUTARY_SERVICES=(ingest-api)

services_up() {
  mkdir -p "$SERVICES_STATE"
  log "building Tributary's services"
  (cd "$REPO_ROOT" && cargo build --locked --bins) || die "cargo build failed"
  local svc
  for svc in "${TRIBUTARY_SERVICES[@]}"; do
    # Services are stateless: restart them so `up` always runs the code just built.
    stop_pid "$SERVICES_STATE/$svc.pid" "$svc"
    log "starting $svc"
    setsid nohup "$CARGO_TARGET_DIR/debug/$svc" >> "$SERVICES_STATE/$svc.log" 2>&1 < /dev/null &
    echo $! > "$SERVICES_STATE/$svc.pid"
  done
  sleep 1
  services_status || die "a service failed to start; see ./devstack logs <service>"
}

services_down() {
  local svc
  for svc in "${TRIBUTARY_SERVICES[@]}"; do stop_pid "$SERVICES_STATE/$svc.pid" "$svc"; done
}

services_status() {
  local svc rc=0
  for svc in "${TRIBUTARY_SERVICES[@]}"; do
    if pid_alive "$SERVICES_STATE/$svc.pid"; then
      printf '%-10s up    pid %s  log %s\n' "$svc" "$(cat "$SERVICES_STATE/$svc.pid")" "$SERVICES_STATE/$svc.log"
    else
      printf '%-10s down\n' "$svc"; rc=1
    fi
  done
  return $rc
}
