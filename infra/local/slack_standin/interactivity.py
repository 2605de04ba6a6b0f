"""Button clicks as Slack sends them: a ``block_actions`` interactivity payload, posted
form-encoded (``payload=<json>``) to the app's interactivity URL and signed with the
signing secret in Slack's v0 scheme, which slack_sdk's ``SignatureVerifier`` checks:

    X-Slack-Request-Timestamp: <unix seconds>
    X-Slack-Signature: v0=<hex HMAC-SHA256(signing secret, "v0:<timestamp>:<body>")>
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from infra.local.slack_standin.workspace import APP_ID, TEAM_ID, TEAM_NAME

# Slack's legacy verification token, still sent in payloads; dexwatch checks signatures.
VERIFICATION_TOKEN = "standin-verification-token"


def signature(signing_secret: str, timestamp: str, body: bytes) -> str:
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def block_id_of(blocks: list[Mapping[str, Any]], action_id: str) -> str:
    """The block_id of the block holding an element with ``action_id`` ("actions" if
    there is none, or it has no block_id)."""
    for block in blocks:
        elements = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), Mapping):
            elements.append(block["accessory"])
        if any(isinstance(e, Mapping) and e.get("action_id") == action_id for e in elements):
            return str(block.get("block_id") or "actions")
    return "actions"


def block_actions(
    message: Mapping[str, Any],
    channel_id: str,
    channel_name: str,
    action_id: str,
    value: str,
    user_id: str,
    user_name: str,
    response_url: str,
) -> dict[str, Any]:
    """The payload of a click on a button of ``message`` (as Slack shows messages)."""
    now = time.time()
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name, "name": user_name, "team_id": TEAM_ID},
        "api_app_id": APP_ID,
        "token": VERIFICATION_TOKEN,
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(now)}.{secrets.randbelow(10**12)}.{secrets.token_hex(16)}",
        "team": {"id": TEAM_ID, "domain": TEAM_NAME},
        "enterprise": None,
        "is_enterprise_install": False,
        "channel": {"id": channel_id, "name": channel_name},
        "message": dict(message),
        "state": {"values": {}},
        "response_url": response_url,
        "actions": [
            {
                "action_id": action_id,
                "block_id": block_id_of(message.get("blocks") or [], action_id),
                "value": value,
                "type": "button",
                "action_ts": f"{now:.6f}",
            }
        ],
    }


def post_signed(
    url: str, payload: Mapping[str, Any], signing_secret: str, timeout_s: float = 10.0
) -> int:
    """POST the payload as Slack does and return the HTTP status of the answer."""
    body = urlencode({"payload": json.dumps(payload)}).encode()
    timestamp = str(int(time.time()))
    request = Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": timestamp,
            "X-Slack-Signature": signature(signing_secret, timestamp, body),
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
        },
    )
    try:
        with urlopen(request, timeout=timeout_s) as answer:
            answer.read()
            return answer.status
    except HTTPError as err:
        err.read()
        return err.code
