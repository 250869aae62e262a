//! The runtime's Kafka security settings against the local broker's second listener
//! (`SASL_SSL` on 127.0.0.1:9094, self-signed certificate, SCRAM-SHA-512 and OAUTHBEARER),
//! which `./devstack` configures the way MSK's listeners are: TLS first, then SASL.
//!
//! SCRAM goes through exactly the configuration path a service uses
//! (`kafka.security.*` → [`base_client_config`] → [`create`]). OAUTHBEARER goes through the
//! same [`KafkaContext`] MSK IAM uses, with a token the local broker can check (an unsecured
//! JWT; MSK instead checks the SigV4 signature of an IAM token, see the unit tests of
//! `kafka::security`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use rdkafka::client::OAuthToken;
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tributary_runtime::config::{KafkaConfig, KafkaProtocol, KafkaSecurity, SaslMechanism};
use tributary_runtime::kafka::{
    BaseConsumer, FutureProducer, KafkaClient, KafkaContext, OAuthTokenSource, Producer,
    base_client_config, create,
};
use tributary_runtime::testing;

fn state_dir() -> PathBuf {
    std::env::var_os("TRIBUTARY_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.stack"))
}

/// The SASL listener with `mechanism`; `password` for SCRAM.
fn secured(mechanism: SaslMechanism, password: Option<&str>) -> KafkaConfig {
    let port = std::env::var("KAFKA_SASL_PORT").unwrap_or_else(|_| "9094".into());
    let mut kafka = testing::stack_config().kafka;
    kafka.brokers = format!("127.0.0.1:{port}");
    kafka.security = KafkaSecurity {
        protocol: KafkaProtocol::SaslSsl,
        sasl_mechanism: Some(mechanism),
        username: password.map(|_| "tributary".to_string()),
        password: password.map(str::to_string),
        ca_location: Some(
            state_dir()
                .join("kafka/tls/ca.pem")
                .to_string_lossy()
                .into_owned(),
        ),
        aws_region: Some("eu-west-1".into()),
        ..KafkaSecurity::default()
    };
    kafka
}

/// Reads the record at `offset` of partition 0 of `topic` with `consumer`.
fn read_one(consumer: &BaseConsumer, topic: &str, offset: i64) -> Vec<u8> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("assignment");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(result) = consumer.poll(Duration::from_millis(500)) {
            let message = result.expect("consume over the secured listener");
            return message.payload().unwrap_or_default().to_vec();
        }
    }
    panic!("no record read from {topic} within 30 s");
}

#[tokio::test]
async fn scram_over_tls_produces_and_consumes_through_the_service_config_path() {
    let plain = testing::stack_config();
    let topic = testing::unique("secured");
    testing::create_topic(&plain, &topic, 1)
        .await
        .expect("topic");

    let kafka = secured(
        SaslMechanism::ScramSha512,
        Some("tributary-dev-scram-password"),
    );
    let producer = Producer::new(&kafka, "security-test").expect("producer");
    producer
        .check_cluster(&kafka.brokers, &[topic.as_str()], Duration::from_secs(20))
        .await
        .expect("metadata over SASL_SSL with SCRAM-SHA-512");
    let delivery = producer
        .send(&topic, b"tenant", b"over tls and scram", &[])
        .await
        .expect("acknowledged over SASL_SSL");

    let mut reader = base_client_config(&kafka, "security-test-reader");
    reader
        .set("group.id", testing::unique("secured_reader"))
        .set("enable.auto.commit", "false");
    let reader: BaseConsumer = create(&reader, &kafka).expect("consumer");
    let payload = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_one(&reader, &topic, delivery.offset)
    })
    .await
    .expect("reader");
    assert_eq!(payload, b"over tls and scram");

    testing::delete_topic(&plain, &topic)
        .await
        .expect("cleanup");
}

#[tokio::test]
async fn a_wrong_scram_password_fails_the_start_up_check_in_bounded_time() {
    let kafka = secured(SaslMechanism::ScramSha512, Some("not-the-password"));
    let producer = Producer::new(&kafka, "security-test-refused").expect("producer");
    let started = Instant::now();
    let error = producer
        .check_cluster(&kafka.brokers, &[], Duration::from_secs(10))
        .await
        .expect_err("a wrong password must not pass the start-up check");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        error.to_string().contains("127.0.0.1"),
        "names the brokers: {error}"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused() {
    let mut kafka = secured(
        SaslMechanism::ScramSha512,
        Some("tributary-dev-scram-password"),
    );
    // The system CA store does not know the listener's self-signed certificate.
    kafka.security.ca_location = None;
    let producer = Producer::new(&kafka, "security-test-untrusted").expect("producer");
    producer
        .check_cluster(&kafka.brokers, &[], Duration::from_secs(10))
        .await
        .expect_err("an unverified broker must not be used");
}

/// Unsecured JWTs (`alg: none`), which Kafka's default OAUTHBEARER validator accepts.
struct UnsecuredJwt {
    issued: AtomicUsize,
}

impl OAuthTokenSource for UnsecuredJwt {
    fn token(&self) -> Result<OAuthToken, String> {
        self.issued.fetch_add(1, Ordering::SeqCst);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let encode = |json: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
        let token = format!(
            "{}.{}.",
            encode(r#"{"alg":"none"}"#.into()),
            encode(format!(
                r#"{{"sub":"tributary","iat":{now},"exp":{}}}"#,
                now + 900
            ))
        );
        Ok(OAuthToken {
            token,
            principal_name: "tributary".into(),
            lifetime_ms: ((now + 900) * 1000) as i64,
        })
    }
}

#[tokio::test]
async fn oauthbearer_tokens_come_from_the_client_context() {
    let plain = testing::stack_config();
    let topic = testing::unique("oauth");
    testing::create_topic(&plain, &topic, 1)
        .await
        .expect("topic");

    // The configuration of `aws-msk-iam`; only the token source differs from production.
    let kafka = secured(SaslMechanism::AwsMskIam, None);
    let source = Arc::new(UnsecuredJwt {
        issued: AtomicUsize::new(0),
    });

    let mut producer = base_client_config(&kafka, "security-test-oauth");
    producer.set("message.timeout.ms", "20000");
    assert_eq!(producer.get("sasl.mechanism"), Some("OAUTHBEARER"));
    let producer: FutureProducer = producer
        .create_with_context(KafkaContext::with_token_source(source.clone()))
        .expect("producer");
    let delivery = producer
        .send(
            rdkafka::producer::FutureRecord::to(&topic)
                .key("tenant")
                .payload("over oauthbearer"),
            Duration::from_secs(20),
        )
        .await
        .expect("acknowledged with a context-issued token");
    let offset = delivery.offset;

    let mut reader = base_client_config(&kafka, "security-test-oauth-reader");
    reader
        .set("group.id", testing::unique("oauth_reader"))
        .set("enable.auto.commit", "false");
    let reader: BaseConsumer = reader
        .create_with_context(KafkaContext::with_token_source(source.clone()))
        .expect("consumer");
    reader.prime();
    let payload = tokio::task::spawn_blocking({
        let topic = topic.clone();
        move || read_one(&reader, &topic, offset)
    })
    .await
    .expect("reader");
    assert_eq!(payload, b"over oauthbearer");
    assert!(
        source.issued.load(Ordering::SeqCst) >= 2,
        "each client asked its context for a token"
    );

    testing::delete_topic(&plain, &topic)
        .await
        .expect("cleanup");
}
