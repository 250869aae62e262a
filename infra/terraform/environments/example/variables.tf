variable "region" {
  description = "AWS region of the whole deployment."
  type        = string
}

variable "name" {
  description = "Name of this deployment: prefix of every resource, ECS cluster and MSK cluster name."
  type        = string
  default     = "tributary"
}

variable "vpc_id" {
  description = "Existing VPC to deploy into."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets in three availability zones (brokers, ScyllaDB nodes, tasks); they need a NAT gateway or VPC endpoints for ECR, Logs, Secrets Manager and S3."
  type        = list(string)
}

variable "public_subnet_ids" {
  description = "Public subnets for the load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate of the public host name (e.g. uploads.example.com)."
  type        = string
}

variable "public_base_url" {
  description = "Public base URL of the API and the event streams (same host, behind the ALB), e.g. https://uploads.example.com; the ingest-api builds events_url from it."
  type        = string
}

variable "image" {
  description = "Container image of this release (every binary in /usr/local/bin), e.g. <account>.dkr.ecr.<region>.amazonaws.com/tributary:1.4.0."
  type        = string
}

variable "bucket_name" {
  description = "Name of the upload bucket (globally unique)."
  type        = string
}

variable "cors_origins" {
  description = "Origins of the pages that upload from browsers: allowed by the bucket's CORS and by the API and bridge (TRIBUTARY_API__CORS_ORIGINS)."
  type        = list(string)
}

variable "keyspace" {
  description = "CQL keyspace of the read models (created by the services with the replication factor of module.scylla)."
  type        = string
  default     = "tributary"
}

variable "scylla_ami_id" {
  description = "Pinned ScyllaDB AMI for the region (see modules/scylla); null looks up the newest official one."
  type        = string
  default     = null
}

variable "scylla_instance_type" {
  description = "Instance type of the ScyllaDB nodes."
  type        = string
  default     = "i4i.xlarge"
}

variable "kafka_instance_type" {
  description = "Instance type of the MSK brokers."
  type        = string
  default     = "kafka.m7g.large"
}

variable "tags" {
  description = "Tags added to every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}
