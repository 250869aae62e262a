variable "bucket_name" {
  description = "Name of the upload bucket (globally unique). Objects live under uploads/<tenant>/<upload>/original and .../variants/<name>."
  type        = string
}

variable "cors_origins" {
  description = "Browser origins allowed to PUT parts straight to the bucket (the pages embedding Uppy or the API's own page), e.g. [\"https://app.example.com\"]."
  type        = list(string)
}

variable "abort_incomplete_multipart_days" {
  description = "Days after which storage aborts a multipart upload nobody completed. Keep it above the API's session TTL (TRIBUTARY_API__SESSION_TTL_SECS); the janitor aborts expired sessions itself, this is the backstop."
  type        = number
  default     = 1
}

variable "variants_ia_after_days" {
  description = "Days after which variants move to STANDARD_IA (objects tagged tributary-class=variant; see the README for why a tag and not a prefix)."
  type        = number
  default     = 30
}

variable "rejected_expiry_days" {
  description = "Days after which objects tagged tributary-state=rejected expire (a backstop: the janitor deletes rejected uploads' objects on UploadRejected)."
  type        = number
  default     = 7
}

variable "force_destroy" {
  description = "Allow `terraform destroy` to delete a non-empty bucket. Keep false outside throwaway environments."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
