"""Where ``lkmseg serve`` listens: this machine only (127.0.0.1) unless told otherwise, and a
warning that names the exposure when told otherwise."""

from __future__ import annotations

import ipaddress

from lkmseg.errors import UserError

LOOPBACK = "127.0.0.1"
DOCS = "docs/serving.md#exposing-the-server-beyond-this-machine"


def check_address(address: str) -> ipaddress.IPv4Address:
    """The IPv4 address to listen on, or UserError (PyTriton 0.7 reaches its Triton through
    ``http://ADDRESS:PORT``, which has no room for an IPv6 address)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        ip = None
    if not isinstance(ip, ipaddress.IPv4Address):
        raise UserError(f"--address {address}: give an IPv4 address: {LOOPBACK} (this machine "
                        "only, the default), 0.0.0.0 (every interface) or one of this "
                        "machine's addresses")
    return ip


def is_loopback(address: str) -> bool:
    return check_address(address).is_loopback


def exposure_warning(address: str) -> str | None:
    """The warning for an address other machines can reach, or None for loopback."""
    if is_loopback(address):
        return None
    where = "every network interface" if check_address(address).is_unspecified else address
    return (f"--address {address}: the server listens on {where}, so anyone who can reach this "
            "machine can send it requests: it has no authentication and no request-size limit "
            f"(a request's whole body is held in memory); put a reverse proxy with both in "
            f"front, see {DOCS}")

