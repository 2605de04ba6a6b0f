"""The Slack consumer of the alerts topic (``dexwatch slack serve``).

- ``messages``: alerts as Block Kit messages; ``delivery``: the Web API calls and their
  retries; ``ledger``: the durable record of posts; ``consumer``: one post per alert
  revision, paced per channel, bursts grouped; ``feedback``: the operators' buttons;
  ``server``: the HTTP side (clicks, Pub/Sub push); ``wiring``: credentials, dead letters,
  pool names; ``service``: all of it running.
"""
