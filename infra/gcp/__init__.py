"""Production deployment on Google Cloud: the inputs Terraform (``infra/terraform``) reads
that are generated from the code's own declarations, never copied by hand."""
