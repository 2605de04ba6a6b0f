# One Vertex AI endpoint per model. Terraform creates the endpoints only: `dexwatch model
# promote` uploads a model version (to the models bucket, then the Model Registry) and
# deploys it to its endpoint with all the traffic (model/vertex.py); the pipeline calls the
# endpoints by the ids in output dataflow_parameters.
resource "google_vertex_ai_endpoint" "model" {
  for_each     = var.vertex_endpoint_ids
  name         = each.value
  display_name = "dexwatch-${each.key}"
  description  = "dexwatch ${each.key} model"
  location     = var.region
  labels       = local.labels

  depends_on = [google_project_service.api]
}
