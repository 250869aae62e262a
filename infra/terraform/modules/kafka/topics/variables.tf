variable "replication_factor" {
  description = "Replication factor of every topic (3 for three brokers across three zones)."
  type        = number
  default     = 3
}

variable "min_insync_replicas" {
  description = "min.insync.replicas of every topic: producers use acks=all, so a write is acknowledged once this many replicas have it."
  type        = number
  default     = 2
}
