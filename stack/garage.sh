# Garage, the S3-compatible server (enforces SigV4 on presigned URLs), built once with
# `cargo install` by stack/install-garage.sh. Sourced by ./devstack.

GARAGE_STATE="$TRIBUTARY_STATE_DIR/garage"

garage_bin() { "$STACK_ROOT/install-garage.sh"; }

garage_cli() { "$(garage_bin)" -c "$GARAGE_STATE/garage.toml" "$@"; }

garage_start() {
  mkdir -p "$GARAGE_STATE/logs"
  if pid_alive "$GARAGE_STATE/pid"; then log "garage already running"; return 0; fi
  ensure_port_free "$S3_PORT" garage
  local bin; bin=$(garage_bin) || die "could not build garage"
  render "$STACK_ROOT/conf/garage.toml" "$GARAGE_STATE/garage.toml" "$GARAGE_STATE"
  log "starting garage (s3) on 127.0.0.1:$S3_PORT"
  RUST_LOG=${GARAGE_LOG:-warn,garage=info} setsid nohup "$bin" -c "$GARAGE_STATE/garage.toml" server \
    > "$GARAGE_STATE/logs/garage.log" 2>&1 < /dev/null &
  echo $! > "$GARAGE_STATE/pid"
}

# Waits for the S3 port, then gives the single node a layout and creates the bucket and the
# development key once (marker file), so a second `up` does nothing.
garage_wait() {
  wait_port "$S3_PORT" 60 garage
  wait_port "$GARAGE_RPC_PORT" 60 garage
  [ -f "$GARAGE_STATE/.configured" ] && return 0
  local node i
  for i in $(seq 1 30); do
    node=$(garage_cli node id -q 2>/dev/null | cut -d@ -f1) && [ -n "$node" ] && break
    sleep 1
  done
  [ -n "$node" ] || die "garage did not report its node id"
  log "configuring garage: layout, bucket $TRIBUTARY_S3_BUCKET, development key"
  garage_cli layout assign -z local -c 10G "$node" >/dev/null
  garage_cli layout apply --version 1 >/dev/null
  for i in $(seq 1 30); do
    garage_cli bucket create "$TRIBUTARY_S3_BUCKET" >/dev/null 2>&1 && break
    garage_cli bucket info "$TRIBUTARY_S3_BUCKET" >/dev/null 2>&1 && break
    sleep 1
  done
  garage_cli key import --yes -n tributary-dev "$TRIBUTARY_S3_ACCESS_KEY_ID" "$TRIBUTARY_S3_SECRET_ACCESS_KEY" >/dev/null
  garage_cli bucket allow --read --write --owner "$TRIBUTARY_S3_BUCKET" --key tributary-dev >/dev/null
  touch "$GARAGE_STATE/.configured"
}

garage_stop() { stop_pid "$GARAGE_STATE/pid" garage; }

garage_status() { service_status "garage(s3)" "$GARAGE_STATE/pid" "$S3_PORT"; }
