# Amazon MSK in KRaft mode: TLS between clients and brokers and inside the cluster, IAM
# authentication only (no unauthenticated or plaintext listener). Topics are not created here
# but by the `topics` submodule, through the Kafka protocol (see ../../README.md).

resource "aws_security_group" "brokers" {
  name        = "${var.name}-msk"
  description = "MSK brokers of ${var.name}: IAM/TLS port from the allowed clients only"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

# count, not for_each: the client groups are usually created in the same apply, and for_each
# keys must be known at plan time.
resource "aws_vpc_security_group_ingress_rule" "clients" {
  count = length(var.client_security_group_ids)

  security_group_id            = aws_security_group.brokers.id
  referenced_security_group_id = var.client_security_group_ids[count.index]
  ip_protocol                  = "tcp"
  from_port                    = 9098
  to_port                      = 9098
  description                  = "Kafka over TLS with IAM authentication"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.brokers.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  description       = "Broker-to-broker replication and AWS endpoints"
}

resource "aws_cloudwatch_log_group" "brokers" {
  name              = "/msk/${var.name}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_msk_configuration" "this" {
  name        = "${var.name}-config"
  description = "Tributary broker defaults: no automatic topics, durable writes"

  # Topics exist only as declared (modules/kafka/topics, checked against stack/topics.tsv).
  server_properties = <<-EOT
    auto.create.topics.enable=false
    default.replication.factor=${var.default_replication_factor}
    min.insync.replicas=${var.min_insync_replicas}
    unclean.leader.election.enable=false
    delete.topic.enable=true
  EOT
}

resource "aws_msk_cluster" "this" {
  cluster_name           = var.name
  kafka_version          = var.kafka_version
  number_of_broker_nodes = var.broker_count
  enhanced_monitoring    = var.enhanced_monitoring

  broker_node_group_info {
    instance_type   = var.instance_type
    client_subnets  = var.subnet_ids
    security_groups = [aws_security_group.brokers.id]

    storage_info {
      ebs_storage_info {
        volume_size = var.volume_size_gib
      }
    }
  }

  configuration_info {
    arn      = aws_msk_configuration.this.arn
    revision = aws_msk_configuration.this.latest_revision
  }

  encryption_info {
    encryption_at_rest_kms_key_arn = var.encryption_at_rest_kms_key_arn

    encryption_in_transit {
      client_broker = "TLS"
      in_cluster    = true
    }
  }

  client_authentication {
    unauthenticated = false

    sasl {
      iam   = true
      scram = false
    }
  }

  open_monitoring {
    prometheus {
      jmx_exporter {
        enabled_in_broker = true
      }
      node_exporter {
        enabled_in_broker = true
      }
    }
  }

  logging_info {
    broker_logs {
      cloudwatch_logs {
        enabled   = true
        log_group = aws_cloudwatch_log_group.brokers.name
      }
    }
  }

  tags = var.tags
}

# What the identity that runs `terraform apply` needs to manage the topics through the Kafka
# protocol (the services never get these: see modules/service). Attach it to the apply role.
data "aws_iam_policy_document" "topic_admin" {
  statement {
    sid       = "Connect"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [aws_msk_cluster.this.arn]
  }

  statement {
    sid = "ManageTopics"
    actions = [
      "kafka-cluster:CreateTopic",
      "kafka-cluster:DescribeTopic",
      "kafka-cluster:AlterTopic",
      "kafka-cluster:DeleteTopic",
      "kafka-cluster:DescribeTopicDynamicConfiguration",
      "kafka-cluster:AlterTopicDynamicConfiguration",
    ]
    resources = ["arn:aws:kafka:*:*:topic/${var.name}/${aws_msk_cluster.this.cluster_uuid}/*"]
  }
}

resource "aws_iam_policy" "topic_admin" {
  name        = "${var.name}-topic-admin"
  description = "Lets terraform create and alter the topics of ${var.name} (attach to the apply role)"
  policy      = data.aws_iam_policy_document.topic_admin.json
  tags        = var.tags
}
