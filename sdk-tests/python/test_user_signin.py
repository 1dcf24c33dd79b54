"""People signing in, with the unmodified tools and a real browser: azure-identity's
DeviceCodeCredential and InteractiveBrowserCredential, and `az login --use-device-code`, each
completed in headless Chromium (Debian's chromium + chromedriver, driven by selenium), then reading
a secret as the user. And the refusals: wrong password, unknown user (same answer), wrong TOTP,
disabled user, lockout and its release, reused refresh token revoking its family, redirect_uri
mismatch, PKCE verifier mismatch, expired device code, a form post without its CSRF token; the
sign-in log shows each, and never a password or a code.

The module runs its own server with `--dev-clock` (lockout release and device-code expiry move
time). Screenshots of the pages land in the test's tmp dir (`screenshots/`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
import urllib.parse
import webbrowser
from pathlib import Path

import pyotp
import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import DeviceCodeCredential, InteractiveBrowserCredential
from azure.keyvault.secrets import SecretClient
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Strongbox, _start, unique

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AZ = os.environ.get("STRONGBOX_AZ", "")
SITE = Path(__file__).parent / "azcli_site"
CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
PASSWORD = "correct horse battery staple"


def _require(path: str) -> None:
    if not Path(path).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {path} is missing (scripts/test.sh installs chromium and chromium-driver)")
        pytest.skip(f"{path} is missing (scripts/test.sh installs chromium and chromium-driver)")


@pytest.fixture(scope="module")
def sb(tmp_path_factory, vault_host_resolution):
    data_dir = tmp_path_factory.mktemp("strongbox-signin")
    proc, port, creds = _start(data_dir, data_dir.parent / f"{data_dir.name}-server.log", ("--dev-clock",))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REQUESTS_CA_BUNDLE", creds["ca_cert"])
        mp.setenv("SSL_CERT_FILE", creds["ca_cert"])
        server = Strongbox(data_dir, port, creds)
        try:
            yield server
        finally:
            server.close()
            proc.terminate()
            proc.wait(timeout=15)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM)
    _require(CHROMEDRIVER)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1000,900",
                # The server's certificate comes from the test's own CA, which this throwaway
                # profile does not know.
                "--ignore-certificate-errors"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def server_now(sb) -> float:
    r = requests.post(f"{sb.authority}/_dev/clock", params={"advance_secs": 0})
    return r.json()["now_ms"] / 1000


def advance(sb, seconds: int) -> None:
    assert requests.post(f"{sb.authority}/_dev/clock", params={"advance_secs": seconds}).status_code == 200


def new_user(sb, tmp_path, *, mfa: bool = False):
    """A user with Get on a fresh vault holding one secret. Returns (upn, totp or None, vault, name, value)."""
    upn = f"{unique('u')}@contoso.example"
    pw = tmp_path / f"{upn}.pw"
    pw.write_text(PASSWORD + "\n")
    user = json.loads(sb.cli("user", "create", "--upn", upn, "--password-file", str(pw), "-o", "json").stdout)
    assert user["objectType"] == "User" and user["userPrincipalName"] == upn
    totp = None
    if mfa:
        enrolled = json.loads(sb.cli("user", "mfa", "enroll", "--user", upn, "--json").stdout)
        assert enrolled["otpauthUri"].startswith("otpauth://totp/") and len(enrolled["recoveryCodes"]) == 10
        totp = pyotp.parse_uri(enrolled["otpauthUri"])
    vault, owner = sb.owned_vault()
    sb.set_policy(vault, user["objectId"], "get")
    name, value = unique(), unique("value")
    owner.set_secret(name, value)
    return upn, totp, vault, name, value


def wait_for(driver, element_id: str):
    return WebDriverWait(driver, 30).until(EC.presence_of_element_located((By.ID, element_id)))


def sign_in(driver, shots: Path, label: str, upn: str, password: str, code: str | None = None) -> None:
    """On a sign-in page: name and password, then the code if one is asked for."""
    wait_for(driver, "username").send_keys(upn)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.save_screenshot(str(shots / f"{label}-signin.png"))
    driver.find_element(By.ID, "signin").click()
    if code is not None:
        wait_for(driver, "code").send_keys(code)
        driver.save_screenshot(str(shots / f"{label}-mfa.png"))
        driver.find_element(By.ID, "verify").click()


def enter_device_code(driver, sb, shots: Path, label: str, user_code: str) -> None:
    driver.get(f"{sb.authority}/devicelogin")
    wait_for(driver, "code").send_keys(user_code)
    driver.save_screenshot(str(shots / f"{label}-code.png"))
    driver.find_element(By.ID, "next").click()


def page_text(driver) -> str:
    """The page's text; "" while the page is being replaced (waits poll again)."""
    from selenium.common.exceptions import StaleElementReferenceException
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except StaleElementReferenceException:
        return ""


def signins(sb) -> list[dict]:
    return json.loads(sb.cli("audit", "signins", "--from", "2d", "-o", "json").stdout)


# --- the tools -------------------------------------------------------------------------------


def test_device_code_credential_reads_a_secret_as_the_user(sb, browser, shots, tmp_path):
    upn, _, vault, name, value = new_user(sb, tmp_path)
    seen = {}

    def prompt(verification_uri, user_code, expires_on):
        seen["uri"] = verification_uri
        assert verification_uri == f"{sb.authority}/devicelogin"
        enter_device_code(browser, sb, shots, "device", user_code)
        sign_in(browser, shots, "device", upn, PASSWORD)
        WebDriverWait(browser, 30).until(lambda d: "You are signed in" in page_text(d))
        browser.save_screenshot(str(shots / "device-done.png"))

    cred = DeviceCodeCredential(authority=sb.authority, disable_instance_discovery=True,
                                prompt_callback=prompt, timeout=120)
    client = SecretClient(sb.vault_url(vault), cred)
    assert client.get_secret(name).value == value
    assert seen["uri"]
    log = [r for r in signins(sb) if r["userPrincipalName"] == upn]
    assert [(r["flow"], r["result"]) for r in log] == [("device_code", "Success")]
    assert log[0]["ipAddress"] == "127.0.0.1" and "Chrome" in log[0]["userAgent"]


def test_interactive_browser_credential_with_password_and_totp(sb, browser, shots, tmp_path, monkeypatch):
    upn, totp, vault, name, value = new_user(sb, tmp_path, mfa=True)
    opened = []

    def drive(url: str) -> None:
        browser.get(url)
        sign_in(browser, shots, "interactive", upn, PASSWORD, totp.at(server_now(sb)))

    def open_in_chromium(url, *args, **kwargs):
        # azure-identity blocks on its loopback listener after opening the browser.
        opened.append(threading.Thread(target=drive, args=(url,), daemon=True))
        opened[-1].start()
        return True

    monkeypatch.setattr(webbrowser, "open", open_in_chromium)
    cred = InteractiveBrowserCredential(authority=sb.authority, disable_instance_discovery=True, timeout=120)
    client = SecretClient(sb.vault_url(vault), cred)
    assert client.get_secret(name).value == value
    assert len(opened) == 1
    opened[0].join(timeout=30)
    browser.save_screenshot(str(shots / "interactive-done.png"))
    log = [r for r in signins(sb) if r["userPrincipalName"] == upn]
    assert [(r["flow"], r["result"]) for r in log] == [("authorization_code", "Success")]
    assert log[0]["clientId"] == CLI_CLIENT_ID


def test_az_login_with_device_code_then_keyvault_secret_show(sb, browser, shots, tmp_path):
    if not AZ:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true but STRONGBOX_AZ is not set")
        pytest.skip("STRONGBOX_AZ is not set (scripts/test.sh installs the Azure CLI)")
    # The dev user: Owner of the dev subscription (management with a delegated token) and every
    # secret permission on vault dev.
    upn, password = sb.creds["user"], sb.creds["password"]
    vault, name, value = "dev", unique(), unique("value")
    sb.client("dev").set_secret(name, value)
    config = tmp_path / "az"
    config.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(config), "AZURE_CONFIG_DIR": str(config),
           "REQUESTS_CA_BUNDLE": sb.creds["ca_cert"], "PYTHONPATH": str(SITE),
           "AZURE_CORE_COLLECT_TELEMETRY": "0", "AZURE_CORE_NO_COLOR": "1"}

    def az(*args):
        proc = subprocess.run([AZ, *args], env=env, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, f"az {args}: {proc.stdout}\n{proc.stderr}"
        return proc.stdout

    az("cloud", "register", "-n", "StrongboxUsers", "--endpoint-resource-manager", sb.authority)
    az("cloud", "set", "-n", "StrongboxUsers")
    az("config", "set", "core.instance_discovery=false")
    login = subprocess.Popen([AZ, "login", "--use-device-code", "--allow-no-subscriptions", "-o", "json"],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    code = None
    lines = []
    deadline = time.monotonic() + 120
    while code is None and time.monotonic() < deadline:
        line = login.stderr.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"enter the code ([A-Z]{4}-[A-Z]{4})", line)
        code = m.group(1) if m else None
    assert code, "".join(lines)
    enter_device_code(browser, sb, shots, "az", code)
    sign_in(browser, shots, "az", upn, password)
    WebDriverWait(browser, 30).until(lambda d: "You are signed in" in page_text(d))
    out, err = login.communicate(timeout=180)
    assert login.returncode == 0, err
    accounts = json.loads(out)
    assert all(a["user"]["name"] == upn and a["user"]["type"] == "user" for a in accounts)
    assert sb.creds["subscription_id"] in [a["id"] for a in accounts], accounts
    shown = json.loads(az("keyvault", "secret", "show", "--vault-name", vault, "--name", name, "-o", "json"))
    assert shown["value"] == value
    # Graph's /me names the signed-in user: an access-policy vault grants its creator, and an
    # assignee given by UPN is found in the directory.
    me = json.loads(az("ad", "signed-in-user", "show", "-o", "json"))
    assert me["userPrincipalName"] == upn
    kv = "u" + unique()[2:14]
    created = json.loads(az("keyvault", "create", "-n", kv, "-g", "rg-users", "-l", "westeurope",
                            "--enable-rbac-authorization", "false", "-o", "json"))
    assert [p["objectId"] for p in created["properties"]["accessPolicies"]] == [me["id"]]
    ra = json.loads(az("role", "assignment", "create", "--assignee", upn, "--role", "Key Vault Secrets User",
                       "--scope", created["id"], "-o", "json"))
    assert ra["principalId"] == me["id"] and ra["principalType"] == "User"


# --- refusals ------------------------------------------------------------------------------------


def authorize_url(sb, challenge: str, redirect_uri: str, state: str = "st") -> str:
    return f"{sb.authority}/organizations/oauth2/v2.0/authorize?" + urllib.parse.urlencode({
        "client_id": CLI_CLIENT_ID, "response_type": "code", "redirect_uri": redirect_uri,
        "scope": "https://vault.azure.net/.default openid profile offline_access", "state": state,
        "code_challenge": challenge, "code_challenge_method": "S256", "nonce": "n-0S6_WzA2Mj",
    })


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(32)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def code_from_browser(sb, browser, shots, label, upn, redirect_uri) -> tuple[str, str]:
    """Signs in through the authorization endpoint (response_mode=query) and returns (code, verifier)."""
    verifier, challenge = pkce()
    browser.get(authorize_url(sb, challenge, redirect_uri))
    sign_in(browser, shots, label, upn, PASSWORD)
    WebDriverWait(browser, 30).until(lambda d: d.current_url.startswith(redirect_uri))
    query = urllib.parse.parse_qs(urllib.parse.urlparse(browser.current_url).query)
    assert query["state"] == ["st"]
    return query["code"][0], verifier


def token(sb, **form) -> requests.Response:
    return requests.post(f"{sb.authority}/organizations/oauth2/v2.0/token", data={"client_id": CLI_CLIENT_ID, **form})


def test_wrong_password_and_unknown_user_get_the_same_answer(sb, browser, shots, tmp_path):
    upn, *_ = new_user(sb, tmp_path)
    _, challenge = pkce()
    answers = []
    for who, password in ((upn, "wrong password!"), (f"nobody-{upn}", PASSWORD)):
        browser.get(authorize_url(sb, challenge, "http://localhost:47113"))
        sign_in(browser, shots, "wrong", who, password)
        answers.append(wait_for(browser, "error-title") and page_text(browser))
    browser.save_screenshot(str(shots / "wrong-password.png"))
    assert "Your account or password is incorrect." in answers[0]
    assert answers[0].replace(upn, "X") == answers[1].replace(f"nobody-{upn}", "X")
    reasons = {(r["userPrincipalName"], r["reason"]) for r in signins(sb)}
    assert (upn, "InvalidPassword") in reasons and (None, "UnknownUser") in reasons


def test_wrong_totp_is_refused_and_a_code_works_once(sb, browser, shots, tmp_path):
    upn, totp, *_ = new_user(sb, tmp_path, mfa=True)
    _, challenge = pkce()
    browser.get(authorize_url(sb, challenge, "http://localhost:47113"))
    good = totp.at(server_now(sb))
    wrong = f"{(int(good) + 1) % 1000000:06d}"
    sign_in(browser, shots, "totp", upn, PASSWORD, wrong)
    assert "The code is wrong" in wait_for(browser, "error-title").find_element(By.XPATH, "..").text
    browser.save_screenshot(str(shots / "wrong-totp.png"))
    browser.find_element(By.ID, "code").send_keys(good)
    browser.find_element(By.ID, "verify").click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.startswith("http://localhost:47113"))
    # The same code again, on a new sign-in: used already.
    browser.get(authorize_url(sb, challenge, "http://localhost:47113"))
    sign_in(browser, shots, "totp-replay", upn, PASSWORD, good)
    assert "The code is wrong" in wait_for(browser, "error-title").find_element(By.XPATH, "..").text
    assert (upn, "InvalidSecondFactor") in {(r["userPrincipalName"], r["reason"]) for r in signins(sb)}


def test_a_disabled_user_cannot_sign_in(sb, browser, shots, tmp_path):
    upn, *_ = new_user(sb, tmp_path)
    sb.cli("user", "disable", "--user", upn)
    _, challenge = pkce()
    browser.get(authorize_url(sb, challenge, "http://localhost:47113"))
    sign_in(browser, shots, "disabled", upn, PASSWORD)
    wait_for(browser, "error-title")
    assert "Your account is disabled" in page_text(browser)
    assert (upn, "UserDisabled") in {(r["userPrincipalName"], r["reason"]) for r in signins(sb)}


def test_lockout_after_five_failures_and_its_release(sb, browser, shots, tmp_path):
    upn, *_ = new_user(sb, tmp_path)
    _, challenge = pkce()
    for _ in range(5):
        browser.get(authorize_url(sb, challenge, "http://localhost:47113"))
        sign_in(browser, shots, "lockout", upn, "not the password")
        wait_for(browser, "error-title")
    browser.get(authorize_url(sb, challenge, "http://localhost:47113"))
    sign_in(browser, shots, "lockout", upn, PASSWORD)
    wait_for(browser, "error-title")
    assert "Your account is locked" in page_text(browser)
    browser.save_screenshot(str(shots / "locked.png"))
    advance(sb, 16 * 60)
    code, verifier = code_from_browser(sb, browser, shots, "released", upn, "http://localhost:47113")
    assert code
    reasons = [r["reason"] for r in signins(sb) if r["userPrincipalName"] == upn]
    assert reasons.count("InvalidPassword") == 5 and "LockedOut" in reasons and reasons[-1] == ""


def test_refresh_tokens_rotate_and_a_reuse_revokes_the_family(sb, browser, shots, tmp_path):
    upn, _, vault, name, value = new_user(sb, tmp_path)
    code, verifier = code_from_browser(sb, browser, shots, "refresh", upn, "http://localhost:47114")
    first = token(sb, grant_type="authorization_code", code=code, redirect_uri="http://localhost:47114",
                  code_verifier=verifier, scope="https://vault.azure.net/.default openid profile offline_access")
    assert first.status_code == 200, first.text
    body = first.json()
    claims = json.loads(base64.urlsafe_b64decode(body["id_token"].split(".")[1] + "=="))
    assert claims["nonce"] == "n-0S6_WzA2Mj" and claims["preferred_username"] == upn and claims["aud"] == CLI_CLIENT_ID
    info = json.loads(base64.urlsafe_b64decode(body["client_info"] + "=="))
    assert info["uid"] == claims["oid"] and info["utid"] == claims["tid"]
    access = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
    assert access["scp"] == "user_impersonation" and access["upn"] == upn and access["idtyp"] == "user"
    # The code works once.
    again = token(sb, grant_type="authorization_code", code=code, redirect_uri="http://localhost:47114",
                  code_verifier=verifier, scope="https://vault.azure.net/.default")
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    # The delegated token reads the secret.
    r = requests.get(f"{sb.vault_url(vault)}/secrets/{name}?api-version=7.6",
                     headers={"Authorization": f"Bearer {body['access_token']}"})
    assert r.status_code == 200 and r.json()["value"] == value
    rotated = token(sb, grant_type="refresh_token", refresh_token=body["refresh_token"],
                    scope="https://management.core.windows.net//.default offline_access")
    assert rotated.status_code == 200, rotated.text
    newer = rotated.json()["refresh_token"]
    assert newer != body["refresh_token"]
    reused = token(sb, grant_type="refresh_token", refresh_token=body["refresh_token"],
                   scope="https://vault.azure.net/.default")
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    family = token(sb, grant_type="refresh_token", refresh_token=newer, scope="https://vault.azure.net/.default")
    assert family.status_code == 400 and family.json()["error"] == "invalid_grant", "the family is revoked"
    assert (upn, "RefreshTokenReused") in {(r["userPrincipalName"], r["reason"]) for r in signins(sb)}


def test_redirect_uri_and_pkce_mismatches_are_refused(sb, browser, shots, tmp_path):
    upn, *_ = new_user(sb, tmp_path)
    _, challenge = pkce()
    # An unregistered redirect URI: an error page here, no redirect anywhere.
    r = requests.get(authorize_url(sb, challenge, "https://evil.example/cb"), allow_redirects=False)
    assert r.status_code == 400 and "Location" not in r.headers and "AADSTS50011" in r.text
    assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
    code, verifier = code_from_browser(sb, browser, shots, "pkce", upn, "http://localhost:47115")
    wrong_uri = token(sb, grant_type="authorization_code", code=code, redirect_uri="http://localhost:47116",
                      code_verifier=verifier, scope="https://vault.azure.net/.default")
    assert wrong_uri.status_code == 400 and "AADSTS50148" in wrong_uri.json()["error_description"]
    code, verifier = code_from_browser(sb, browser, shots, "pkce2", upn, "http://localhost:47115")
    wrong_verifier = token(sb, grant_type="authorization_code", code=code, redirect_uri="http://localhost:47115",
                           code_verifier=pkce()[0], scope="https://vault.azure.net/.default")
    assert wrong_verifier.status_code == 400 and "AADSTS501481" in wrong_verifier.json()["error_description"]
    reasons = {r["reason"] for r in signins(sb)}
    assert {"RedirectUriMismatch", "PkceMismatch"} <= reasons


def test_an_expired_device_code_is_refused(sb, browser, shots, tmp_path):
    start = requests.post(f"{sb.authority}/organizations/oauth2/v2.0/devicecode",
                          data={"client_id": CLI_CLIENT_ID, "scope": "https://vault.azure.net/.default"}).json()
    pending = token(sb, grant_type="urn:ietf:params:oauth:grant-type:device_code", device_code=start["device_code"])
    assert pending.json()["error"] == "authorization_pending"
    advance(sb, 16 * 60)
    expired = token(sb, grant_type="urn:ietf:params:oauth:grant-type:device_code", device_code=start["device_code"])
    assert expired.status_code == 400 and expired.json()["error"] == "expired_token"
    enter_device_code(browser, sb, shots, "expired", start["user_code"])
    wait_for(browser, "error-title")
    assert "That code has expired" in page_text(browser)
    assert "DeviceCodeExpired" in {r["reason"] for r in signins(sb)}


def test_a_form_post_without_its_csrf_token_is_refused(sb):
    r = requests.post(f"{sb.authority}/login", data={"flow": "x", "username": "a@b.example", "password": PASSWORD},
                      allow_redirects=False)
    assert r.status_code == 403 and "This form has expired" in r.text
    r = requests.post(f"{sb.authority}/devicelogin", data={"code": "BCDF-GHJK"})
    assert r.status_code == 403
    assert "CsrfRejected" in {r["reason"] for r in signins(sb)}


def test_the_signin_log_holds_no_password_or_code(sb):
    text = sb.cli("audit", "signins", "--from", "2d", "-o", "json").stdout
    assert PASSWORD not in text and "not the password" not in text and "wrong password!" not in text
    table = sb.cli("audit", "signins", "--from", "2d").stdout
    assert "Failure" in table and "Success" in table


def test_a_web_session_continues_a_sign_in_until_sign_out(sb, browser, shots, tmp_path):
    upn, *_ = new_user(sb, tmp_path)
    code_from_browser(sb, browser, shots, "session", upn, "http://localhost:47117")
    browser.get(f"{sb.authority}/devicelogin")  # back on our origin to read its cookies
    cookie = next(c for c in browser.get_cookies() if c["name"] == "__Host-strongbox-session")
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    _, challenge = pkce()
    browser.get(authorize_url(sb, challenge, "http://localhost:47117"))
    button = wait_for(browser, "continue")
    assert button.text == f"Continue as {upn}"
    browser.save_screenshot(str(shots / "session-continue.png"))
    button.click()
    WebDriverWait(browser, 30).until(lambda d: d.current_url.startswith("http://localhost:47117"))
    assert "code=" in browser.current_url
    browser.get(f"{sb.authority}/organizations/oauth2/v2.0/logout")
    assert "You have signed out" in page_text(browser)
    browser.get(authorize_url(sb, challenge, "http://localhost:47117"))
    wait_for(browser, "username")
    assert not browser.find_elements(By.ID, "continue")
    log = [r for r in signins(sb) if r["userPrincipalName"] == upn]
    assert [r["flow"] for r in log] == ["authorization_code", "authorization_code+session"]


def test_recovery_codes_work_once_and_the_tenant_can_require_mfa(sb, browser, shots, tmp_path):
    upn = f"{unique('u')}@contoso.example"
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    sb.cli("user", "create", "--upn", upn, "--password-file", str(pw))
    shown = sb.cli("user", "mfa", "enroll", "--user", upn).stdout
    assert "otpauth://totp/Strongbox:" in shown
    assert "▀" in shown or "▄" in shown, "a QR code on the terminal"
    recovery = re.findall(r"^  ([A-Z0-9]{5}-[A-Z0-9]{5})$", shown, re.M)
    assert len(recovery) == 10
    _, challenge = pkce()
    browser.get(authorize_url(sb, challenge, "http://localhost:47118"))
    sign_in(browser, shots, "recovery", upn, PASSWORD, recovery[0].lower())
    WebDriverWait(browser, 30).until(lambda d: d.current_url.startswith("http://localhost:47118"))
    assert json.loads(sb.cli("user", "show", "--user", upn, "-o", "json").stdout)["recoveryCodesLeft"] == 9
    browser.get(f"{sb.authority}/organizations/oauth2/v2.0/logout")
    browser.get(authorize_url(sb, challenge, "http://localhost:47118"))
    sign_in(browser, shots, "recovery-again", upn, PASSWORD, recovery[0])
    assert "The code is wrong" in wait_for(browser, "error-title").find_element(By.XPATH, "..").text

    plain, *_ = new_user(sb, tmp_path)
    sb.cli("user", "mfa", "require", "--required", "true")
    try:
        browser.get(authorize_url(sb, challenge, "http://localhost:47118"))
        sign_in(browser, shots, "mfa-required", plain, PASSWORD)
        wait_for(browser, "error-title")
        assert "requires a second factor" in page_text(browser)
    finally:
        sb.cli("user", "mfa", "require", "--required", "false")
    assert (plain, "MfaRequiredNotEnrolled") in {(r["userPrincipalName"], r["reason"]) for r in signins(sb)}


def test_revoke_sessions_and_password_reset_end_refresh_tokens(sb, browser, shots, tmp_path):
    upn, *_ = new_user(sb, tmp_path)
    for end in (("user", "revoke-sessions", "--user", upn), ("user", "reset-password", "--user", upn)):
        browser.get(f"{sb.authority}/organizations/oauth2/v2.0/logout")
        code, verifier = code_from_browser(sb, browser, shots, "revoke", upn, "http://localhost:47119")
        first = token(sb, grant_type="authorization_code", code=code, redirect_uri="http://localhost:47119",
                      code_verifier=verifier, scope="https://vault.azure.net/.default offline_access")
        assert first.status_code == 200, first.text
        if end[1] == "reset-password":
            pw = tmp_path / "new-pw"
            pw.write_text(PASSWORD)
            sb.cli(*end, "--password-file", str(pw))
        else:
            sb.cli(*end)
        refused = token(sb, grant_type="refresh_token", refresh_token=first.json()["refresh_token"],
                        scope="https://vault.azure.net/.default")
        assert refused.status_code == 400 and "revoked" in refused.json()["error_description"], refused.text
    assert (upn, "RefreshTokenRevoked") in {(r["userPrincipalName"], r["reason"]) for r in signins(sb)}
