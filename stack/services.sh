# Tributary's own binaries, built from this workspace and run against the local engines.
# Sourced by ./devstack; functions: services_up, services_down, services_status.

SERVICES_STATE="$TRIBUTARY_STATE_DIR/services"
# The binaries `./devstack up` runs, each with the port whose opening means it is serving;
# each new service binary is added here.
TRIBUTARY_SERVICES=(ingest-api:8080 realtime-bridge:8081 projector:8082 assembler:8083 validator:8084 transformer:8086 janitor:8087)

services_up() {
  mkdir -p "$SERVICES_STATE"
  log "building Tributary's services"
  claim_target_dir
  (cd "$REPO_ROOT" && cargo build --locked --bins) || die "cargo build failed"
  local entry svc port waited
  for entry in "${TRIBUTARY_SERVICES[@]}"; do
    svc=${entry%%:*}
    # Services are stateless: restart them so `up` always runs the code just built.
    stop_pid "$SERVICES_STATE/$svc.pid" "$svc"
    log "starting $svc"
    setsid nohup "$CARGO_TARGET_DIR/debug/$svc" >> "$SERVICES_STATE/$svc.log" 2>&1 < /dev/null &
    echo $! > "$SERVICES_STATE/$svc.pid"
  done
  for entry in "${TRIBUTARY_SERVICES[@]}"; do
    svc=${entry%%:*} port=${entry##*:} waited=0
    until port_open "$port"; do
      if ! pid_alive "$SERVICES_STATE/$svc.pid"; then
        tail -n 5 "$SERVICES_STATE/$svc.log" >&2
        die "$svc exited during start-up; see ./devstack logs $svc"
      fi
      sleep 0.5; waited=$((waited + 1))
      [ "$waited" -lt 120 ] || die "$svc did not open port $port within 60s"
    done
  done
  services_status
  demo_tenant
}

# A tenant to try things with, created once: its key is written to $TRIBUTARY_STATE_DIR/demo.env
# (TRIBUTARY_API_URL, TRIBUTARY_API_KEY, TRIBUTARY_TENANT_ID), which `./devstack cli` and the
# web page's instructions use.
demo_tenant() {
  local env_file="$TRIBUTARY_STATE_DIR/demo.env" answer
  if [ -f "$env_file" ]; then
    # shellcheck disable=SC1090
    (source "$env_file" && curl -fsS -o /dev/null -H "Authorization: Bearer $TRIBUTARY_API_KEY" \
      "$TRIBUTARY_API_URL/v1/uploads?limit=1") && { log "demo tenant: $env_file"; return 0; }
  fi
  answer=$(curl -fsS -X POST "http://127.0.0.1:8080/v1/admin/tenants" \
    -H "Authorization: Bearer ${TRIBUTARY_API__ADMIN_TOKEN:-dev-admin-token}" \
    -H 'Content-Type: application/json' -d '{"name": "demo"}') || die "could not create the demo tenant"
  python3 - "$answer" > "$env_file" <<'PY' || die "unexpected answer creating the demo tenant: $answer"
import json, sys
created = json.loads(sys.argv[1])
print("TRIBUTARY_API_URL=http://127.0.0.1:8080")
print("TRIBUTARY_API_KEY=" + created["api_key"])
print("TRIBUTARY_TENANT_ID=" + created["tenant_id"])
PY
  chmod 600 "$env_file"
  log "demo tenant created: $env_file (try: ./devstack cli upload FILE)"
}

services_down() {
  local entry
  for entry in "${TRIBUTARY_SERVICES[@]}"; do stop_pid "$SERVICES_STATE/${entry%%:*}.pid" "${entry%%:*}"; done
}

services_status() {
  local entry svc rc=0
  for entry in "${TRIBUTARY_SERVICES[@]}"; do
    svc=${entry%%:*}
    if pid_alive "$SERVICES_STATE/$svc.pid"; then
      printf '%-11s up    127.0.0.1:%s  pid %s  log %s\n' "$svc" "${entry##*:}" "$(cat "$SERVICES_STATE/$svc.pid")" "$SERVICES_STATE/$svc.log"
    else
      printf '%-11s down\n' "$svc"; rc=1
    fi
  done
  return $rc
}
