output "dns_name" {
  description = "DNS name of the load balancer (point the API's host name at it)."
  value       = aws_lb.this.dns_name
}

output "zone_id" {
  description = "Route 53 zone id of the load balancer, for an alias record."
  value       = aws_lb.this.zone_id
}

output "https_listener_arn" {
  description = "HTTPS listener the services attach their rules to."
  value       = aws_lb_listener.https.arn
}

output "security_group_id" {
  description = "Security group of the load balancer (allow it into the services)."
  value       = aws_security_group.alb.id
}
