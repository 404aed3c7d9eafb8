output "in_sync" {
  description = "True when every target matches the spec."
  value       = data.external.mirror.result.in_sync == "true"
}

output "changes" {
  description = "Native settings to change (plan), or drifted native rules (audit)."
  value       = tonumber(data.external.mirror.result.changes)
}

output "copies" {
  description = "Tags to copy (plan), or tags missing or with other content (audit with content)."
  value       = tonumber(data.external.mirror.result.copies)
}

output "drift" {
  description = "changes + copies: 0 exactly when in sync."
  value       = tonumber(data.external.mirror.result.drift)
}

output "not_in_sync" {
  description = "Each destination tag that is missing or differs, as registry/repository:tag."
  value = flatten([
    for target in local.document.targets : concat(
      # plan: the copies still needed (an audit has no `copies`)
      try([for copy in target.copies : [for tag in copy.tags : "${copy.destination}:${tag.tag}"]], []),
      # audit: the content checks that failed (null without content, absent in a plan)
      try([for check in target.content : "${check.destination}:${check.tag}" if check.status != "present"], []),
    )
  ])
}

output "document" {
  description = "The whole plan or audit document (schema: `mirrorspec schema --output plan|audit`)."
  value       = local.document
}
