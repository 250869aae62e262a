# Self-managed ScyllaDB on EC2 from the official ScyllaDB AMI. The AMI formats the local NVMe
# disks, tunes the kernel and starts scylla-server on first boot from the JSON user data below
# (scylla_yaml is merged into /etc/scylla/scylla.yaml).
#
# Ec2Snitch makes the region the datacenter and each availability zone a rack, so with nodes
# spread over three zones NetworkTopologyStrategy places one replica of each row per zone.

data "aws_ami" "scylla" {
  count = var.ami_id == null ? 1 : 0

  owners      = [var.ami_owner]
  most_recent = true

  filter {
    name   = "name"
    values = [var.ami_name_pattern]
  }

  filter {
    name   = "architecture"
    values = ["x86_64"]
  }
}

data "aws_subnet" "nodes" {
  count = length(var.subnet_ids)
  id    = var.subnet_ids[count.index]
}

locals {
  # CQL and ScyllaDB's shard-aware CQL port.
  cql_ports = [9042, 19042]

  ami_id = var.ami_id != null ? var.ami_id : data.aws_ami.scylla[0].id

  nodes = [
    for n in range(var.node_count) : {
      subnet_id = var.subnet_ids[n % length(var.subnet_ids)]
      ip        = cidrhost(data.aws_subnet.nodes[n % length(var.subnet_ids)].cidr_block, var.ip_host_offset + floor(n / length(var.subnet_ids)))
    }
  ]

  # One seed per zone is enough; seeds only matter for joining.
  seeds = join(",", slice([for node in local.nodes : node.ip], 0, min(length(var.subnet_ids), var.node_count)))
}

resource "aws_security_group" "nodes" {
  name        = "${var.name}-scylla"
  description = "ScyllaDB nodes of ${var.name}"
  vpc_id      = var.vpc_id
  tags        = var.tags
}

# count, not for_each: the client groups are usually created in the same apply.
resource "aws_vpc_security_group_ingress_rule" "cql" {
  count = length(var.client_security_group_ids) * length(local.cql_ports)

  security_group_id            = aws_security_group.nodes.id
  referenced_security_group_id = var.client_security_group_ids[floor(count.index / length(local.cql_ports))]
  ip_protocol                  = "tcp"
  from_port                    = local.cql_ports[count.index % length(local.cql_ports)]
  to_port                      = local.cql_ports[count.index % length(local.cql_ports)]
  description                  = "CQL from the services"
}

resource "aws_vpc_security_group_ingress_rule" "internode" {
  for_each = toset(["7000", "7001", "9042", "19042", "10000"])

  security_group_id            = aws_security_group.nodes.id
  referenced_security_group_id = aws_security_group.nodes.id
  ip_protocol                  = "tcp"
  from_port                    = tonumber(each.value)
  to_port                      = tonumber(each.value)
  description                  = "Node to node (RPC, CQL, REST API for nodetool)"
}

resource "aws_vpc_security_group_ingress_rule" "monitoring" {
  for_each = { for pair in setproduct(var.monitoring_cidrs, [9100, 9180]) : "${pair[0]}-${pair[1]}" => pair }

  security_group_id = aws_security_group.nodes.id
  cidr_ipv4         = each.value[0]
  ip_protocol       = "tcp"
  from_port         = each.value[1]
  to_port           = each.value[1]
  description       = "Prometheus scraping"
}

resource "aws_vpc_security_group_egress_rule" "all" {
  security_group_id = aws_security_group.nodes.id
  ip_protocol       = "-1"
  cidr_ipv4         = "0.0.0.0/0"
  description       = "Package mirrors, AWS endpoints, other nodes"
}

resource "aws_instance" "node" {
  count = var.node_count

  ami                    = local.ami_id
  instance_type          = var.instance_type
  subnet_id              = local.nodes[count.index].subnet_id
  private_ip             = local.nodes[count.index].ip
  vpc_security_group_ids = [aws_security_group.nodes.id]
  key_name               = var.key_name

  user_data = jsonencode({
    scylla_yaml = {
      cluster_name    = var.name
      endpoint_snitch = "Ec2Snitch"
      seed_provider = [{
        class_name = "org.apache.cassandra.locator.SimpleSeedProvider"
        parameters = [{ seeds = local.seeds }]
      }]
    }
    start_scylla_on_first_boot = true
  })

  metadata_options {
    http_tokens = "required"
  }

  root_block_device {
    encrypted   = true
    volume_size = 50
  }

  # Replacing a node is an operation (nodetool / replace_node_first_boot), never a side effect
  # of an AMI or user-data change.
  lifecycle {
    ignore_changes = [ami, user_data]
  }

  tags = merge(var.tags, { Name = "${var.name}-scylla-${count.index}" })
}
