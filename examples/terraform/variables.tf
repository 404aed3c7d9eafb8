variable "spec" {
  description = "Path of the mirrorspec spec file, relative to the directory Terraform runs in."
  type        = string
}

variable "action" {
  description = "audit: what the registries really have (exit code semantics of `mirrorspec audit`); plan: what `mirrorspec apply` would do."
  type        = string
  default     = "audit"

  validation {
    condition     = contains(["audit", "plan"], var.action)
    error_message = "action must be \"audit\" or \"plan\"."
  }
}

variable "content" {
  description = "audit only: the deep check (at an OCI layout target, also hash every blob). Every wanted tag's digest is checked either way."
  type        = bool
  default     = true
}

variable "target" {
  description = "Only this target of the spec (several: comma-separated). null: every target."
  type        = string
  default     = null
}

variable "fail_on_drift" {
  description = "Fail `terraform plan` when the registries are not in sync with the spec."
  type        = bool
  default     = true
}
