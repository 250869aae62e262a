output "bucket_name" {
  description = "Name of the upload bucket (TRIBUTARY_S3__BUCKET)."
  value       = aws_s3_bucket.uploads.id
}

output "bucket_arn" {
  description = "ARN of the upload bucket, for the services' IAM grants."
  value       = aws_s3_bucket.uploads.arn
}

output "bucket_regional_domain_name" {
  description = "Regional endpoint host of the bucket."
  value       = aws_s3_bucket.uploads.bucket_regional_domain_name
}
