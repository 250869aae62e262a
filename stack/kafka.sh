# Apache Kafka 4.x in KRaft combined mode (broker + controller), run from Maven Central jars.
# Sourced by ./devstack; functions: kafka_start, kafka_stop, kafka_status, kafka_tool, kafka_ensure_topics.

KAFKA_STATE="$TRIBUTARY_STATE_DIR/kafka"

kafka_classpath() { echo "$(maven_jars kafka)/*"; }

# Runs one of Kafka's own command-line tools by main class, e.g.
# kafka_tool org.apache.kafka.tools.TopicCommand --list --bootstrap-server 127.0.0.1:9092
kafka_tool() {
  local main=$1; shift
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$STACK_ROOT/conf/kafka-tools-log4j2.properties" \
    -cp "$(kafka_classpath)" "$main" "$@"
}

# The SASL listener's self-signed certificate: a PKCS12 keystore for the broker and the same
# certificate as PEM ($KAFKA_STATE/tls/ca.pem), which clients trust (`ssl.ca.location`).
kafka_tls_material() {
  local dir="$KAFKA_STATE/tls"
  [ -f "$dir/broker.p12" ] && [ -f "$dir/ca.pem" ] && return 0
  mkdir -p "$dir"
  rm -f "$dir/broker.p12" "$dir/ca.pem"
  keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
    -dname "CN=localhost" -ext "SAN=IP:127.0.0.1,DNS:localhost" -storetype PKCS12 \
    -keystore "$dir/broker.p12" -storepass "$KAFKA_TLS_PASSWORD" -keypass "$KAFKA_TLS_PASSWORD" \
    >/dev/null 2>&1 || die "keytool could not create the kafka keystore"
  keytool -exportcert -rfc -alias broker -keystore "$dir/broker.p12" \
    -storepass "$KAFKA_TLS_PASSWORD" -file "$dir/ca.pem" >/dev/null 2>&1 \
    || die "keytool could not export the kafka certificate"
}

# Creates the SCRAM user of the SASL listener once (it lives in the cluster's metadata).
kafka_ensure_scram_user() {
  local marker="$KAFKA_STATE/data/.scram-user-$KAFKA_SCRAM_USER"
  [ -f "$marker" ] && return 0
  kafka_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
    --alter --entity-type users --entity-name "$KAFKA_SCRAM_USER" \
    --add-config "SCRAM-SHA-512=[iterations=4096,password=$KAFKA_SCRAM_PASSWORD]" >/dev/null \
    || die "could not create the kafka SCRAM user"
  touch "$marker"
}

kafka_start() {
  mkdir -p "$KAFKA_STATE/data" "$KAFKA_STATE/logs"
  if pid_alive "$KAFKA_STATE/pid"; then log "kafka already running"; return 0; fi
  ensure_port_free "$KAFKA_PORT" kafka
  ensure_port_free "$KAFKA_SASL_PORT" kafka
  kafka_tls_material
  local cp; cp=$(kafka_classpath)
  render "$STACK_ROOT/conf/kafka-server.properties" "$KAFKA_STATE/server.properties" "$KAFKA_STATE"
  if [ ! -f "$KAFKA_STATE/data/meta.properties" ]; then
    local cluster_id; cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)
    [ -n "$cluster_id" ] || die "kafka storage tool failed to produce a cluster id"
    java -Dlog4j2.configurationFile="$STACK_ROOT/conf/kafka-tools-log4j2.properties" -cp "$cp" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_STATE/server.properties" \
      > "$KAFKA_STATE/logs/format.log" 2>&1 || die "kafka storage format failed; see $KAFKA_STATE/logs/format.log"
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  # shellcheck disable=SC2086
  setsid nohup java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dkafka.logs.dir="$KAFKA_STATE/logs" \
    -Dlog4j2.configurationFile="$STACK_ROOT/conf/kafka-log4j2.properties" \
    -cp "$cp" kafka.Kafka "$KAFKA_STATE/server.properties" \
    > "$KAFKA_STATE/logs/stdout.log" 2>&1 < /dev/null &
  echo $! > "$KAFKA_STATE/pid"
}

kafka_wait() { wait_port "$KAFKA_PORT" 120 kafka; }

kafka_stop() { stop_pid "$KAFKA_STATE/pid" kafka; }

kafka_status() { service_status kafka "$KAFKA_STATE/pid" "$KAFKA_PORT"; }

# Creates the topics of stack/topics.tsv that do not exist yet (one JVM start when all exist).
kafka_ensure_topics() {
  local existing name partitions retention _
  existing=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" --list) \
    || die "could not list kafka topics"
  while IFS=$'\t' read -r name partitions retention _; do
    case "$name" in ''|'#'*) continue ;; esac
    if grep -qx "$name" <<<"$existing"; then continue; fi
    log "creating topic $name ($partitions partitions, retention.ms=$retention)"
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" \
      --create --if-not-exists --topic "$name" --partitions "$partitions" --replication-factor 1 \
      --config "retention.ms=$retention" --config cleanup.policy=delete >/dev/null \
      || die "could not create topic $name"
  done < "$STACK_ROOT/topics.tsv"
}
