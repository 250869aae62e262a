variable "name" {
  description = "The binary this service runs (ingest-api, projector, ...). Must be a literal in the caller: the drift test matches it against the workspace's binaries."
  type        = string
}

variable "image" {
  description = "Container image holding every Tributary binary in /usr/local/bin (and ffmpeg, ffprobe, heif-convert for the transformer)."
  type        = string
}

variable "args" {
  description = "Arguments after the binary (none for the services)."
  type        = list(string)
  default     = []
}

variable "cpu" {
  description = "Fargate task CPU units (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "memory" {
  description = "Fargate task memory, MiB (must be valid for the chosen cpu)."
  type        = number
  default     = 1024
}

variable "ephemeral_storage_gib" {
  description = "Task scratch disk, GiB (21-200); null keeps Fargate's default 20 GiB. The transformer downloads originals and writes HLS renditions here."
  type        = number
  default     = null
}

variable "port" {
  description = "Port the binary listens on (TRIBUTARY_HTTP__LISTEN): its API, or /healthz and /metrics for consumers."
  type        = number
}

variable "cluster_arn" {
  description = "ECS cluster ARN."
  type        = string
}

variable "cluster_name" {
  description = "ECS cluster name (autoscaling resource id and Container Insights dimension)."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the tasks (for the target group)."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets of the tasks."
  type        = list(string)
}

variable "security_group_ids" {
  description = "Security groups of the tasks (the shared services group, allowed into MSK and ScyllaDB)."
  type        = list(string)
}

variable "environment" {
  description = "Plain environment variables (TRIBUTARY_* configuration). TRIBUTARY_HTTP__LISTEN is set from port."
  type        = map(string)
  default     = {}
}

variable "secrets" {
  description = "Environment variables read from Secrets Manager at task start: name => secret ARN, optionally with a JSON key (\"<arn>:<key>::\"). The execution role may read exactly these secrets."
  type        = map(string)
  default     = {}
}

variable "s3_bucket_arn" {
  description = "ARN of the upload bucket; required when s3_object_grants or s3_bucket_actions is not empty."
  type        = string
  default     = null
}

variable "s3_object_grants" {
  description = "Object-level S3 permissions: each item grants `actions` on the keys matching `keys` (relative to the bucket, e.g. \"uploads/*/original\"). Checked by the drift test against its per-service allow-list: write it as a literal."
  type = list(object({
    keys    = string
    actions = list(string)
  }))
  default = []

  validation {
    condition     = alltrue([for grant in var.s3_object_grants : alltrue([for action in grant.actions : startswith(action, "s3:") && !strcontains(action, "*")])])
    error_message = "Object grants list explicit s3: actions, no wildcards."
  }
}

variable "s3_bucket_actions" {
  description = "Bucket-level S3 permissions (s3:ListBucket for HeadBucket and listings, s3:ListBucketMultipartUploads). Checked by the drift test: write it as a literal."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for action in var.s3_bucket_actions : startswith(action, "s3:") && !strcontains(action, "*")])
    error_message = "Bucket actions are explicit s3: actions, no wildcards."
  }
}

variable "s3_static_credentials" {
  description = "Sign S3 requests and presigned URLs with an IAM user's access key (created here, passed as TRIBUTARY_S3__ACCESS_KEY_ID / _SECRET_ACCESS_KEY from Secrets Manager) instead of the task role. Only needed for presigned URLs that must outlive a role session (more than about an hour); see the README."
  type        = bool
  default     = false
}

variable "kafka_cluster_arn" {
  description = "ARN of the MSK cluster (topic and group ARNs are derived from it)."
  type        = string
}

variable "kafka_cluster_name" {
  description = "Name of the MSK cluster (the `Cluster Name` dimension of the lag metrics)."
  type        = string
}

variable "kafka_read_topics" {
  description = "Topics the service consumes."
  type        = list(string)
  default     = []
}

variable "kafka_write_topics" {
  description = "Topics the service produces to."
  type        = list(string)
  default     = []
}

variable "kafka_describe_topics" {
  description = "Topics the service only looks up (its start-up check of the cluster), without reading or writing them."
  type        = list(string)
  default     = []
}

variable "kafka_consumer_groups" {
  description = "Consumer groups the service joins and commits offsets for; a trailing * grants a prefix (e.g. the projector's rebuild groups)."
  type        = list(string)
  default     = []
}

variable "min_count" {
  description = "Minimum (and initial) number of tasks."
  type        = number
  default     = 1
}

variable "max_count" {
  description = "Maximum number of tasks. For a consumer, more tasks than the partitions of its topic would sit idle."
  type        = number
  default     = 1
}

variable "lag_scaling" {
  description = "Scale on consumer-group lag: the MSK metric SumOffsetLag of consumer_group summed over topics, divided by the running tasks, tracked at target_lag_per_task. null scales on CPU instead (when max_count > min_count)."
  type = object({
    consumer_group      = string
    topics              = list(string)
    target_lag_per_task = number
  })
  default = null
}

variable "cpu_target_percent" {
  description = "Average CPU the service is scaled to when lag_scaling is null."
  type        = number
  default     = 60
}

variable "load_balancer" {
  description = "Attach to the ALB: listener, rule priority (lower wins), path patterns (at most 5) and the health check path. null for services without public HTTP."
  type = object({
    listener_arn         = string
    priority             = number
    path_patterns        = list(string)
    health_check_path    = string
    deregistration_delay = number
  })
  default = null
}

variable "log_retention_days" {
  description = "Retention of the service's CloudWatch log group, days."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
