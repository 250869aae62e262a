output "topics" {
  description = "The created topics: name => partitions."
  value = {
    for topic in [
      kafka_topic.uploads_lifecycle,
      kafka_topic.tenants_admin,
      kafka_topic.uploads_progress,
      kafka_topic.media_jobs,
      kafka_topic.deadletter,
    ] : topic.name => topic.partitions
  }
}

output "lifecycle" {
  description = "Name of the upload lifecycle topic."
  value       = kafka_topic.uploads_lifecycle.name
}

output "tenants_admin" {
  description = "Name of the tenant administration topic."
  value       = kafka_topic.tenants_admin.name
}

output "progress" {
  description = "Name of the progress topic."
  value       = kafka_topic.uploads_progress.name
}

output "media_jobs" {
  description = "Name of the media jobs topic."
  value       = kafka_topic.media_jobs.name
}

output "deadletter" {
  description = "Name of the dead-letter topic."
  value       = kafka_topic.deadletter.name
}
