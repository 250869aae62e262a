output "cluster_arn" {
  description = "ARN of the MSK cluster."
  value       = aws_msk_cluster.this.arn
}

output "cluster_name" {
  description = "Name of the MSK cluster (the `Cluster Name` dimension of its CloudWatch metrics)."
  value       = aws_msk_cluster.this.cluster_name
}

output "cluster_uuid" {
  description = "UUID of the cluster, part of its topic and group ARNs in IAM policies."
  value       = aws_msk_cluster.this.cluster_uuid
}

output "bootstrap_brokers_sasl_iam" {
  description = "Comma-separated bootstrap list for TLS + IAM clients (port 9098): TRIBUTARY_KAFKA__BROKERS and Kafka's CLI tools."
  value       = aws_msk_cluster.this.bootstrap_brokers_sasl_iam
}

output "security_group_id" {
  description = "Security group of the brokers."
  value       = aws_security_group.brokers.id
}

output "topic_admin_policy_arn" {
  description = "IAM policy to attach to the identity that applies the topics submodule."
  value       = aws_iam_policy.topic_admin.arn
}
