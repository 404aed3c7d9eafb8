# Audit (or plan) a mirrorspec spec on every `terraform plan`, and fail the plan on drift.
#
# Terraform runs the program on every refresh and expects no side effects:
# `mirrorspec terraform-external` only reads registries, it never copies or changes anything.
# Fix drift with `mirrorspec apply SPEC`, outside Terraform.

terraform {
  required_version = ">= 1.5.0" # check blocks

  required_providers {
    external = {
      source  = "hashicorp/external"
      version = ">= 2.3.0"
    }
  }
}

data "external" "mirror" {
  # Run without a shell, in the directory Terraform runs in: `mirrorspec` must be on PATH.
  program = ["mirrorspec", "terraform-external"]

  # Values must be strings; null entries are not sent (no target = every target).
  query = {
    spec    = var.spec
    action  = var.action
    target  = var.target
    content = var.action == "audit" ? tostring(var.content) : null
  }

  # A failed postcondition is an error: this is what stops `terraform plan` on drift.
  lifecycle {
    postcondition {
      condition     = !var.fail_on_drift || self.result.in_sync == "true"
      error_message = "mirrorspec ${var.action} of ${var.spec}: not in sync (${self.result.changes} native change(s), ${self.result.copies} tag(s) to copy, ${self.result.unchecked} tag(s) not checked). Run `mirrorspec apply ${var.spec}`, or set fail_on_drift = false."
    }
  }
}

# A check block only warns (Terraform never fails a plan on a check), but it keeps
# reporting in HCP Terraform's continuous validation when fail_on_drift is false.
check "mirror_in_sync" {
  assert {
    condition     = data.external.mirror.result.in_sync == "true"
    error_message = "mirrorspec: ${data.external.mirror.result.drift} item(s) differ from ${var.spec}."
  }
}

locals {
  document = jsondecode(data.external.mirror.result.plan_json)
}
