"""`dexwatch slack`: the Slack consumer of the alerts topic."""

from __future__ import annotations

from typing import Annotated

import typer

from dexwatch.app.cli.context import cli_settings, fail, stop_on_signals, use_local_emulator

app = typer.Typer(help="Alerts in Slack.", no_args_is_help=True)


@app.command("serve")
def slack_serve(
    push: Annotated[
        bool,
        typer.Option(
            "--push",
            help="Take alerts from a Pub/Sub push subscription on /pubsub/push (Cloud Run) "
            "instead of pulling the alerts-slack subscription.",
        ),
    ] = False,
) -> None:
    """Post each alert revision to its channel exactly once (slack.routes), with buttons
    whose clicks are written to the alert_feedback table; what cannot be delivered goes to
    the alerts-dlq topic with the reason."""
    from dexwatch.app.slack.service import serve

    settings = cli_settings()
    if not push:
        use_local_emulator(settings)
    consumer = serve(settings, stop_on_signals(), push=push, on_ready=typer.echo)
    c = consumer.counts
    typer.echo(
        f"slack: {c.posted} posted, {c.duplicate} already posted, {c.dead_lettered} "
        f"dead-lettered, {c.skipped} skipped, {c.retry} left for redelivery"
    )


@app.command("test")
def slack_test(
    channel: Annotated[
        str | None, typer.Option(help="Where to post (default: slack.default_channel).")
    ] = None,
) -> None:
    """Post a sample alert, to check the token, the channel and the layout."""
    from dexwatch.app.slack.samples import sample_alert
    from dexwatch.app.slack.wiring import build_consumer, check_auth
    from dexwatch.core.schemas.alert import Alert

    settings = cli_settings()
    target = (
        channel or settings.slack.default_channel or next(iter(settings.slack.channels()), None)
    )
    if target is None:
        fail("no channel: pass --channel or set slack.default_channel", code=2)
    consumer = build_consumer(settings)
    typer.echo(f"slack: token of {check_auth(consumer.api)}")
    alert: Alert = sample_alert(settings.chains[0].chain_id)
    posted = consumer.api.post(
        target, consumer.render(alert), find_since=alert.detected_at.timestamp()
    )
    typer.echo(f"posted a sample alert to {target} (ts {posted.ts})")


@app.command("show")
def slack_show(
    channel: Annotated[str | None, typer.Option(help="Only this channel.")] = None,
    last: Annotated[int, typer.Option(help="The last N messages.")] = 5,
) -> None:
    """Print what the local stand-in of Slack received, as Slack would show it."""
    from dexwatch.app.slack.messages import Message, as_text
    from infra.local.slack_standin import SlackStandinClient

    settings = cli_settings()
    if not settings.slack.local_standin:
        fail("slack.local_standin is false: the messages are in Slack itself", code=2)
    client = SlackStandinClient(f"http://127.0.0.1:{settings.slack.standin_port}")
    messages = client.messages(channel)[-last:]
    for m in messages:
        where = f"{m.get('channel_name', m['channel'])}" + (
            " (reply)" if m.get("thread_ts") else ""
        )
        typer.echo(f"── {where} ts {m['ts']}")
        typer.echo(as_text(Message(m.get("text", ""), m.get("blocks") or [])))
    if not messages:
        typer.echo("no message yet")


@app.command("routes")
def slack_routes() -> None:
    """Each route's channel and its Pub/Sub subscription filter (a push subscription per
    route in production), then where the rest goes."""
    settings = cli_settings()
    for n, route in enumerate(settings.slack.routes, 1):
        typer.echo(f"{n}. {route.channel}: {route.pubsub_filter() or '(every alert)'}")
    rest = settings.slack.default_channel or "not posted (no default_channel)"
    typer.echo(f"otherwise: {rest}")
