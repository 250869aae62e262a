variable "name" {
  description = "Prefix of the load balancer and its security group."
  type        = string
}

variable "vpc_id" {
  description = "VPC of the load balancer."
  type        = string
}

variable "subnet_ids" {
  description = "Public subnets (two or more zones) for an internet-facing load balancer."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ACM certificate for the HTTPS listener (the API's public host name)."
  type        = string
}

variable "ingress_cidrs" {
  description = "Client CIDRs allowed to reach the listeners."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "idle_timeout_seconds" {
  description = "Idle timeout of connections. Server-Sent Events streams stay open for as long as a page watches an upload; the bridge sends heartbeats well within this, and an hour keeps even a quiet stream from being cut."
  type        = number
  default     = 3600
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
