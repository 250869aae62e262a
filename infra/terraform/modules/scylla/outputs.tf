output "contact_points" {
  description = "host:port of every node, for TRIBUTARY_CQL__CONTACT_POINTS."
  value       = [for node in local.nodes : "${node.ip}:9042"]
}

output "replication_factor" {
  description = "Keyspace replication factor to give the services (TRIBUTARY_CQL__REPLICATION_FACTOR)."
  value       = var.replication_factor
}

output "security_group_id" {
  description = "Security group of the nodes."
  value       = aws_security_group.nodes.id
}

output "instance_ids" {
  description = "EC2 instance ids of the nodes."
  value       = aws_instance.node[*].id
}
