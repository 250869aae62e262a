# An example production environment: MSK, the upload bucket, ScyllaDB, one ECS Fargate
# service per binary (services.tf) behind one ALB. Apply in two steps the first time (the
# Kafka provider needs the brokers to exist): see ../../README.md.

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ Project = "tributary", Environment = var.name }, var.tags)
  }
}

# Topics are created over the Kafka protocol with the caller's AWS identity (MSK IAM), from a
# host that can reach the brokers (inside the VPC: a CI runner, a bastion, SSM port forwarding).
provider "kafka" {
  bootstrap_servers = split(",", module.kafka.bootstrap_brokers_sasl_iam)
  tls_enabled       = true
  sasl_mechanism    = "aws-iam"
  sasl_aws_region   = var.region
}

# The tasks' network identity, allowed into the brokers and the database.
resource "aws_security_group" "services" {
  name        = "${var.name}-services"
  description = "Tributary service tasks"
  vpc_id      = var.vpc_id
}

resource "aws_vpc_security_group_ingress_rule" "services_from_alb" {
  security_group_id            = aws_security_group.services.id
  referenced_security_group_id = module.edge.security_group_id
  ip_protocol                  = "tcp"
  from_port                    = 8080
  to_port                      = 8087
  description                  = "ingest-api and realtime-bridge from the load balancer"
}

resource "aws_vpc_security_group_egress_rule" "services_all" {
  security_group_id = aws_security_group.services.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  description       = "Kafka, CQL, S3, ECR, Secrets Manager, CloudWatch"
}

module "kafka" {
  source = "../../modules/kafka"

  name                      = var.name
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  client_security_group_ids = [aws_security_group.services.id]
  instance_type             = var.kafka_instance_type
}

module "topics" {
  source = "../../modules/kafka/topics"

  replication_factor  = 3
  min_insync_replicas = 2
}

module "storage" {
  source = "../../modules/storage"

  bucket_name  = var.bucket_name
  cors_origins = var.cors_origins
}

module "scylla" {
  source = "../../modules/scylla"

  name                      = var.name
  vpc_id                    = var.vpc_id
  subnet_ids                = var.private_subnet_ids
  instance_type             = var.scylla_instance_type
  ami_id                    = var.scylla_ami_id
  client_security_group_ids = [aws_security_group.services.id]
  replication_factor        = 3
}

module "edge" {
  source = "../../modules/edge"

  name            = var.name
  vpc_id          = var.vpc_id
  subnet_ids      = var.public_subnet_ids
  certificate_arn = var.certificate_arn
}

resource "aws_ecs_cluster" "this" {
  name = var.name

  # RunningTaskCount, which the consumers' lag-per-task scaling divides by.
  setting {
    name  = "containerInsights"
    value = "enabled"
  }
}

# --- Secrets ---------------------------------------------------------------------------------
# Generated once; rotate by tainting the random_password and redeploying (tokens signed with
# the old secret stop verifying, which is what a rotation means for short-lived browser tokens).

resource "random_password" "admin_token" {
  length  = 48
  special = false
}

resource "random_password" "token_secret" {
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "admin_token" {
  name        = "${var.name}/api-admin-token"
  description = "Bearer token of the ingest-api's admin routes (TRIBUTARY_API__ADMIN_TOKEN)"
}

resource "aws_secretsmanager_secret_version" "admin_token" {
  secret_id     = aws_secretsmanager_secret.admin_token.id
  secret_string = random_password.admin_token.result
}

resource "aws_secretsmanager_secret" "token_secret" {
  name        = "${var.name}/api-token-secret"
  description = "Key that signs and verifies browser tokens (TRIBUTARY_API__TOKEN_SECRET): ingest-api and realtime-bridge"
}

resource "aws_secretsmanager_secret_version" "token_secret" {
  secret_id     = aws_secretsmanager_secret.token_secret.id
  secret_string = random_password.token_secret.result
}

# --- Configuration shared by every service ------------------------------------------------------

locals {
  common_environment = {
    TRIBUTARY_KAFKA__BROKERS = module.kafka.bootstrap_brokers_sasl_iam
    # TLS + IAM, as the cluster requires: the runtime signs MSK IAM tokens with the task role.
    TRIBUTARY_KAFKA__SECURITY__PROTOCOL       = "sasl_ssl"
    TRIBUTARY_KAFKA__SECURITY__SASL_MECHANISM = "aws-msk-iam"
    TRIBUTARY_KAFKA__SECURITY__AWS_REGION     = var.region
    TRIBUTARY_CQL__CONTACT_POINTS             = jsonencode(module.scylla.contact_points)
    TRIBUTARY_CQL__KEYSPACE                   = var.keyspace
    TRIBUTARY_CQL__REPLICATION_FACTOR         = tostring(module.scylla.replication_factor)
    TRIBUTARY_S3__ENDPOINT                    = "https://s3.${var.region}.amazonaws.com"
    TRIBUTARY_S3__REGION                      = var.region
    TRIBUTARY_S3__BUCKET                      = module.storage.bucket_name
    TRIBUTARY_S3__FORCE_PATH_STYLE            = "false"
    TRIBUTARY_TELEMETRY__LOG_FORMAT           = "json"
  }

  # The ingest-api and the bridge share the browser-facing settings.
  browser_environment = {
    TRIBUTARY_API__CORS_ORIGINS    = jsonencode(var.cors_origins)
    TRIBUTARY_API__EVENTS_BASE_URL = var.public_base_url
    # The bucket's CORS belongs to terraform (modules/storage), not to the API's role.
    TRIBUTARY_API__MANAGE_BUCKET_CORS = "false"
  }

  service_defaults = {
    image              = var.image
    cluster_arn        = aws_ecs_cluster.this.arn
    cluster_name       = aws_ecs_cluster.this.name
    vpc_id             = var.vpc_id
    subnet_ids         = var.private_subnet_ids
    security_group_ids = [aws_security_group.services.id]
    kafka_cluster_arn  = module.kafka.cluster_arn
    kafka_cluster_name = module.kafka.cluster_name
    bucket_arn         = module.storage.bucket_arn
  }

  topics = {
    lifecycle     = module.topics.lifecycle
    tenants_admin = module.topics.tenants_admin
    progress      = module.topics.progress
    media_jobs    = module.topics.media_jobs
    deadletter    = module.topics.deadletter
  }
}
