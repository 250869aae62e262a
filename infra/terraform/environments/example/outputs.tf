output "public_endpoint" {
  description = "DNS name of the load balancer: point the host of public_base_url at it (alias record)."
  value       = module.edge.dns_name
}

output "kafka_bootstrap_brokers" {
  description = "Bootstrap list (TLS + IAM, port 9098) for Kafka's CLI tools and kcat, from inside the VPC."
  value       = module.kafka.bootstrap_brokers_sasl_iam
}

output "kafka_topic_admin_policy_arn" {
  description = "Policy to attach to the identity that runs terraform (it creates the topics)."
  value       = module.kafka.topic_admin_policy_arn
}

output "topics" {
  description = "Created topics and their partition counts."
  value       = module.topics.topics
}

output "bucket_name" {
  description = "Upload bucket."
  value       = module.storage.bucket_name
}

output "cql_contact_points" {
  description = "ScyllaDB nodes (host:9042)."
  value       = module.scylla.contact_points
}

output "ecs_cluster_name" {
  description = "ECS cluster of the services."
  value       = aws_ecs_cluster.this.name
}

output "services" {
  description = "Per service: ECS service name, log group and task role."
  value = {
    for service in [
      module.ingest_api,
      module.realtime_bridge,
      module.projector,
      module.assembler,
      module.validator,
      module.transformer,
      module.janitor,
      ] : service.service_name => {
      log_group     = service.log_group
      task_role_arn = service.task_role_arn
    }
  }
}

output "admin_token_secret_arn" {
  description = "Secrets Manager secret holding the ingest-api's admin token."
  value       = aws_secretsmanager_secret.admin_token.arn
}
