"""Client IPs masked: what is stored with ``TRACKWAY_MASK_IP`` and what the request log shows.

A base-layer module: it imports nothing from Trackway.
"""

from __future__ import annotations

import ipaddress


def mask_ip(ip: str) -> str:
    """IPv4 to its /24, IPv6 to its /48: enough for geography, not enough to name a household."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False).network_address)
