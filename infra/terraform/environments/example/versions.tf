terraform {
  required_version = ">= 1.6"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.80"
    }
    kafka = {
      source  = "Mongey/kafka"
      version = ">= 0.7, < 1.0"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.6"
    }
  }

  # Keep state remote and encrypted: it holds the generated tokens and the S3 access keys.
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "tributary/example.tfstate"
  #   region       = "eu-west-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}
