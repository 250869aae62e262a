# The upload bucket: private, encrypted, browsers may PUT parts to presigned URLs from the
# configured origins and read the ETag (Uppy fails with "Missing ETag" otherwise).

resource "aws_s3_bucket" "uploads" {
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}

resource "aws_s3_bucket_public_access_block" "uploads" {
  bucket                  = aws_s3_bucket.uploads.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "uploads" {
  bucket = aws_s3_bucket.uploads.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

# SSE-S3 (AES-256) by default for every object, including parts PUT by browsers. SSE-KMS
# would also work but every role that reads or writes objects would then need kms:Decrypt /
# kms:GenerateDataKey on the key.
resource "aws_s3_bucket_server_side_encryption_configuration" "uploads" {
  bucket = aws_s3_bucket.uploads.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_cors_configuration" "uploads" {
  bucket = aws_s3_bucket.uploads.id

  cors_rule {
    allowed_methods = ["PUT", "GET", "HEAD"]
    allowed_origins = var.cors_origins
    allowed_headers = ["*"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3000
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "uploads" {
  bucket = aws_s3_bucket.uploads.id

  # Parts of sessions nobody completed or aborted (a crashed client, a lost abort).
  rule {
    id     = "abort-incomplete-multipart-uploads"
    status = "Enabled"

    filter {}

    abort_incomplete_multipart_upload {
      days_after_initiation = var.abort_incomplete_multipart_days
    }
  }

  # Variants are written next to their original (uploads/<tenant>/<upload>/variants/<name>),
  # so no key prefix selects them all; the rule selects them by tag instead.
  rule {
    id     = "variants-to-infrequent-access"
    status = "Enabled"

    filter {
      tag {
        key   = "tributary-class"
        value = "variant"
      }
    }

    transition {
      days          = var.variants_ia_after_days
      storage_class = "STANDARD_IA"
    }
  }

  # Rejected objects: the janitor deletes them when it consumes UploadRejected; an object
  # marked rejected any other way (an operator's quarantine, a lazy deletion that tags
  # instead of deleting) carries tributary-state=rejected and expires here.
  rule {
    id     = "expire-rejected-objects"
    status = "Enabled"

    filter {
      tag {
        key   = "tributary-state"
        value = "rejected"
      }
    }

    expiration {
      days = var.rejected_expiry_days
    }
  }
}

# TLS only, for every principal.
data "aws_iam_policy_document" "tls_only" {
  statement {
    sid     = "DenyInsecureTransport"
    effect  = "Deny"
    actions = ["s3:*"]
    resources = [
      aws_s3_bucket.uploads.arn,
      "${aws_s3_bucket.uploads.arn}/*",
    ]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_s3_bucket_policy" "uploads" {
  bucket = aws_s3_bucket.uploads.id
  policy = data.aws_iam_policy_document.tls_only.json

  depends_on = [aws_s3_bucket_public_access_block.uploads]
}
