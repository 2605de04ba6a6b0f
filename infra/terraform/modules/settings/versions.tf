terraform {
  required_version = ">= 1.5.0"
  # No provider: this module only computes values.
}
