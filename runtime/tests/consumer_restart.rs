//! The at-least-once consumer loop against the real broker and Cassandra, with a consumer
//! process that is SIGKILLed mid-stream and restarted.
//!
//! Proves: no record is skipped (every sequence number reaches the ledger), effects are not
//! duplicated (the ledger has exactly one row per record even though some records are
//! delivered twice after the kill), SIGTERM finishes and commits (a restarted consumer gets
//! nothing again), poison records land in the dead-letter topic with their reason, and Kafka's
//! own `kafka-consumer-groups --describe` works through `./devstack`.
//!
//! This file has its own `main` (harness = false): run with `CHILD_ENV` set, the same binary
//! is the consumer process under test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use scylla::client::session::Session;
use tributary_runtime::cql::{self, Migration};
use tributary_runtime::kafka::{
    ConsumerSettings, HandleError, Handler, Message, Producer, base_client_config, run_consumer,
};
use tributary_runtime::{Config, shutdown, telemetry, testing, topics};

const CHILD_ENV: &str = "TRIBUTARY_TEST_CONSUMER_CHILD";
const KEYSPACE: &str = "tributary_test";
const RECORDS: i32 = 600;

const LEDGER: Migration = Migration {
    version: 1,
    name: "consumer test ledger",
    statements: &[
        // The handler's effect: one row per record, written idempotently.
        "CREATE TABLE IF NOT EXISTS {keyspace}.ledger (run_id text, seq int, partition int, \
         offset bigint, PRIMARY KEY (run_id, seq))",
        // Every handler invocation, to count redeliveries.
        "CREATE TABLE IF NOT EXISTS {keyspace}.deliveries (run_id text, seq int, \
         delivery timeuuid, PRIMARY KEY (run_id, seq, delivery))",
    ],
};

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    if std::env::var(CHILD_ENV).is_ok() {
        runtime.block_on(child_consumer());
        return;
    }
    let started = Instant::now();
    runtime.block_on(consumer_survives_sigkill_and_sigterm());
    println!(
        "test consumer_survives_sigkill_and_sigterm ... ok ({:?})",
        started.elapsed()
    );
    println!("1 passed, 0 failed");
}

/// Parameters the driver passes to the child process.
struct ChildParams {
    topic: String,
    group: String,
    run_id: String,
    delay: Duration,
}

impl ChildParams {
    fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} set by the driver"));
        Self {
            topic: var("TEST_TOPIC"),
            group: var("TEST_GROUP"),
            run_id: var("TEST_RUN_ID"),
            delay: Duration::from_millis(var("TEST_DELAY_MS").parse().expect("delay ms")),
        }
    }
}

/// The handler under test: parses a sequence number and records it idempotently.
struct LedgerHandler {
    session: Session,
    run_id: String,
    delay: Duration,
}

impl Handler for LedgerHandler {
    async fn handle(&mut self, message: &Message) -> Result<(), HandleError> {
        let payload = message.payload.as_deref().unwrap_or_default();
        let seq: i32 = std::str::from_utf8(payload)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| {
                HandleError::Poison(format!(
                    "not a sequence number: {}",
                    String::from_utf8_lossy(payload)
                ))
            })?;
        tokio::time::sleep(self.delay).await;
        let insert = |cql: &str| cql.replace("{keyspace}", KEYSPACE);
        self.session
            .query_unpaged(
                insert("INSERT INTO {keyspace}.deliveries (run_id, seq, delivery) VALUES (?, ?, now())"),
                (&self.run_id, seq),
            )
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        self.session
            .query_unpaged(
                insert("INSERT INTO {keyspace}.ledger (run_id, seq, partition, offset) VALUES (?, ?, ?, ?)"),
                (&self.run_id, seq, message.partition, message.offset),
            )
            .await
            .map_err(|e| HandleError::Retry(e.to_string()))?;
        Ok(())
    }
}

async fn child_consumer() {
    let params = ChildParams::from_env();
    let config = testing::stack_config();
    telemetry::init("consumer-test-child", &config.telemetry).expect("telemetry");
    let session = cql::connect(&config.cql).await.expect("cql");
    let dead_letters = Producer::new(&config.kafka, "consumer-test-child").expect("producer");
    let handler = LedgerHandler {
        session,
        run_id: params.run_id,
        delay: params.delay,
    };
    let mut settings = ConsumerSettings::new(&params.group, &[params.topic.as_str()]);
    settings.max_retry_backoff = Duration::from_secs(1);
    let stop = shutdown::on_signal();
    run_consumer(&config.kafka, &settings, &dead_letters, handler, stop)
        .await
        .expect("consumer loop");
    dead_letters.flush(Duration::from_secs(5));
}

/// A consumer process that is killed if the driver panics, so a failed run never leaves an
/// orphan holding the test's output open.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn spawn_child(topic: &str, group: &str, run_id: &str, delay_ms: u64) -> ChildGuard {
    let child = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, "1")
        .env("TEST_TOPIC", topic)
        .env("TEST_GROUP", group)
        .env("TEST_RUN_ID", run_id)
        .env("TEST_DELAY_MS", delay_ms.to_string())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn consumer child");
    ChildGuard(child)
}

fn signal(child: &ChildGuard, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.0.id().to_string()])
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill {sig}");
}

async fn count(session: &Session, table: &str, run_id: &str) -> i64 {
    let rows = session
        .query_unpaged(
            format!("SELECT count(*) FROM {KEYSPACE}.{table} WHERE run_id = ?"),
            (run_id,),
        )
        .await
        .expect("count query")
        .into_rows_result()
        .expect("rows");
    rows.first_row::<(i64,)>().expect("one count").0
}

async fn wait_for_count(
    session: &Session,
    table: &str,
    run_id: &str,
    at_least: i64,
    limit: Duration,
) -> i64 {
    let deadline = Instant::now() + limit;
    loop {
        let n = count(session, table, run_id).await;
        if n >= at_least {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "{table} reached only {n} of {at_least} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn produce(producer: &Producer, topic: &str, seqs: std::ops::Range<i32>) {
    for seq in seqs {
        let key = format!("key-{}", seq % 7);
        producer
            .send(topic, key.as_bytes(), seq.to_string().as_bytes(), &[])
            .await
            .expect("acknowledged");
    }
}

/// High watermarks of every dead-letter partition, to read only what this run adds.
fn dead_letter_positions(config: &Config) -> TopicPartitionList {
    let client: BaseConsumer = base_client_config(&config.kafka, "consumer-test-dlq")
        .set("group.id", testing::unique("dlq_reader"))
        .create()
        .expect("client");
    let spec = topics::spec(topics::DEAD_LETTERS).expect("declared");
    let mut list = TopicPartitionList::new();
    for partition in 0..spec.partitions {
        let (_, high) = client
            .fetch_watermarks(topics::DEAD_LETTERS, partition, Duration::from_secs(10))
            .expect("watermarks");
        list.add_partition_offset(topics::DEAD_LETTERS, partition, Offset::Offset(high))
            .expect("offset");
    }
    list
}

fn find_dead_letter(
    config: &Config,
    from: &TopicPartitionList,
    key: &str,
) -> Vec<(String, String)> {
    let consumer: BaseConsumer = base_client_config(&config.kafka, "consumer-test-dlq")
        .set("group.id", testing::unique("dlq_reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("client");
    consumer.assign(from).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        if message.key() != Some(key.as_bytes()) {
            continue;
        }
        return message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_string(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
    }
    panic!("no dead letter with key {key} within 20 s");
}

async fn consumer_survives_sigkill_and_sigterm() {
    let config = testing::stack_config();
    let session = cql::connect(&config.cql)
        .await
        .expect("cassandra of the local stack");
    cql::migrate(&session, KEYSPACE, 1, "consumer-test", &[LEDGER])
        .await
        .expect("migrate");
    let topic = testing::unique("consumer_test");
    let group = testing::unique("consumer_test_group");
    let run_id = testing::unique("run");
    testing::create_topic(&config, &topic, 3)
        .await
        .expect("create topic");
    let producer = Producer::new(&config.kafka, "consumer-test-driver").expect("producer");
    produce(&producer, &topic, 0..RECORDS).await;

    // 1. A consumer is SIGKILLed mid-stream, after a quarter of the records.
    let mut first = spawn_child(&topic, &group, &run_id, 5);
    let before_kill = wait_for_count(
        &session,
        "ledger",
        &run_id,
        i64::from(RECORDS / 4),
        Duration::from_secs(90),
    )
    .await;
    signal(&first, "-KILL");
    let _ = first.0.wait();
    assert!(
        before_kill < i64::from(RECORDS),
        "killed mid-stream, not after the end"
    );

    // 2. A new consumer of the same group finishes the stream.
    let mut second = spawn_child(&topic, &group, &run_id, 0);
    wait_for_count(
        &session,
        "ledger",
        &run_id,
        i64::from(RECORDS),
        Duration::from_secs(90),
    )
    .await;
    // Every record has exactly one effect: one ledger row per sequence number, no gap.
    let seqs: Vec<i32> = session
        .query_unpaged(
            format!("SELECT seq FROM {KEYSPACE}.ledger WHERE run_id = ?"),
            (&run_id,),
        )
        .await
        .expect("select")
        .into_rows_result()
        .expect("rows")
        .rows::<(i32,)>()
        .expect("typed")
        .map(|r| r.expect("row").0)
        .collect();
    assert_eq!(
        seqs,
        (0..RECORDS).collect::<Vec<_>>(),
        "no record skipped, none duplicated"
    );
    let deliveries = count(&session, "deliveries", &run_id).await;
    assert!(
        deliveries >= i64::from(RECORDS),
        "at least once: {deliveries}"
    );
    println!(
        "sigkill after {before_kill} effects: {} records delivered again, 0 effects duplicated",
        deliveries - i64::from(RECORDS)
    );

    // 3. Poison records go to the dead-letter topic with their reason, and the stream moves on.
    let positions = dead_letter_positions(&config);
    let poison_key = testing::unique("poison");
    producer
        .send(
            &topic,
            poison_key.as_bytes(),
            b"not-a-number",
            &[("origin", b"test")],
        )
        .await
        .expect("poison sent");
    produce(&producer, &topic, RECORDS..RECORDS + 50).await;
    wait_for_count(
        &session,
        "ledger",
        &run_id,
        i64::from(RECORDS + 50),
        Duration::from_secs(60),
    )
    .await;
    let headers = find_dead_letter(&config, &positions, &poison_key);
    let header = |k: &str| {
        headers
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("dlq_topic"), Some(topic.as_str()));
    assert_eq!(header("dlq_group"), Some(group.as_str()));
    assert_eq!(header("origin"), Some("test"), "original headers kept");
    assert!(
        header("dlq_error").is_some_and(|e| e.contains("not a sequence number")),
        "{headers:?}"
    );

    // 4. SIGTERM: the consumer finishes, commits and exits successfully...
    signal(&second, "-TERM");
    let status = second.0.wait().expect("wait");
    assert!(status.success(), "graceful exit: {status}");
    let delivered = count(&session, "deliveries", &run_id).await;
    // ...so a consumer started afterwards is handed nothing again.
    let mut third = spawn_child(&topic, &group, &run_id, 0);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        count(&session, "deliveries", &run_id).await,
        delivered,
        "no redelivery after a clean stop"
    );

    // 5. Kafka's own tooling sees the group with no lag.
    let devstack = concat!(env!("CARGO_MANIFEST_DIR"), "/../devstack");
    let describe = Command::new(devstack)
        .args(["kafka-consumer-groups", "--describe", "--group", &group])
        .output()
        .expect("run kafka-consumer-groups");
    let text = String::from_utf8_lossy(&describe.stdout);
    assert!(
        describe.status.success(),
        "{}",
        String::from_utf8_lossy(&describe.stderr)
    );
    assert!(
        text.contains(&topic) && text.contains("CURRENT-OFFSET"),
        "{text}"
    );
    for line in text.lines().filter(|l| l.contains(&topic)) {
        let lag = line.split_whitespace().nth(5).unwrap_or_default();
        assert_eq!(lag, "0", "caught up: {line}");
    }

    signal(&third, "-TERM");
    assert!(third.0.wait().expect("wait").success());
    testing::delete_topic(&config, &topic)
        .await
        .expect("delete topic");
}
