# One service per binary of the workspace. The drift test (infra/drift) checks that every
# binary has exactly one of these blocks (by `name`) and that each one's s3_object_grants and
# s3_bucket_actions stay within its row of the IAM rule table: keep `name` and both grant
# attributes literal. Object keys are uploads/<tenant>/<upload>/original (the upload) and
# uploads/<tenant>/<upload>/variants/<name> (the transformer's output).

# The HTTP API. Presigns part URLs and manages the multipart session; never reads an upload.
module "ingest_api" {
  source = "../../modules/service"
  name   = "ingest-api"
  port   = 8080
  cpu    = 1024
  memory = 2048

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = merge(local.common_environment, local.browser_environment)
  secrets = {
    TRIBUTARY_API__ADMIN_TOKEN  = aws_secretsmanager_secret.admin_token.arn
    TRIBUTARY_API__TOKEN_SECRET = aws_secretsmanager_secret.token_secret.arn
  }

  s3_bucket_arn = local.service_defaults.bucket_arn
  s3_object_grants = [
    # CreateMultipartUpload and the presigned UploadPart URLs are s3:PutObject in IAM terms.
    { keys = "uploads/*/original", actions = ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"] },
    # Only to presign GET URLs of variants for GET /v1/uploads/{id}; originals stay unreadable.
    { keys = "uploads/*/variants/*", actions = ["s3:GetObject"] },
  ]
  # HeadBucket (start-up and /readyz) is authorized by s3:ListBucket.
  s3_bucket_actions = ["s3:ListBucket"]

  kafka_read_topics     = [local.topics.lifecycle]
  kafka_write_topics    = [local.topics.lifecycle, local.topics.tenants_admin, local.topics.deadletter]
  kafka_consumer_groups = ["tributary-ingest-api-quota"]

  min_count = 2
  max_count = 10

  load_balancer = {
    listener_arn         = module.edge.https_listener_arn
    priority             = 200
    path_patterns        = ["/*"]
    health_check_path    = "/healthz"
    deregistration_delay = 30
  }
}

# Server-Sent Events. Reads lifecycle and progress by partition assignment (no consumer group
# commits); each task serves any tenant, so it scales on CPU like the API.
module "realtime_bridge" {
  source = "../../modules/service"
  name   = "realtime-bridge"
  port   = 8081
  cpu    = 1024
  memory = 2048

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = merge(local.common_environment, local.browser_environment)
  secrets = {
    TRIBUTARY_API__TOKEN_SECRET = aws_secretsmanager_secret.token_secret.arn
  }

  kafka_read_topics     = [local.topics.lifecycle, local.topics.progress]
  kafka_consumer_groups = ["realtime-bridge-*"]

  min_count = 2
  max_count = 10

  load_balancer = {
    listener_arn         = module.edge.https_listener_arn
    priority             = 100
    path_patterns        = ["/v1/events", "/v1/uploads/*/events"]
    health_check_path    = "/healthz"
    deregistration_delay = 30
  }
}

# Folds lifecycle, tenant-admin and progress into the read models; no S3.
module "projector" {
  source = "../../modules/service"
  name   = "projector"
  port   = 8082

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = local.common_environment

  kafka_read_topics  = [local.topics.lifecycle, local.topics.tenants_admin, local.topics.progress]
  kafka_write_topics = [local.topics.deadletter]
  # The live group and the rebuild groups of new read-model versions.
  kafka_consumer_groups = ["tributary-projector*"]

  min_count = 1
  max_count = 3
  lag_scaling = {
    consumer_group      = "tributary-projector"
    topics              = [local.topics.lifecycle, local.topics.tenants_admin, local.topics.progress]
    target_lag_per_task = 5000
  }
}

# Completes the multipart upload from the confirmed parts, checks size and sha256.
module "assembler" {
  source = "../../modules/service"
  name   = "assembler"
  port   = 8083

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = local.common_environment

  s3_bucket_arn = local.service_defaults.bucket_arn
  s3_object_grants = [
    # CompleteMultipartUpload is s3:PutObject; HeadObject and the sha256 read are s3:GetObject.
    { keys = "uploads/*/original", actions = ["s3:PutObject", "s3:GetObject"] },
  ]
  s3_bucket_actions = ["s3:ListBucket"]

  kafka_read_topics     = [local.topics.lifecycle]
  kafka_write_topics    = [local.topics.lifecycle, local.topics.deadletter]
  kafka_describe_topics = [local.topics.media_jobs]
  kafka_consumer_groups = ["tributary-assembler"]

  min_count = 1
  max_count = 12
  lag_scaling = {
    consumer_group      = "tributary-assembler"
    topics              = [local.topics.lifecycle]
    target_lag_per_task = 200
  }
}

# Sniffs the original's bytes (and streams it through clamd when configured).
module "validator" {
  source = "../../modules/service"
  name   = "validator"
  port   = 8084
  cpu    = 1024
  memory = 2048

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = local.common_environment

  s3_bucket_arn = local.service_defaults.bucket_arn
  s3_object_grants = [
    { keys = "uploads/*/original", actions = ["s3:GetObject"] },
  ]
  s3_bucket_actions = ["s3:ListBucket"]

  kafka_read_topics     = [local.topics.lifecycle]
  kafka_write_topics    = [local.topics.lifecycle, local.topics.media_jobs, local.topics.deadletter]
  kafka_consumer_groups = ["tributary-validator"]

  min_count = 1
  max_count = 12
  lag_scaling = {
    consumer_group      = "tributary-validator"
    topics              = [local.topics.lifecycle]
    target_lag_per_task = 200
  }
}

# Image variants and video HLS: reads originals, writes variants, nothing else.
module "transformer" {
  source                = "../../modules/service"
  name                  = "transformer"
  port                  = 8086
  cpu                   = 4096
  memory                = 16384
  ephemeral_storage_gib = 100

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = local.common_environment

  s3_bucket_arn = local.service_defaults.bucket_arn
  s3_object_grants = [
    { keys = "uploads/*/original", actions = ["s3:GetObject"] },
    { keys = "uploads/*/variants/*", actions = ["s3:PutObject"] },
  ]
  s3_bucket_actions = ["s3:ListBucket"]

  kafka_read_topics     = [local.topics.media_jobs]
  kafka_write_topics    = [local.topics.lifecycle, local.topics.progress, local.topics.deadletter]
  kafka_consumer_groups = ["tributary-transformer"]

  min_count = 1
  max_count = 12
  lag_scaling = {
    consumer_group = "tributary-transformer"
    topics         = [local.topics.media_jobs]
    # Media jobs take seconds to minutes each: a small backlog per task is already a queue.
    target_lag_per_task = 4
  }
}

# Expires abandoned sessions, deletes rejected and deleted uploads' objects, fails stuck uploads.
module "janitor" {
  source = "../../modules/service"
  name   = "janitor"
  port   = 8087

  image              = local.service_defaults.image
  cluster_arn        = local.service_defaults.cluster_arn
  cluster_name       = local.service_defaults.cluster_name
  vpc_id             = local.service_defaults.vpc_id
  subnet_ids         = local.service_defaults.subnet_ids
  security_group_ids = local.service_defaults.security_group_ids
  kafka_cluster_arn  = local.service_defaults.kafka_cluster_arn
  kafka_cluster_name = local.service_defaults.kafka_cluster_name

  environment = local.common_environment

  s3_bucket_arn = local.service_defaults.bucket_arn
  s3_object_grants = [
    { keys = "uploads/*", actions = ["s3:DeleteObject", "s3:AbortMultipartUpload"] },
  ]
  # Listing an upload's prefix before deleting it.
  s3_bucket_actions = ["s3:ListBucket"]

  kafka_read_topics     = [local.topics.lifecycle]
  kafka_write_topics    = [local.topics.lifecycle, local.topics.deadletter]
  kafka_describe_topics = [local.topics.media_jobs]
  kafka_consumer_groups = ["tributary-janitor"]

  min_count = 1
  max_count = 3
  lag_scaling = {
    consumer_group      = "tributary-janitor"
    topics              = [local.topics.lifecycle]
    target_lag_per_task = 500
  }
}
