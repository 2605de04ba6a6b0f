# The images: pipeline (Flex Template launcher and Dataflow workers, beam_pipelines/Dockerfile)
# and app (the root Dockerfile: prediction server, publishers, Slack consumer).
resource "google_artifact_registry_repository" "dexwatch" {
  repository_id = "dexwatch"
  location      = var.region
  format        = "DOCKER"
  description   = "dexwatch images: pipeline and app"
  labels        = local.labels

  depends_on = [google_project_service.api]
}
