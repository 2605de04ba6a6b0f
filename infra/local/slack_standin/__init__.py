"""A local stand-in for the Slack Web API: a test bench that speaks the same protocol as
slack.com for the subset dexwatch uses (auth.test, chat.postMessage, chat.update,
chat.getPermalink, conversations.history, conversations.replies, conversations.list), with
Slack's per-channel rate limit, errors and signed interactivity payloads (button clicks),
like the mock server of slack-sdk's own tests. dexwatch's Slack consumer and its tests point
slack_sdk's WebClient at it (``base_url``) instead of https://slack.com/api/; it is not
Slack, and production never talks to it.

    from infra.local.slack_standin import SlackStandin
    with SlackStandin(channels=["#dexwatch-alerts"]) as standin:
        client = WebClient(token=STANDIN_TOKEN, base_url=standin.url)

``python -m infra.local.slack_standin`` serves one from the command line (``dexwatch local
up``); ``SlackStandinClient`` drives that one from another process.
"""

from infra.local.slack_standin.client import SlackStandinClient
from infra.local.slack_standin.server import SlackStandin

__all__ = ["SlackStandin", "SlackStandinClient"]
