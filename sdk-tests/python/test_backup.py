"""Online backup and restore, seen by the official SDK: secrets written through the SDK while
`strongbox admin backup` runs are all served by a server on the restored store."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time

from azure.identity import ClientSecretCredential
from azure.keyvault.secrets import SecretClient

from conftest import STRONGBOX_BIN, _start, unique


def test_backup_while_the_sdk_writes_restores_every_acknowledged_write(sb, dev, tmp_path, monkeypatch):
    passphrase = tmp_path / "backup-pass"
    passphrase.write_text("correct horse battery staple\n")
    acked: list[tuple[str, str, str, float]] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        client = sb.client("dev")
        i = 0
        while not stop.is_set():
            name, value = unique(f"bk{w}"), f"value-{w}-{i}"
            secret = client.set_secret(name, value)
            acked.append((name, secret.properties.version, value, time.monotonic()))
            i += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    time.sleep(1.5)
    began = time.monotonic()
    backup = tmp_path / "store.sbb"
    out = sb.cli("admin", "backup", "--to", str(backup), "--backup-passphrase-file", str(passphrase))
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join()
    assert json.loads(out.stdout)["sealing"] == "passphrase"
    before = [w for w in acked if w[3] < began]
    assert len(before) > 10 and len(acked) > len(before)

    # Restored under a new root key of its own (the passphrase carries the keyring).
    restored = tmp_path / "restored"
    sb.cli("admin", "restore", "--from", str(backup), "--backup-passphrase-file", str(passphrase),
           data_dir=restored)
    proc, port, creds = _start(restored, tmp_path / "restored.log")
    try:
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", creds["ca_cert"])
        monkeypatch.setenv("SSL_CERT_FILE", creds["ca_cert"])
        credential = ClientSecretCredential(
            creds["tenant_id"], creds["client_id"], creds["client_secret"],
            authority=creds["authority"], disable_instance_discovery=True,
        )
        with SecretClient(creds["vault_url"], credential) as client:
            for name, version, value, _ in before:
                assert client.get_secret(name, version).value == value
        verify = subprocess.run(
            [STRONGBOX_BIN, "audit", "verify", "--data-dir", str(restored)],
            capture_output=True, text=True, timeout=60,
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "dev:" in verify.stdout and "broken" not in verify.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_damaged_backup_is_refused(sb, tmp_path):
    backup = tmp_path / "store.sbb"
    sb.cli("admin", "backup", "--to", str(backup))
    data = bytearray(backup.read_bytes())
    data[len(data) // 2] ^= 0x01
    backup.write_bytes(bytes(data))
    proc = sb.cli("admin", "backup", "verify", str(backup), check=False)
    assert proc.returncode != 0
    assert "damaged" in proc.stderr
