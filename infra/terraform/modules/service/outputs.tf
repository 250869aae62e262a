output "service_name" {
  description = "ECS service name."
  value       = aws_ecs_service.this.name
}

output "task_role_arn" {
  description = "ARN of the task role (the binary's own permissions)."
  value       = aws_iam_role.task.arn
}

output "execution_role_arn" {
  description = "ARN of the execution role (image pull, logs, secrets)."
  value       = aws_iam_role.execution.arn
}

output "log_group" {
  description = "CloudWatch log group of the service."
  value       = aws_cloudwatch_log_group.this.name
}

output "target_group_arn" {
  description = "ALB target group, when the service is behind the load balancer."
  value       = var.load_balancer == null ? null : aws_lb_target_group.this[0].arn
}

output "s3_credentials_secret_arn" {
  description = "Secrets Manager secret with the service's static S3 key, when s3_static_credentials is on."
  value       = local.static_credentials ? aws_secretsmanager_secret.s3[0].arn : null
}
