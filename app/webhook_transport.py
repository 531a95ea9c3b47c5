"""Delivering a webhook over HTTP: which addresses an endpoint may be reached at, and the
POST itself (the rules of what is sent, signed and retried: app.core.webhooks).

* **No reaching inside.** A host must resolve (within :data:`DNS_TIMEOUT`, app.dns) to
  addresses on the public internet only: loopback, private, link-local, shared,
  multicast and reserved ones are refused, IPv6 forms that carry an IPv4 address are
  judged by that address, unless the deployment allows private addresses.
* **Pinned.** The connection goes to the address that was checked, so a DNS answer that
  changes in between cannot redirect it. Redirects are not followed; every step has a
  timeout. The TLS settings are made once.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from app import dns

#: how long a DNS lookup may take (seconds); a slower answer counts as not reachable
DNS_TIMEOUT = 2.0
#: how long one delivery may take (connect, send, answer)
SEND_TIMEOUT = 10.0
USER_AGENT = "Holdfast-Webhooks/1.0"


_IPV6_WITH_IPV4_INSIDE = tuple(
    ipaddress.ip_network(net) for net in ("::/96", "::ffff:0:0:0/96", "64:ff9b::/96")
)

#: local-use NAT64 (RFC 8215): where it leads depends on the local gateway; never allowed
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


def is_public(address: str) -> bool:
    """Whether ``address`` is on the public internet (the only place webhooks may go
    unless the deployment allows private addresses)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _LOCAL_NAT64:
            return False
        if any(ip in network for network in _IPV6_WITH_IPV4_INSIDE):
            # IPv4-compatible, IPv4-translated and NAT64 forms reach an IPv4 host: judge it.
            return is_public(str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)))
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is not None:
            return is_public(str(embedded))
    return ip.is_global and not ip.is_multicast


@dataclass
class Outcome:
    status: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever DNS says by now."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        self.tls = _tls()
        super().__init__(host, port, timeout=timeout, context=self.tls)
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


_TLS: ssl.SSLContext | None = None


def _tls() -> ssl.SSLContext:
    """The TLS settings, made once (making them loads the system's certificate
    authorities)."""
    global _TLS
    if _TLS is None:
        _TLS = ssl.create_default_context()
    return _TLS


def reachable(
    host: str,
    port: int,
    *,
    allow_private: bool,
    timeout: float = DNS_TIMEOUT,
    resolve: dns.Resolver = socket.getaddrinfo,
) -> list[str] | None:
    """The addresses ``host`` may be reached at, or None: it does not resolve in time, or
    resolves to an address webhooks may not reach (never says which)."""
    addresses = dns.lookup(host, port, timeout=timeout, resolve=resolve)
    if addresses is None or (not allow_private and not all(is_public(a) for a in addresses)):
        return None
    return addresses


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout: float = SEND_TIMEOUT,
    resolve: dns.Resolver = socket.getaddrinfo,
) -> Outcome:
    """POST ``body`` to ``url``. Never raises: every failure is an Outcome with an error."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https"
    try:
        port = parts.port or (443 if https else 80)
    except ValueError:
        return Outcome(error="the URL's port is not valid")
    addresses = reachable(host, port, allow_private=allow_private, resolve=resolve)
    if addresses is None:
        # Shown to the tenant's admins: the same words whatever the reason (check_url).
        return Outcome(error="refused: the address is not allowed or not reachable")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    connection_class = _PinnedHTTPS if https else _PinnedHTTP
    connection = connection_class(host, port, addresses[0], timeout)
    try:
        connection.request("POST", path, body=body, headers={"User-Agent": USER_AGENT, **headers})
        response = connection.getresponse()
        response.read(64 * 1024)
        return Outcome(status=response.status)
    except (OSError, http.client.HTTPException) as error:
        return Outcome(error=(str(error) or type(error).__name__)[:300])
    finally:
        connection.close()
