variable "name" {
  description = "Cluster name (scylla.yaml cluster_name) and prefix of the resources."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the nodes."
  type        = string
}

variable "subnet_ids" {
  description = "Private subnets, one per availability zone; nodes are spread across them round-robin (each zone is a rack with Ec2Snitch)."
  type        = list(string)
}

variable "node_count" {
  description = "Number of nodes. Use a multiple of the number of zones, at least the replication factor."
  type        = number
  default     = 3
}

variable "ip_host_offset" {
  description = "Nodes get fixed private IPs (needed for the seed list before they boot): host number ip_host_offset + n of their subnet's CIDR. These addresses must be free."
  type        = number
  default     = 10
}

variable "instance_type" {
  description = "Instance type; ScyllaDB recommends storage-optimized types with local NVMe (i4i, i3en)."
  type        = string
  default     = "i4i.xlarge"
}

variable "ami_id" {
  description = "ScyllaDB AMI to run, pinned (recommended: take the id for your region and version from ScyllaDB's 'AWS Images' reference page). null looks the newest one up by ami_owner and ami_name_pattern."
  type        = string
  default     = null
}

variable "ami_owner" {
  description = "AWS account that publishes the official ScyllaDB AMIs, used when ami_id is null. Verify it against ScyllaDB's documentation before the first apply."
  type        = string
  default     = "797456418907"
}

variable "ami_name_pattern" {
  description = "Name filter of the AMI lookup when ami_id is null, e.g. \"ScyllaDB 2025.1*\" to stay on one release."
  type        = string
  default     = "ScyllaDB 2025.*"
}

variable "client_security_group_ids" {
  description = "Security groups allowed to reach CQL (9042) and the shard-aware CQL port (19042)."
  type        = list(string)
}

variable "monitoring_cidrs" {
  description = "CIDRs allowed to scrape ScyllaDB's Prometheus endpoint (9180) and node exporter (9100)."
  type        = list(string)
  default     = []
}

variable "key_name" {
  description = "EC2 key pair for SSH; null for none (use SSM Session Manager)."
  type        = string
  default     = null
}

variable "replication_factor" {
  description = "Replication factor of the keyspace, in every datacenter. The services create the keyspace themselves with this value (TRIBUTARY_CQL__REPLICATION_FACTOR): see the README."
  type        = number
  default     = 3
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
