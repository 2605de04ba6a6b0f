"""The Pub/Sub declaration in ``pubsub.yaml``, as typed objects."""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import BaseModel, ConfigDict, Field

POOL_EVENTS = "pool-events"
POOL_EVENTS_DLQ = "pool-events-dlq"
POOL_HOURLY = "pool-hourly"
POOL_HOURLY_SUBSCRIPTION = "pool-hourly-pipeline"
HOURLY_MONITOR_SUBSCRIPTION = "pool-hourly-monitor"
ALERTS = "alerts"
MONITOR_SUBSCRIPTION = "pool-events-monitor"
DLQ_SUBSCRIPTION = "pool-events-dlq-inspect"
PIPELINE_SUBSCRIPTION = "pool-events-pipeline"
ALERTS_SUBSCRIPTION = "alerts-tail"
ALERTS_MONITOR_SUBSCRIPTION = "alerts-monitor"
ALERTS_SLACK_SUBSCRIPTION = "alerts-slack"
ALERTS_DLQ = "alerts-dlq"
ALERTS_DLQ_SUBSCRIPTION = "alerts-dlq-inspect"


class SubscriptionSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    ack_deadline_s: int = Field(10, ge=10, le=600)
    enable_message_ordering: bool = False
    retain_acked_messages: bool = False
    # A Pub/Sub filter on the message attributes: only matching messages are delivered.
    filter: str = ""


class TopicSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    description: str = ""
    schema_file: str | None = Field(None, alias="schema")
    message_retention_s: int = 604800
    subscriptions: dict[str, SubscriptionSpec] = Field(default_factory=dict)


class PubSubDeclaration(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    topics: dict[str, TopicSpec]


@cache
def declaration(own_topics: tuple[str, ...] = ()) -> PubSubDeclaration:
    """The declared topics and subscriptions, with a copy of ``pool-events`` and its
    subscriptions for each chain named in ``own_topics`` (``chain_topic``)."""
    text = resources.files(__package__).joinpath("pubsub.yaml").read_text()
    declared = PubSubDeclaration.model_validate(yaml.safe_load(text))
    shared = declared.topics[POOL_EVENTS]
    copies = {
        chain_topic(chain): shared.model_copy(
            update={
                "description": f"{shared.description} Chain {chain} alone.",
                "subscriptions": {
                    chain_subscription(chain, name): spec
                    for name, spec in shared.subscriptions.items()
                },
            }
        )
        for chain in own_topics
    }
    return declared.model_copy(update={"topics": {**declared.topics, **copies}})


def chain_topic(chain: str) -> str:
    """The pool-events topic of a chain that has one of its own (``chain.own_topic``)."""
    return f"{POOL_EVENTS}-{chain}"


def chain_subscription(chain: str, subscription: str) -> str:
    """A pool-events subscription's namesake on a chain's own topic: ``pool-events-pipeline``
    is ``pool-events-<chain>-pipeline`` there."""
    if not subscription.startswith(POOL_EVENTS + "-"):
        raise ValueError(f"{subscription} is not a subscription of {POOL_EVENTS}")
    return chain_topic(chain) + subscription.removeprefix(POOL_EVENTS)


def topic_path(project: str, topic: str) -> str:
    return f"projects/{project}/topics/{topic}"


def subscription_path(project: str, subscription: str) -> str:
    return f"projects/{project}/subscriptions/{subscription}"
