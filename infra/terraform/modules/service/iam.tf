# Two roles per service: the execution role (ECS pulls the image, writes logs, reads the
# secrets named in var.secrets) and the task role (what the binary itself may do). The task
# role gets exactly the S3 grants of its caller (checked by the drift test) and the Kafka
# actions below, scoped to the service's own topics and groups. Nothing else: no s3: action
# is written in this module, and no Kafka action that creates, alters or deletes topics.

data "aws_iam_policy_document" "ecs_tasks_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["ecs-tasks.amazonaws.com"]
    }
  }
}

# --- Execution role -------------------------------------------------------------------------

resource "aws_iam_role" "execution" {
  name               = "${local.prefix}-exec"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "execution" {
  role       = aws_iam_role.execution.name
  policy_arn = "arn:aws:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy"
}

data "aws_iam_policy_document" "secrets" {
  count = length(local.secrets) > 0 ? 1 : 0

  statement {
    sid       = "ReadOwnSecrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = local.secret_arns
  }
}

resource "aws_iam_role_policy" "secrets" {
  count = length(local.secrets) > 0 ? 1 : 0

  name   = "secrets"
  role   = aws_iam_role.execution.id
  policy = data.aws_iam_policy_document.secrets[0].json
}

# --- Task role ------------------------------------------------------------------------------

resource "aws_iam_role" "task" {
  name               = "${local.prefix}-task"
  assume_role_policy = data.aws_iam_policy_document.ecs_tasks_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "s3" {
  count = local.has_s3 ? 1 : 0

  dynamic "statement" {
    for_each = var.s3_object_grants

    content {
      sid       = "Objects${statement.key}"
      actions   = statement.value.actions
      resources = ["${var.s3_bucket_arn}/${statement.value.keys}"]
    }
  }

  dynamic "statement" {
    for_each = length(var.s3_bucket_actions) > 0 ? [var.s3_bucket_actions] : []

    content {
      sid       = "Bucket"
      actions   = statement.value
      resources = [var.s3_bucket_arn]
    }
  }
}

resource "aws_iam_role_policy" "s3" {
  count = local.has_s3 ? 1 : 0

  name   = "s3"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.s3[0].json
}

data "aws_iam_policy_document" "kafka" {
  statement {
    sid       = "Cluster"
    actions   = ["kafka-cluster:Connect", "kafka-cluster:DescribeCluster"]
    resources = [var.kafka_cluster_arn]
  }

  dynamic "statement" {
    for_each = length(var.kafka_write_topics) > 0 ? [1] : []

    content {
      # Producers use enable.idempotence=true.
      sid       = "IdempotentProducer"
      actions   = ["kafka-cluster:WriteDataIdempotently"]
      resources = [var.kafka_cluster_arn]
    }
  }

  dynamic "statement" {
    for_each = length(var.kafka_describe_topics) > 0 ? [1] : []

    content {
      sid       = "Describe"
      actions   = ["kafka-cluster:DescribeTopic"]
      resources = [for topic in var.kafka_describe_topics : "${local.topic_arn_prefix}/${topic}"]
    }
  }

  dynamic "statement" {
    for_each = length(var.kafka_read_topics) > 0 ? [1] : []

    content {
      sid       = "Read"
      actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"]
      resources = [for topic in var.kafka_read_topics : "${local.topic_arn_prefix}/${topic}"]
    }
  }

  dynamic "statement" {
    for_each = length(var.kafka_write_topics) > 0 ? [1] : []

    content {
      sid       = "Write"
      actions   = ["kafka-cluster:DescribeTopic", "kafka-cluster:WriteData"]
      resources = [for topic in var.kafka_write_topics : "${local.topic_arn_prefix}/${topic}"]
    }
  }

  dynamic "statement" {
    for_each = length(var.kafka_consumer_groups) > 0 ? [1] : []

    content {
      sid       = "Groups"
      actions   = ["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"]
      resources = [for group in var.kafka_consumer_groups : "${local.group_arn_prefix}/${group}"]
    }
  }
}

resource "aws_iam_role_policy" "kafka" {
  name   = "kafka"
  role   = aws_iam_role.task.id
  policy = data.aws_iam_policy_document.kafka.json
}

# --- Static S3 credentials (optional, s3_static_credentials) -------------------------------
# By default the runtime signs with the task role (TRIBUTARY_S3__CREDENTIALS=aws). With
# s3_static_credentials this user, carrying the same policy as the task role, signs instead:
# its key goes to Secrets Manager and from there into the task. Presigned URLs signed with a
# user key stay valid for their whole TTL (up to 7 days), where a role session's end with the
# session (the runtime refreshes role keys an hour before they expire, so URLs of up to an
# hour are safe).

resource "aws_iam_user" "s3" {
  count = local.static_credentials ? 1 : 0

  name = "${local.prefix}-s3"
  path = "/tributary/"
  tags = var.tags
}

resource "aws_iam_user_policy" "s3" {
  count = local.static_credentials ? 1 : 0

  name   = "s3"
  user   = aws_iam_user.s3[0].name
  policy = data.aws_iam_policy_document.s3[0].json
}

resource "aws_iam_access_key" "s3" {
  count = local.static_credentials ? 1 : 0

  user = aws_iam_user.s3[0].name
}

resource "aws_secretsmanager_secret" "s3" {
  count = local.static_credentials ? 1 : 0

  name                    = "${local.prefix}/s3-credentials"
  description             = "S3 access key of ${var.name} (IAM user ${local.prefix}-s3)"
  recovery_window_in_days = 7
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "s3" {
  count = local.static_credentials ? 1 : 0

  secret_id = aws_secretsmanager_secret.s3[0].id
  secret_string = jsonencode({
    access_key_id     = aws_iam_access_key.s3[0].id
    secret_access_key = aws_iam_access_key.s3[0].secret
  })
}
