"""A workload that asks its managed identity for Azure Key Vault's own resource name
(`https://vault.azure.net`, as Azure's docs and samples hard-code it) and reads one secret with
that token over plain REST. argv: vault_url, secret name, [client_id]. Prints one JSON line."""

import json
import socket
import sys

_real = socket.getaddrinfo


def _gai(host, *a, **k):
    if isinstance(host, str) and host.lower().rstrip(".").endswith(".vault.localhost"):
        host = "127.0.0.1"
    return _real(host, *a, **k)


socket.getaddrinfo = _gai

import requests  # noqa: E402
from azure.identity import ManagedIdentityCredential  # noqa: E402

vault_url, name = sys.argv[1], sys.argv[2]
kwargs = {"client_id": sys.argv[3]} if len(sys.argv) > 3 else {}
try:
    token = ManagedIdentityCredential(**kwargs).get_token("https://vault.azure.net/.default").token
    r = requests.get(f"{vault_url}/secrets/{name}", params={"api-version": "7.6"},
                     headers={"Authorization": f"Bearer {token}"}, timeout=30)
    print(json.dumps({"status": r.status_code, "value": r.json().get("value")}))
except Exception as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    sys.exit(1)
