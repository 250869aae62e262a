# Apache Cassandra 5.0 (stand-in for ScyllaDB) run from Maven Central jars with CassandraDaemon.
# Sourced by ./devstack; functions: cassandra_start, cassandra_stop, cassandra_status.

CASSANDRA_STATE="$TRIBUTARY_STATE_DIR/cassandra"

cassandra_start() {
  mkdir -p "$CASSANDRA_STATE/logs" "$CASSANDRA_STATE/data"
  if pid_alive "$CASSANDRA_STATE/pid"; then log "cassandra already running"; return 0; fi
  ensure_port_free "$CASSANDRA_PORT" cassandra
  local jars; jars=$(maven_jars cassandra)
  render "$STACK_ROOT/conf/cassandra.yaml" "$CASSANDRA_STATE/cassandra.yaml" "$CASSANDRA_STATE"
  local opts; opts=$(grep -v '^#' "$STACK_ROOT/conf/cassandra-jvm.options" | tr '\n' ' ')
  log "starting cassandra on 127.0.0.1:$CASSANDRA_PORT"
  # shellcheck disable=SC2086
  setsid nohup java $opts \
    -javaagent:"$(ls "$jars"/jamm-*.jar | head -n1)" \
    -Dcassandra.config="file://$CASSANDRA_STATE/cassandra.yaml" \
    -Dcassandra.storagedir="$CASSANDRA_STATE" \
    -Dcassandra.logdir="$CASSANDRA_STATE/logs" \
    -Dlogback.configurationFile="$STACK_ROOT/conf/cassandra-logback.xml" \
    -cp "$jars/*" org.apache.cassandra.service.CassandraDaemon \
    > "$CASSANDRA_STATE/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$CASSANDRA_STATE/pid"
}

# The native transport port opens last, once the node accepts CQL.
cassandra_wait() { wait_port "$CASSANDRA_PORT" 240 cassandra; }

cassandra_stop() { stop_pid "$CASSANDRA_STATE/pid" cassandra; }

cassandra_status() { service_status cassandra "$CASSANDRA_STATE/pid" "$CASSANDRA_PORT"; }
