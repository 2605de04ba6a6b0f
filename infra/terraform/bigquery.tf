# The warehouse: one table per declaration of dexwatch.core.schemas.tables, read from
# generated/tables.json (python -m infra.gcp.terraform_inputs writes it; a test checks it is
# current), and one view per SQL file of dexwatch/core/warehouse/views.

resource "google_bigquery_dataset" "dexwatch" {
  dataset_id                 = "dexwatch"
  location                   = var.region
  description                = "dexwatch: scored windows, anomalies, market events, dead letters, pools, Slack feedback"
  labels                     = local.labels
  delete_contents_on_destroy = false

  depends_on = [google_project_service.api]
}

resource "google_bigquery_table" "table" {
  for_each            = local.tables
  dataset_id          = google_bigquery_dataset.dexwatch.dataset_id
  table_id            = each.key
  description         = each.value.description
  labels              = local.labels
  deletion_protection = var.deletion_protection
  schema              = jsonencode(each.value.schema)

  # Day partitions on the declared TIMESTAMP column (event time), so reads of a period scan
  # that period only.
  dynamic "time_partitioning" {
    for_each = each.value.partition_by == null ? [] : [each.value.partition_by]
    content {
      type  = "DAY"
      field = time_partitioning.value
    }
  }

  clustering = length(each.value.cluster_by) > 0 ? each.value.cluster_by : null
}

# The dashboards' interface. Each file holds the view's SELECT, naming tables as
# `${project}.${dataset}.<table>`; views read tables only, never other views.
resource "google_bigquery_table" "view" {
  for_each            = fileset(local.views_dir, "*.sql")
  dataset_id          = google_bigquery_dataset.dexwatch.dataset_id
  table_id            = trimsuffix(each.value, ".sql")
  labels              = local.labels
  deletion_protection = var.deletion_protection

  view {
    query          = templatefile("${local.views_dir}/${each.value}", { project = var.project, dataset = google_bigquery_dataset.dexwatch.dataset_id })
    use_legacy_sql = false
  }

  depends_on = [google_bigquery_table.table]
}
