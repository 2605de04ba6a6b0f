"""Backoff between retries, shared by the network clients (publishers, the HTTP model handler)."""

from __future__ import annotations

import random


def full_jitter_backoff(attempt: int, base_s: float, max_s: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry): uniform in
    [0, min(max_s, base_s * 2^(attempt-1))], so clients that failed together spread out."""
    cap = min(max_s, base_s * 2 ** (attempt - 1))
    return random.uniform(0, cap)
