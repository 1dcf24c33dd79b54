"""The server's /metrics, read with the Prometheus project's own Python parser (OpenMetrics text),
moving with traffic made by the official SDK. The metrics listener is plain HTTP on its own
loopback address (`--metrics-listen`), never the public port."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import Strongbox, _free_port, unique
from test_identity import _start, _stop


@pytest.fixture(scope="module")
def metered(tmp_path_factory, vault_host_resolution):
    port = _free_port()
    data_dir = tmp_path_factory.mktemp("strongbox-metrics")
    proc, sb_port, creds = _start(data_dir, ["--metrics-listen", f"127.0.0.1:{port}"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", creds["ca_cert"])
        mp.setenv("SSL_CERT_FILE", creds["ca_cert"])
        sb = Strongbox(data_dir, sb_port, creds)
        try:
            yield sb, f"http://127.0.0.1:{port}"
        finally:
            sb.close()
            _stop(proc)


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    """Every sample as {(name, sorted labels): value}."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        text = r.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def total(samples: dict, name: str, **labels) -> float:
    want = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and want <= set(l))


def test_counters_move_with_sdk_traffic(metered):
    sb, base = metered
    before = scrape(base)
    client = sb.client("dev")
    names = [unique() for _ in range(3)]
    for n in names:
        client.set_secret(n, "v")
    for n in names:
        assert client.get_secret(n).value == "v"
    after = scrape(base)

    def moved(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert moved("strongbox_requests_total", plane="vault", operation="SecretSet", status="200") == 3
    assert moved("strongbox_requests_total", plane="vault", operation="SecretGet", status="200") == 3
    # The SDK's first request is the unauthenticated challenge.
    assert moved("strongbox_requests_total", plane="vault", status="401") >= 1
    assert moved("strongbox_request_duration_seconds_count", plane="vault", operation="SecretGet") == 3
    assert moved("strongbox_tokens_issued_total", grant="client_credentials") >= 1
    # The audit writer appends the records of reads and refusals (a write's record commits in the
    # write's own transaction): three GETs and the 401 at least.
    assert moved("strongbox_audit_records_total") >= 4
    assert moved("strongbox_audit_commit_duration_seconds_count") >= 1
    # Live counts come from the store at most every 15 s.
    assert ("strongbox_secrets", ()) in after
    assert total(after, "strongbox_vaults") >= 1
    assert total(after, "strongbox_store_connections", state="open") >= 1
    assert total(after, "strongbox_build_info") == 1
    assert ("strongbox_change_feed_waiting_polls", ()) in after
    assert ("strongbox_audit_queue_depth", ()) in after


def test_refused_tokens_are_counted_without_the_secret(metered):
    sb, base = metered
    before = scrape(base)
    import requests
    r = requests.post(f"{sb.authority}/{sb.creds['tenant_id']}/oauth2/v2.0/token", data={
        "grant_type": "client_credentials", "client_id": sb.creds["client_id"],
        "client_secret": "not-the-secret-xyz", "scope": f"{sb.authority}/.default",
    })
    assert r.status_code == 401
    after = scrape(base)
    assert total(after, "strongbox_tokens_refused_total", error="invalid_client") == \
        total(before, "strongbox_tokens_refused_total", error="invalid_client") + 1
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as m:
        assert b"not-the-secret-xyz" not in m.read()


def test_readyz_and_healthz_on_the_metrics_listener(metered):
    _, base = metered
    with urllib.request.urlopen(f"{base}/readyz", timeout=10) as r:
        assert r.status == 200
    with urllib.request.urlopen(f"{base}/healthz", timeout=10) as r:
        assert r.status == 200


def test_the_grafana_dashboard_uses_only_exported_names(metered):
    import json
    import re
    from pathlib import Path

    _, base = metered
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as r:
        text = r.read().decode()
    # Family names: a counter without samples yet (nothing throttled) is still declared.
    exported = {f.name for f in text_string_to_metric_families(text)}
    dashboard = json.loads((Path(__file__).parents[2] / "deploy/grafana/strongbox-server.json").read_text())
    used = {re.sub(r"_(total|bucket|count|sum)$", "", m)
            for p in dashboard["panels"] for t in p["targets"]
            for m in re.findall(r"strongbox_[a-z_]+", t["expr"])}
    assert len(used) >= 10 and used <= exported, used - exported
