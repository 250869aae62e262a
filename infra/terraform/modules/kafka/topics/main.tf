# Tributary's topics, created through the Kafka protocol by the Mongey/kafka provider (the
# caller configures it for MSK IAM: see environments/example/main.tf).
#
# These blocks mirror stack/topics.tsv, the declaration the code embeds
# (tributary_runtime::topics) and the local stack creates. The drift test
# (infra/drift, part of `cargo test --workspace`) fails when a name, a partition count or a
# retention differs, when a topic is missing or extra, or when cleanup.policy is not delete.
# Keep every value below a literal so that test can read it.
#
# Partition counts bound consumer parallelism (the autoscaling maximum of a consumer service)
# and fix the key -> partition mapping: raising one changes which partition a tenant's events
# go to, so per-tenant order holds only for events produced after the change. Never lower one.

resource "kafka_topic" "uploads_lifecycle" {
  name               = "tributary.uploads.lifecycle.v1"
  partitions         = 12
  replication_factor = var.replication_factor

  config = {
    # The source of truth: kept forever, never compacted.
    "retention.ms"        = "-1"
    "cleanup.policy"      = "delete"
    "min.insync.replicas" = tostring(var.min_insync_replicas)
  }
}

resource "kafka_topic" "tenants_admin" {
  name               = "tributary.tenants.admin.v1"
  partitions         = 3
  replication_factor = var.replication_factor

  config = {
    "retention.ms"        = "-1"
    "cleanup.policy"      = "delete"
    "min.insync.replicas" = tostring(var.min_insync_replicas)
  }
}

resource "kafka_topic" "uploads_progress" {
  name               = "tributary.uploads.progress.v1"
  partitions         = 12
  replication_factor = var.replication_factor

  config = {
    # One day.
    "retention.ms"        = "86400000"
    "cleanup.policy"      = "delete"
    "min.insync.replicas" = tostring(var.min_insync_replicas)
  }
}

resource "kafka_topic" "media_jobs" {
  name               = "tributary.media.jobs.v1"
  partitions         = 12
  replication_factor = var.replication_factor

  config = {
    # Seven days.
    "retention.ms"        = "604800000"
    "cleanup.policy"      = "delete"
    "min.insync.replicas" = tostring(var.min_insync_replicas)
  }
}

resource "kafka_topic" "deadletter" {
  name               = "tributary.deadletter.v1"
  partitions         = 3
  replication_factor = var.replication_factor

  config = {
    # Thirty days.
    "retention.ms"        = "2592000000"
    "cleanup.policy"      = "delete"
    "min.insync.replicas" = tostring(var.min_insync_replicas)
  }
}
