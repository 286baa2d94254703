"""Is a download host reachable? Checked with a short TCP connect so offline machines fail at once."""

from __future__ import annotations

import socket
from urllib.parse import urlparse


def is_reachable(url: str, timeout: float = 3.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False
