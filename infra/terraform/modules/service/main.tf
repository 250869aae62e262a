# One Tributary binary as an ECS Fargate service: task definition, roles (iam.tf), optional
# ALB target group and listener rule, autoscaling on consumer lag or CPU (autoscaling.tf).

data "aws_region" "current" {}

locals {
  prefix = "${var.cluster_name}-${var.name}"

  # Decided from the grant lists only: they are literals, known at plan time (the bucket ARN
  # is not, on the first apply).
  has_s3             = length(var.s3_object_grants) > 0 || length(var.s3_bucket_actions) > 0
  static_credentials = local.has_s3 && var.s3_static_credentials

  # arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid> -> topic/<name>/<uuid>, group/...
  topic_arn_prefix = replace(var.kafka_cluster_arn, ":cluster/", ":topic/")
  group_arn_prefix = replace(var.kafka_cluster_arn, ":cluster/", ":group/")

  s3_credential_secrets = local.static_credentials ? {
    TRIBUTARY_S3__ACCESS_KEY_ID     = "${aws_secretsmanager_secret.s3[0].arn}:access_key_id::"
    TRIBUTARY_S3__SECRET_ACCESS_KEY = "${aws_secretsmanager_secret.s3[0].arn}:secret_access_key::"
  } : {}

  secrets = merge(var.secrets, local.s3_credential_secrets)

  # "<arn>:<json-key>::" -> "<arn>" (IAM needs the secret's ARN).
  secret_arns = distinct([
    for value in values(local.secrets) : regex("^(arn:[^:]+:secretsmanager:[^:]+:[^:]+:secret:[^:]+)", value)[0]
  ])

  # Without a static key the runtime signs with the task role (AWS's default credential chain).
  s3_credentials_environment = local.has_s3 && !var.s3_static_credentials ? {
    TRIBUTARY_S3__CREDENTIALS = "aws"
  } : {}

  environment = merge(var.environment, local.s3_credentials_environment, {
    TRIBUTARY_HTTP__LISTEN = "0.0.0.0:${var.port}"
  })

  container = {
    name       = var.name
    image      = var.image
    essential  = true
    entryPoint = ["/usr/local/bin/${var.name}"]
    command    = var.args

    portMappings = [{
      name          = "http"
      containerPort = var.port
      protocol      = "tcp"
    }]

    environment = [for key in sort(keys(local.environment)) : { name = key, value = local.environment[key] }]
    secrets     = [for key in sort(keys(local.secrets)) : { name = key, valueFrom = local.secrets[key] }]

    # Consumers finish the record in hand and store offsets on SIGTERM; 120 s is Fargate's maximum.
    stopTimeout = 120

    # The realtime bridge holds one socket per open event stream.
    ulimits = [{
      name      = "nofile"
      softLimit = 65536
      hardLimit = 65536
    }]

    logConfiguration = {
      logDriver = "awslogs"
      options = {
        awslogs-group         = aws_cloudwatch_log_group.this.name
        awslogs-region        = data.aws_region.current.name
        awslogs-stream-prefix = var.name
      }
    }
  }
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/tributary/${local.prefix}"
  retention_in_days = var.log_retention_days
  tags              = var.tags
}

resource "aws_ecs_task_definition" "this" {
  family                   = local.prefix
  requires_compatibilities = ["FARGATE"]
  network_mode             = "awsvpc"
  cpu                      = var.cpu
  memory                   = var.memory
  execution_role_arn       = aws_iam_role.execution.arn
  task_role_arn            = aws_iam_role.task.arn
  container_definitions    = jsonencode([local.container])

  runtime_platform {
    operating_system_family = "LINUX"
    cpu_architecture        = "X86_64"
  }

  dynamic "ephemeral_storage" {
    for_each = var.ephemeral_storage_gib == null ? [] : [var.ephemeral_storage_gib]

    content {
      size_in_gib = ephemeral_storage.value
    }
  }

  tags = var.tags
}

resource "aws_lb_target_group" "this" {
  count = var.load_balancer == null ? 0 : 1

  name                 = substr(local.prefix, 0, 32)
  target_type          = "ip"
  protocol             = "HTTP"
  port                 = var.port
  vpc_id               = var.vpc_id
  deregistration_delay = var.load_balancer.deregistration_delay

  health_check {
    path                = var.load_balancer.health_check_path
    matcher             = "200"
    interval            = 15
    healthy_threshold   = 2
    unhealthy_threshold = 3
  }

  tags = var.tags
}

resource "aws_lb_listener_rule" "this" {
  count = var.load_balancer == null ? 0 : 1

  listener_arn = var.load_balancer.listener_arn
  priority     = var.load_balancer.priority

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this[0].arn
  }

  condition {
    path_pattern {
      values = var.load_balancer.path_patterns
    }
  }

  tags = var.tags
}

resource "aws_ecs_service" "this" {
  name                               = var.name
  cluster                            = var.cluster_arn
  task_definition                    = aws_ecs_task_definition.this.arn
  desired_count                      = var.min_count
  launch_type                        = "FARGATE"
  platform_version                   = "LATEST"
  propagate_tags                     = "SERVICE"
  enable_ecs_managed_tags            = true
  deployment_minimum_healthy_percent = 100
  deployment_maximum_percent         = 200
  health_check_grace_period_seconds  = var.load_balancer == null ? null : 60

  network_configuration {
    subnets          = var.subnet_ids
    security_groups  = var.security_group_ids
    assign_public_ip = false
  }

  deployment_circuit_breaker {
    enable   = true
    rollback = true
  }

  dynamic "load_balancer" {
    for_each = var.load_balancer == null ? [] : [1]

    content {
      target_group_arn = aws_lb_target_group.this[0].arn
      container_name   = var.name
      container_port   = var.port
    }
  }

  # Autoscaling owns the count after creation.
  lifecycle {
    ignore_changes = [desired_count]
  }

  depends_on = [aws_lb_listener_rule.this]

  tags = var.tags
}
