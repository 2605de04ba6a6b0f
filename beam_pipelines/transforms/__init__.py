"""The pipeline's steps as composite PTransforms, each testable on its own."""
