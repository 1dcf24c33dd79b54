"""Strongbox against the official Azure Key Vault secrets SDK for Python (unmodified).

Each test uses its own secret names (and, where counts must be exact, its own vault), so tests
are independent of each other and of order, except the audit check, which runs last on purpose.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.keyvault.secrets import SecretClient

from conftest import unique

MAX_VALUE_BYTES = 25 * 1024
VERSION_RE = re.compile(r"[0-9a-f]{32}")
CLOCK_SLACK = timedelta(minutes=2)


def now() -> datetime:
    return datetime.now(timezone.utc)


def names_of(items) -> list[str]:
    return [i.name for i in items]


def status_of(excinfo) -> int:
    return excinfo.value.status_code


def wire_pages(list_call, **kwargs) -> tuple[list[list], list[dict]]:
    """Pages as the SDK yields them, plus the raw JSON body of every page response."""
    bodies: list[dict] = []

    def hook(response):
        bodies.append(response.http_response.json())

    pager = list_call(raw_response_hook=hook, **kwargs)
    pages = [list(page) for page in pager.by_page()]
    return pages, bodies


def assert_paged(pages, bodies, page_size: int) -> None:
    """Every page respects maxresults, no page leaks a value, and the last page ends the list."""
    assert len(bodies) == len(pages)
    for body in bodies:
        assert len(body["value"]) <= page_size, body
        for item in body["value"]:
            assert "value" not in item, f"list item carries a secret value: {item}"
    for body in bodies[:-1]:
        assert body.get("nextLink"), "a non-final page must carry nextLink"
    assert not bodies[-1].get("nextLink")


# --- 1. set / get ---------------------------------------------------------------------------


def test_each_set_creates_a_new_distinct_version(sb, dev, name):
    """Set never overwrites: every call is a new 32-hex version, all readable by id."""
    values = ["one", "two", "three"]
    created = [dev.set_secret(name, v) for v in values]
    versions = [s.properties.version for s in created]

    for secret, value, version in zip(created, values, versions):
        assert VERSION_RE.fullmatch(version), version
        assert abs(secret.properties.created_on - now()) < CLOCK_SLACK
        assert secret.name == name
        assert secret.value == value
        assert secret.id == f"{sb.vault_url('dev')}/secrets/{name}/{version}"
        assert secret.properties.vault_url == sb.vault_url("dev")
        assert secret.properties.enabled is True
    assert len(set(versions)) == 3

    latest = dev.get_secret(name)
    assert (latest.value, latest.properties.version) == ("three", versions[2])
    for value, version in zip(values, versions):
        got = dev.get_secret(name, version)
        assert (got.value, got.properties.version) == (value, version)


@pytest.mark.parametrize(
    "value",
    [
        "plain ascii",
        "päss wörd – 秘密 – пароль – 🔑🗝️",
        'quotes " backslash \\ newline \n tab \t nul-free',
        "x" * MAX_VALUE_BYTES,  # exactly the limit, one byte per char
        "é" * (MAX_VALUE_BYTES // 2),  # exactly the limit, two bytes per char
        "🔑" * (MAX_VALUE_BYTES // 4),  # exactly the limit, four bytes per char
    ],
    ids=["ascii", "unicode", "escapes", "25KiB-ascii", "25KiB-2byte", "25KiB-4byte"],
)
def test_value_round_trips(dev, name, value):
    """What goes in comes back byte for byte, up to and including 25 KiB of UTF-8."""
    set_result = dev.set_secret(name, value, content_type="text/plain")
    assert set_result.value == value
    got = dev.get_secret(name)
    assert got.value == value
    assert got.properties.content_type == "text/plain"


@pytest.mark.parametrize(
    "value",
    [
        "x" * (MAX_VALUE_BYTES + 1),
        "é" * (MAX_VALUE_BYTES // 2) + "x",  # 25,601 bytes but only 12,801 characters
    ],
    ids=["ascii", "multibyte"],
)
def test_value_over_25_kib_is_refused(dev, name, value):
    """The limit is 25 KiB of UTF-8 bytes (not characters); nothing is stored on refusal."""
    with pytest.raises(HttpResponseError) as e:
        dev.set_secret(name, value)
    assert status_of(e) == 400
    with pytest.raises(ResourceNotFoundError):
        dev.get_secret(name)


# --- 2. update properties -------------------------------------------------------------------


def test_update_properties_of_latest_version(dev, name):
    """PATCH without a version changes the latest version's attributes, content type and tags."""
    dev.set_secret(name, "old")
    latest = dev.set_secret(name, "new")
    not_before = now().replace(microsecond=0) - timedelta(days=1)
    expires_on = now().replace(microsecond=0) + timedelta(days=30)

    updated = dev.update_secret_properties(
        name,
        enabled=True,
        not_before=not_before,
        expires_on=expires_on,
        content_type="application/json",
        tags={"env": "test", "owner": "sdk-tests"},
    )
    assert updated.version == latest.properties.version
    assert updated.content_type == "application/json"

    got = dev.get_secret(name)
    assert got.value == "new"
    p = got.properties
    assert p.version == latest.properties.version
    assert p.enabled is True
    assert p.not_before == not_before
    assert p.expires_on == expires_on
    assert p.content_type == "application/json"
    assert p.tags == {"env": "test", "owner": "sdk-tests"}
    assert p.updated_on >= p.created_on


def test_update_properties_of_a_specific_version(dev, name):
    """PATCH on /{name}/{version} touches only that version; disabling it hides only it."""
    first = dev.set_secret(name, "v1").properties.version
    second = dev.set_secret(name, "v2").properties.version
    expires_on = now().replace(microsecond=0) + timedelta(days=7)

    updated = dev.update_secret_properties(
        name, first, content_type="text/old", tags={"gen": "1"}, expires_on=expires_on
    )
    assert updated.version == first

    old = dev.get_secret(name, first)
    assert old.value == "v1"
    assert old.properties.content_type == "text/old"
    assert old.properties.tags == {"gen": "1"}
    assert old.properties.expires_on == expires_on

    newest = dev.get_secret(name)
    assert newest.properties.version == second
    assert newest.properties.content_type is None
    assert not newest.properties.tags
    assert newest.properties.expires_on is None

    dev.update_secret_properties(name, first, enabled=False)
    by_version = {p.version: p for p in dev.list_properties_of_secret_versions(name)}
    assert by_version[first].enabled is False
    assert by_version[second].enabled is True
    assert dev.get_secret(name).value == "v2"


def test_update_properties_of_unknown_secret_is_not_found(dev, name):
    with pytest.raises(ResourceNotFoundError):
        dev.update_secret_properties(name, content_type="text/plain")


# --- 3. listing and paging ------------------------------------------------------------------


def test_list_secrets_pages_exactly_through_a_fresh_vault(sb):
    """12 secrets with max_page_size=3: every name exactly once, no values, no versions in ids."""
    vault, client = sb.owned_vault()
    expected = sorted(unique(f"item{i:02d}") for i in range(12))
    for n in expected:
        client.set_secret(n, f"value of {n}")

    pages, bodies = wire_pages(client.list_properties_of_secrets, max_page_size=3)
    assert len(pages) >= 4
    assert_paged(pages, bodies, page_size=3)

    listed = [p for page in pages for p in page]
    assert sorted(names_of(listed)) == expected
    for p in listed:
        # Azure lists the base identifier of each secret: https://{vault}/secrets/{name}
        assert p.id == f"{sb.vault_url(vault)}/secrets/{p.name}"
        assert p.version is None
        assert p.enabled is True
        assert p.created_on is not None


def test_list_versions_pages_exactly(sb):
    """8 versions with max_page_size=3: every version exactly once, and no values."""
    vault, client = sb.owned_vault()
    name = unique()
    other = unique()
    client.set_secret(other, "an unrelated secret must not show up")
    expected = {client.set_secret(name, f"value {i}").properties.version for i in range(8)}

    pages, bodies = wire_pages(
        lambda **kw: client.list_properties_of_secret_versions(name, **kw), max_page_size=3
    )
    assert len(pages) >= 3
    assert_paged(pages, bodies, page_size=3)

    listed = [p for page in pages for p in page]
    versions = [p.version for p in listed]
    assert len(versions) == 8
    assert set(versions) == expected
    for p in listed:
        assert p.name == name
        assert p.id == f"{sb.vault_url(vault)}/secrets/{name}/{p.version}"


def test_list_versions_of_unknown_secret_is_empty(dev, name):
    """Like Azure, listing versions of a name that never existed is an empty list, not an error."""
    assert list(dev.list_properties_of_secret_versions(name)) == []


def test_names_are_case_insensitive(dev, name):
    """Azure secret names are case-insensitive: two casings address one secret."""
    mixed = name.upper()
    dev.set_secret(mixed, "first")
    dev.set_secret(name, "second")
    assert dev.get_secret(mixed).value == "second"
    assert len(list(dev.list_properties_of_secret_versions(name))) == 2


# --- 4. soft delete, recover, purge ---------------------------------------------------------


def test_delete_recover_delete_purge_reuse(sb, dev, name):
    """The whole soft-delete lifecycle in a vault with 90-day retention and no purge protection."""
    v1 = dev.set_secret(name, "keep me (old)").properties.version
    v2 = dev.set_secret(name, "keep me").properties.version
    assert dev.get_secret(name).properties.recovery_level == "Recoverable+Purgeable"

    before = now()
    poller = dev.begin_delete_secret(name)
    deleted = poller.result()
    poller.wait()

    assert deleted.name == name
    assert deleted.recovery_id == f"{sb.vault_url('dev')}/deletedsecrets/{name}"
    assert before - CLOCK_SLACK <= deleted.deleted_date <= now() + CLOCK_SLACK
    assert abs(deleted.scheduled_purge_date - (deleted.deleted_date + timedelta(days=90))) < timedelta(minutes=1)
    assert deleted.properties.recovery_level == "Recoverable+Purgeable"
    assert deleted.properties.version == v2

    with pytest.raises(ResourceNotFoundError):
        dev.get_secret(name)
    assert name not in names_of(dev.list_properties_of_secrets())

    fetched = dev.get_deleted_secret(name)
    assert fetched.recovery_id == deleted.recovery_id
    assert fetched.deleted_date == deleted.deleted_date
    assert fetched.scheduled_purge_date == deleted.scheduled_purge_date
    listed = {d.name: d for d in dev.list_deleted_secrets()}
    assert name in listed
    assert listed[name].recovery_id == deleted.recovery_id

    with pytest.raises(ResourceExistsError) as e:
        dev.set_secret(name, "must not replace a soft-deleted secret")
    assert status_of(e) == 409

    recover = dev.begin_recover_deleted_secret(name)
    recovered = recover.result()
    recover.wait()
    assert recovered.name == name
    assert recovered.version == v2
    assert dev.get_secret(name).value == "keep me"
    assert dev.get_secret(name, v1).value == "keep me (old)"
    assert name not in names_of(dev.list_deleted_secrets())
    with pytest.raises(ResourceNotFoundError):
        dev.get_deleted_secret(name)

    dev.begin_delete_secret(name).wait()
    assert dev.purge_deleted_secret(name) is None
    assert name not in names_of(dev.list_deleted_secrets())
    with pytest.raises(ResourceNotFoundError):
        dev.get_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        dev.get_secret(name)

    reborn = dev.set_secret(name, "a new life")
    assert dev.get_secret(name).value == "a new life"
    assert [p.version for p in dev.list_properties_of_secret_versions(name)] == [reborn.properties.version]


def test_list_deleted_secrets_pages_exactly(sb):
    """Deleted secrets page like live ones (max_page_size=2), carry no values, and leave the live list."""
    vault, client = sb.owned_vault()
    expected = sorted(unique(f"gone{i}") for i in range(5))
    kept = unique("kept")
    client.set_secret(kept, "still here")
    for n in expected:
        client.set_secret(n, f"value of {n}")
        client.begin_delete_secret(n).wait()

    pages, bodies = wire_pages(client.list_deleted_secrets, max_page_size=2)
    assert len(pages) >= 3
    assert_paged(pages, bodies, page_size=2)
    listed = [d for page in pages for d in page]
    assert sorted(names_of(listed)) == expected
    for d in listed:
        assert d.recovery_id == f"{sb.vault_url(vault)}/deletedsecrets/{d.name}"
        assert d.deleted_date is not None and d.scheduled_purge_date is not None

    assert names_of(client.list_properties_of_secrets()) == [kept]


def test_delete_unknown_secret_is_not_found(dev, name):
    with pytest.raises(ResourceNotFoundError):
        dev.begin_delete_secret(name)


def test_custom_retention_sets_purge_date_and_recovery_level(sb):
    """A vault with 7-day retention schedules purges 7 days out and says 'CustomizedRecoverable'."""
    _, client = sb.owned_vault(retention_days=7)
    name = unique()
    created = client.set_secret(name, "short-lived")
    assert created.properties.recovery_level == "CustomizedRecoverable+Purgeable"
    assert created.properties.recoverable_days == 7

    deleted = client.begin_delete_secret(name).result()
    assert abs(deleted.scheduled_purge_date - (deleted.deleted_date + timedelta(days=7))) < timedelta(minutes=1)


# --- 5. purge protection --------------------------------------------------------------------


def test_purge_protection_refuses_purge(sb):
    """With purge protection a soft-deleted secret cannot be purged, only waited out or recovered."""
    _, client = sb.owned_vault(purge_protection=True)
    name = unique()
    created = client.set_secret(name, "protected")
    level = created.properties.recovery_level
    assert "Recoverable" in level and "Purgeable" not in level, level

    poller = client.begin_delete_secret(name)
    deleted = poller.result()
    poller.wait()
    assert "Recoverable" in deleted.properties.recovery_level
    assert "Purgeable" not in deleted.properties.recovery_level

    with pytest.raises(HttpResponseError) as e:
        client.purge_deleted_secret(name)
    assert status_of(e) == 403

    assert name in names_of(client.list_deleted_secrets())
    assert client.get_deleted_secret(name).recovery_id == deleted.recovery_id

    client.begin_recover_deleted_secret(name).wait()
    assert client.get_secret(name).value == "protected"


# --- 6. backup and restore ------------------------------------------------------------------


def test_backup_purge_restore_round_trip(dev, name):
    """A backup carries every version; it can only be restored once the name is free."""
    plaintext = f"backup-plaintext-{name}"
    v1 = dev.set_secret(name, plaintext + "-1").properties.version
    v2 = dev.set_secret(name, plaintext + "-2", content_type="text/plain", tags={"k": "v"}).properties.version

    blob = dev.backup_secret(name)
    assert isinstance(blob, bytes) and len(blob) > 0
    assert plaintext.encode() not in blob, "backup blob exposes the secret value in clear"

    with pytest.raises(ResourceExistsError) as e:
        dev.restore_secret_backup(blob)
    assert status_of(e) == 409

    dev.begin_delete_secret(name).wait()
    with pytest.raises(ResourceExistsError) as e:
        dev.restore_secret_backup(blob)  # soft-deleted still holds the name
    assert status_of(e) == 409
    dev.purge_deleted_secret(name)

    restored = dev.restore_secret_backup(blob)
    assert restored.name == name
    assert restored.version == v2
    versions = {p.version for p in dev.list_properties_of_secret_versions(name)}
    assert versions == {v1, v2}
    assert dev.get_secret(name, v1).value == plaintext + "-1"
    latest = dev.get_secret(name)
    assert latest.value == plaintext + "-2"
    assert latest.properties.version == v2
    assert latest.properties.content_type == "text/plain"
    assert latest.properties.tags == {"k": "v"}


def test_tampered_backup_is_refused(dev, name):
    """Flipping one byte in the middle of a backup makes it unusable (400), and nothing appears."""
    dev.set_secret(name, "a")
    dev.set_secret(name, "b")
    blob = bytearray(dev.backup_secret(name))
    dev.begin_delete_secret(name).wait()
    dev.purge_deleted_secret(name)

    blob[len(blob) // 2] ^= 0x01
    with pytest.raises(HttpResponseError) as e:
        dev.restore_secret_backup(bytes(blob))
    assert status_of(e) == 400
    with pytest.raises(ResourceNotFoundError):
        dev.get_secret(name)


def test_restore_into_another_vault_of_the_same_tenant(sb, dev, name):
    """A backup from `dev` restores into a second vault of the same tenant, ids rebased there."""
    v1 = dev.set_secret(name, "first").properties.version
    v2 = dev.set_secret(name, "second").properties.version
    blob = dev.backup_secret(name)

    vault, other = sb.owned_vault()
    restored = other.restore_secret_backup(blob)
    assert restored.name == name
    assert restored.vault_url == sb.vault_url(vault)
    assert restored.id == f"{sb.vault_url(vault)}/secrets/{name}/{v2}"
    assert {p.version for p in other.list_properties_of_secret_versions(name)} == {v1, v2}
    assert other.get_secret(name, v1).value == "first"
    assert other.get_secret(name).value == "second"
    # the source is untouched
    assert dev.get_secret(name).value == "second"


# --- 7. disabled secrets --------------------------------------------------------------------


def test_disabled_secret_is_listed_but_not_readable(dev, name):
    """A disabled secret's value is forbidden (403), its properties stay visible."""
    created = dev.set_secret(name, "hidden", enabled=False)
    assert created.properties.enabled is False

    with pytest.raises(HttpResponseError) as e:
        dev.get_secret(name)
    assert status_of(e) == 403
    with pytest.raises(HttpResponseError) as e:
        dev.get_secret(name, created.properties.version)
    assert status_of(e) == 403

    listed = {p.name: p for p in dev.list_properties_of_secrets()}
    assert listed[name].enabled is False
    [version] = list(dev.list_properties_of_secret_versions(name))
    assert version.version == created.properties.version
    assert version.enabled is False

    dev.update_secret_properties(name, enabled=True)
    assert dev.get_secret(name).value == "hidden"


# --- 8. not found ---------------------------------------------------------------------------


def test_unknown_secret_is_secret_not_found(dev, name):
    """Unknown names and unknown versions are 404 with Azure's error code SecretNotFound."""
    with pytest.raises(ResourceNotFoundError) as e:
        dev.get_secret(name)
    assert status_of(e) == 404
    assert e.value.error.code == "SecretNotFound"

    dev.set_secret(name, "exists")
    with pytest.raises(ResourceNotFoundError) as e:
        dev.get_secret(name, "0" * 32)
    assert e.value.error.code == "SecretNotFound"


# --- 9. concurrency -------------------------------------------------------------------------


def test_concurrent_sets_on_one_name_each_get_a_version(dev, name):
    """16 simultaneous sets of one name: 16 versions, none lost, each value under its own id."""
    dev.set_secret(unique(), "warm up the token cache")
    start = threading.Barrier(16)

    def put(i: int) -> tuple[str, str]:
        value = f"value from thread {i}"
        start.wait(timeout=30)
        return dev.set_secret(name, value).properties.version, value

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(put, range(16)))

    versions = [v for v, _ in results]
    assert len(set(versions)) == 16
    listed = [p.version for p in dev.list_properties_of_secret_versions(name)]
    assert len(listed) == 16
    assert set(listed) == set(versions)
    for version, value in results:
        assert dev.get_secret(name, version).value == value
    assert dev.get_secret(name).value in {value for _, value in results}


# --- 10. authorization ----------------------------------------------------------------------


def test_get_only_principal_can_get_and_nothing_else(sb, dev, name):
    """Access policies are per permission: get does not imply set, list or delete."""
    dev.set_secret(name, "readable")
    reader = sb.create_principal()
    sb.set_policy("dev", reader.object_id, "get")
    client = sb.client("dev", reader)

    assert client.get_secret(name).value == "readable"

    for attempt in (
        lambda: client.set_secret(name, "overwrite"),
        lambda: list(client.list_properties_of_secrets()),
        lambda: list(client.list_properties_of_secret_versions(name)),
        lambda: client.begin_delete_secret(name),
    ):
        with pytest.raises(HttpResponseError) as e:
            attempt()
        assert status_of(e) == 403

    # the refused calls changed nothing
    assert dev.get_secret(name).value == "readable"
    assert len(list(dev.list_properties_of_secret_versions(name))) == 1


def test_principal_without_policy_is_forbidden(sb, dev, name):
    """A valid token is not enough: no access policy on the vault means 403."""
    dev.set_secret(name, "private")
    stranger = sb.create_principal()
    with pytest.raises(HttpResponseError) as e:
        sb.client("dev", stranger).get_secret(name)
    assert status_of(e) == 403


def test_policy_on_one_vault_does_not_reach_another(sb, dev, name):
    """Permissions are per vault: owning one vault gives no rights on `dev`."""
    dev.set_secret(name, "dev only")
    vault = sb.create_vault()
    owner = sb.create_principal()
    sb.set_policy(vault, owner.object_id, "all")
    sb.client(vault, owner).set_secret(name, "mine")

    with pytest.raises(HttpResponseError) as e:
        sb.client("dev", owner).get_secret(name)
    assert status_of(e) == 403


def test_wrong_client_secret_is_an_authentication_error(sb, name):
    """A bad client secret fails at the token endpoint: the SDK raises ClientAuthenticationError."""
    credential = sb.credential(sb.admin, client_secret="not-the-secret")
    client = SecretClient(sb.vault_url("dev"), credential)
    with pytest.raises(ClientAuthenticationError):
        client.get_secret(name)
    client.close()


# --- 12. names ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["bad_name", "has.dot", "a" * 128], ids=["underscore", "dot", "128-chars"])
def test_invalid_secret_name_is_bad_request(dev, bad):
    """Names are 1-127 letters, digits and dashes; anything else is 400."""
    with pytest.raises(HttpResponseError) as e:
        dev.set_secret(bad, "value")
    assert status_of(e) == 400


def test_longest_valid_name_is_accepted(dev, name):
    """127 characters is the limit, not beyond it."""
    longest = (name + "-" + "x" * 127)[:127]
    dev.set_secret(longest, "long name")
    assert dev.get_secret(longest).value == "long name"


# --- 11. audit (last on purpose: it checks what the run did) --------------------------------


def _audit_verify(sb, data_dir=None) -> tuple[int, dict[str, str]]:
    """Runs `audit verify`; returns the exit code and each vault's verdict line."""
    proc = sb.cli("audit", "verify", data_dir=data_dir, check=False)
    verdicts = {}
    for line in proc.stdout.splitlines():
        vault, _, verdict = line.strip().partition(": ")
        verdicts[vault] = verdict
    return proc.returncode, verdicts


def _records(verdict: str) -> int:
    m = re.fullmatch(r"(\d+) records, chain intact", verdict)
    assert m, f"chain not intact: {verdict!r}"
    return int(m.group(1))


def test_zz_audit_chains_are_intact_after_the_run(sb, dev, name):
    """After everything above, every vault's audit chain verifies, and one request = one record."""
    dev.set_secret(name, "audited")  # token cached: each call below is exactly one request
    code, before = _audit_verify(sb)
    assert code == 0, before
    assert _records(before["dev"]) > 0
    assert len(before) > 1  # the vaults this run created are verified too
    for verdict in before.values():
        _records(verdict)

    dev.get_secret(name)
    with pytest.raises(ResourceNotFoundError):
        dev.get_secret(unique())  # refusals are audited too
    code, after = _audit_verify(sb)
    assert code == 0, after
    assert _records(after["dev"]) == _records(before["dev"]) + 2


def test_zz_audit_verify_detects_an_edited_record(sb, tmp_path):
    """The verdict above means something: edit one record in a copy of the store and verify fails."""
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(sb.data_dir / "root.key", copy / "root.key")
    src = sqlite3.connect(sb.data_dir / "strongbox.db")
    dst = sqlite3.connect(copy / "strongbox.db")
    src.backup(dst)  # a consistent snapshot while the server keeps running
    src.close()
    dst.execute(
        "UPDATE audit_records SET record_json = record_json || ' ' "
        # A record of a vault that still exists: `audit verify` walks the vaults' chains, and
        # purged vaults and subscriptions (management operations) have chains too.
        "WHERE rowid = (SELECT rowid FROM audit_records WHERE vault_id IN (SELECT id FROM vaults) "
        "ORDER BY vault_id, seq LIMIT 1 OFFSET 2)"
    )
    assert dst.total_changes == 1
    dst.commit()
    dst.close()

    code, verdicts = _audit_verify(sb, data_dir=copy)
    assert code == 1, verdicts
    broken = [v for v, verdict in verdicts.items() if "intact" not in verdict]
    assert len(broken) == 1, verdicts
