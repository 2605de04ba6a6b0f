"""Contracts shared across dexwatch: message schemas, topic declarations, table schemas.

Production enforces the same files: the Pub/Sub topic schema is ``pool_event.avsc`` and
Terraform reads ``pubsub.yaml``.
"""
