# Consumers scale on their consumer group's lag: MSK publishes SumOffsetLag per consumer group
# and topic (namespace AWS/Kafka); divided by the running task count (Container Insights,
# enabled on the cluster) it is "records behind per task", which target tracking holds at
# lag_scaling.target_lag_per_task: more lag adds tasks, a drained backlog removes them.
# HTTP services (lag_scaling = null) track average CPU instead.

locals {
  autoscaled = var.max_count > var.min_count
  lag_ids    = var.lag_scaling == null ? [] : [for index, _ in var.lag_scaling.topics : "lag${index}"]
}

resource "aws_appautoscaling_target" "this" {
  count = local.autoscaled ? 1 : 0

  service_namespace  = "ecs"
  scalable_dimension = "ecs:service:DesiredCount"
  resource_id        = "service/${var.cluster_name}/${aws_ecs_service.this.name}"
  min_capacity       = var.min_count
  max_capacity       = var.max_count
}

resource "aws_appautoscaling_policy" "lag" {
  count = local.autoscaled && var.lag_scaling != null ? 1 : 0

  name               = "${local.prefix}-consumer-lag"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.lag_scaling.target_lag_per_task
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    customized_metric_specification {
      dynamic "metrics" {
        for_each = var.lag_scaling.topics

        content {
          id          = "lag${metrics.key}"
          label       = "SumOffsetLag ${metrics.value}"
          return_data = false

          metric_stat {
            stat = "Maximum"

            metric {
              namespace   = "AWS/Kafka"
              metric_name = "SumOffsetLag"

              dimensions {
                name  = "Cluster Name"
                value = var.kafka_cluster_name
              }

              dimensions {
                name  = "Consumer Group"
                value = var.lag_scaling.consumer_group
              }

              dimensions {
                name  = "Topic"
                value = metrics.value
              }
            }
          }
        }
      }

      metrics {
        id          = "tasks"
        label       = "RunningTaskCount"
        return_data = false

        metric_stat {
          stat = "Average"

          metric {
            namespace   = "ECS/ContainerInsights"
            metric_name = "RunningTaskCount"

            dimensions {
              name  = "ClusterName"
              value = var.cluster_name
            }

            dimensions {
              name  = "ServiceName"
              value = aws_ecs_service.this.name
            }
          }
        }
      }

      metrics {
        id          = "lag_per_task"
        label       = "consumer lag per task"
        expression  = "(${join(" + ", [for id in local.lag_ids : "FILL(${id}, 0)"])}) / tasks"
        return_data = true
      }
    }
  }
}

resource "aws_appautoscaling_policy" "cpu" {
  count = local.autoscaled && var.lag_scaling == null ? 1 : 0

  name               = "${local.prefix}-cpu"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.this[0].service_namespace
  scalable_dimension = aws_appautoscaling_target.this[0].scalable_dimension
  resource_id        = aws_appautoscaling_target.this[0].resource_id

  target_tracking_scaling_policy_configuration {
    target_value       = var.cpu_target_percent
    scale_out_cooldown = 60
    scale_in_cooldown  = 300

    predefined_metric_specification {
      predefined_metric_type = "ECSServiceAverageCPUUtilization"
    }
  }
}
