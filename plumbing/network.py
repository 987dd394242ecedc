"""Which host addresses count as loopback: the studio and the model server bind only those unless
told otherwise (the studio then needs a login, the model server an explicit --allow-remote)."""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for localhost and any loopback address (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
