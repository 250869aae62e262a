# clamd (ClamAV's daemon, Debian package clamav-daemon): the validator's optional malware
# scan speaks its INSTREAM protocol. Loaded with the test signature of stack/conf/clamav/
# only. Sourced by ./devstack.

CLAMD_STATE="$TRIBUTARY_STATE_DIR/clamd"
CLAMD_BIN=/usr/sbin/clamd

clamd_start() {
  mkdir -p "$CLAMD_STATE/logs" "$CLAMD_STATE/db" "$CLAMD_STATE/tmp"
  if pid_alive "$CLAMD_STATE/pid"; then log "clamd already running"; return 0; fi
  ensure_port_free "$CLAMD_PORT" clamd
  [ -x "$CLAMD_BIN" ] || die "clamd is missing (Debian package clamav-daemon)"
  cp "$STACK_ROOT"/conf/clamav/*.ndb "$CLAMD_STATE/db/"
  render "$STACK_ROOT/conf/clamd.conf" "$CLAMD_STATE/clamd.conf" "$CLAMD_STATE"
  log "starting clamd on 127.0.0.1:$CLAMD_PORT"
  setsid nohup "$CLAMD_BIN" -c "$CLAMD_STATE/clamd.conf" > "$CLAMD_STATE/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$CLAMD_STATE/pid"
}

clamd_wait() { wait_port "$CLAMD_PORT" 60 clamd; }

clamd_stop() { stop_pid "$CLAMD_STATE/pid" clamd; }

clamd_status() { service_status "clamd" "$CLAMD_STATE/pid" "$CLAMD_PORT"; }
