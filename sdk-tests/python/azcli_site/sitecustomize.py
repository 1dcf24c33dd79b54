"""Loaded by the Azure CLI's Python (PYTHONPATH) in the tests: sends *.vault.localhost to
127.0.0.1, the stand-in for an /etc/hosts entry (see conftest.py). The CLI itself is unmodified."""

import socket

_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.lower().rstrip(".").endswith(".vault.localhost"):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo
