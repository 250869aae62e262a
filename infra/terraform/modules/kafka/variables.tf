variable "name" {
  description = "Cluster name; also the prefix of the security group, configuration and log group."
  type        = string
}

variable "kafka_version" {
  description = "MSK Kafka version. Must be a KRaft version (suffix .kraft): the metadata mode cannot be changed after creation."
  type        = string
  default     = "3.9.x.kraft"

  validation {
    condition     = endswith(var.kafka_version, ".kraft")
    error_message = "Use a KRaft version (e.g. 3.9.x.kraft); ZooKeeper mode is not supported by this module."
  }
}

variable "vpc_id" {
  description = "VPC of the brokers."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets for the brokers, one per availability zone (2 or 3)."
  type        = list(string)
}

variable "client_security_group_ids" {
  description = "Security groups allowed to reach the brokers on the IAM/TLS port 9098 (the services, the terraform runner)."
  type        = list(string)
}

variable "broker_count" {
  description = "Number of brokers; a multiple of the number of subnets."
  type        = number
  default     = 3
}

variable "instance_type" {
  description = "Broker instance type."
  type        = string
  default     = "kafka.m7g.large"
}

variable "volume_size_gib" {
  description = "EBS storage per broker, GiB. The lifecycle and tenant-admin topics are kept forever: size for the whole history."
  type        = number
  default     = 1000
}

variable "default_replication_factor" {
  description = "Replication factor of topics created without an explicit one (all of Tributary's topics set theirs)."
  type        = number
  default     = 3
}

variable "min_insync_replicas" {
  description = "Cluster default min.insync.replicas; with acks=all a write survives the loss of replication_factor - min_insync_replicas brokers."
  type        = number
  default     = 2
}

variable "enhanced_monitoring" {
  description = "MSK CloudWatch monitoring level. Consumer-lag metrics (SumOffsetLag, per consumer group and topic), which the consumers' autoscaling uses, are emitted at every level."
  type        = string
  default     = "PER_TOPIC_PER_BROKER"
}

variable "encryption_at_rest_kms_key_arn" {
  description = "KMS key for data at rest; null uses the AWS-managed MSK key."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Retention of the broker logs in CloudWatch Logs, days."
  type        = number
  default     = 30
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
