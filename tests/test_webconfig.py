"""Web config (exporter-toolkit format), TLS and its rotation, basic auth, headers; real sockets."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import re
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from exporter.webconfig import (
    BasicAuthenticator,
    LiveWebConfig,
    TLSContextManager,
    TLSServerConfig,
    WebConfig,
    WebConfigError,
    auth_middleware,
    load_web_config,
    response_headers,
    start_web_config_reloader,
)

PASSWORD = "correct horse battery staple"
# Cost 4 keeps the suite fast; the code path is the same for any cost.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
OTHER_HASH = bcrypt.hashpw(b"another password", bcrypt.gensalt(rounds=4)).decode()
TIMEOUT = aiohttp.ClientTimeout(total=10)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# -- certificates and files -----------------------------------------------------------------------


@dataclass
class Pki:
    dir: Path
    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    cert_file: Path
    key_file: Path
    ca_file: Path


def write_leaf(leaf: trustme.LeafCert, cert_file: Path, key_file: Path) -> None:
    cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    key_file.write_bytes(leaf.private_key_pem.bytes())


def der(leaf: trustme.LeafCert) -> bytes:
    return ssl.PEM_cert_to_DER_cert(leaf.cert_chain_pems[0].bytes().decode())


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(tmp_path: Path, ca: trustme.CA) -> Pki:
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("prometheus@example.org")
    pki = Pki(
        dir=tmp_path,
        ca=ca,
        server=server,
        client=client,
        cert_file=tmp_path / "server.crt",
        key_file=tmp_path / "server.key",
        ca_file=tmp_path / "client-ca.crt",
    )
    write_leaf(server, pki.cert_file, pki.key_file)
    ca.cert_pem.write_to_path(str(pki.ca_file))
    return pki


def write_config(directory: Path, text: str) -> Path:
    path = directory / "web-config.yml"
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(directory: Path, text: str) -> tuple[str, ...]:
    with pytest.raises(WebConfigError) as info:
        load_web_config(write_config(directory, text))
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


# -- a real server and a real client --------------------------------------------------------------


async def ok_handler(request: web.Request) -> web.Response:
    return web.Response(text=f"ok {request.path}")


async def streamed_handler(request: web.Request) -> web.StreamResponse:
    # Headers go out at prepare(), before any middleware sees the response (as /metrics).
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"streamed")
    return response


def make_app(*middlewares: Any) -> web.Application:
    app = web.Application(middlewares=list(middlewares))
    app.router.add_get("/", ok_handler)
    app.router.add_get("/stream", streamed_handler)
    app.router.add_get("/metrics", ok_handler)
    app.router.add_get("/-/healthy", ok_handler)
    return app


@asynccontextmanager
async def serve(app: web.Application, context: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
        await site.start()
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def client_context(
    trust: trustme.CA | None,
    cert: trustme.LeafCert | None = None,
    *,
    max_version: ssl.TLSVersion | None = None,
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if trust is not None:
        trust.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    if max_version is not None:
        context.maximum_version = max_version
    return context


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str


async def fetch(
    url: str, context: ssl.SSLContext | None = None, authorization: str | None = None
) -> Reply:
    """One request on a fresh connection (a new session each time, so no pooling)."""
    headers = {"Authorization": authorization} if authorization else {}
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(url, ssl=context or False, headers=headers) as response,
    ):
        text = await response.text()
        return Reply(response.status, dict(response.headers), text)


async def served_cert(port: int, trust: trustme.CA, server_name: str = "127.0.0.1") -> bytes:
    """The certificate a new connection is shown; Python sends no SNI for an IP address."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client_context(trust), server_hostname=server_name
    )
    try:
        peer: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 200")
        return peer
    finally:
        writer.close()
        await writer.wait_closed()


# -- parsing --------------------------------------------------------------------------------------


def test_empty_file_is_a_valid_config_with_nothing_enabled(tmp_path: Path) -> None:
    for text in ("", "# nothing here\n", "{}\n"):
        config = load_web_config(write_config(tmp_path, text))
        assert config == WebConfig()
        assert config.tls is None
        assert dict(config.basic_auth_users) == {}
        assert dict(config.headers) == {}


def test_full_config_with_relative_paths_resolved_against_the_file(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_web_config(
        write_config(
            pki.dir,
            f"""
tls_server_config:
  cert_file: server.crt
  key_file: {pki.key_file}
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: client-ca.crt
  min_version: TLS12
  max_version: TLS13
  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]
  curve_preferences: [X25519]
  prefer_server_cipher_suites: false
http_server_config:
  http2: false
  headers:
    Strict-Transport-Security: max-age=31536000
    X-XSS-Protection: 0
basic_auth_users:
  prometheus: "{HASH}"
""",
        )
    )
    assert config.tls == TLSServerConfig(
        cert_file=pki.cert_file,
        key_file=pki.key_file,
        client_auth_type="RequireAndVerifyClientCert",
        client_ca_file=pki.ca_file,
        min_version="TLS12",
        max_version="TLS13",
        cipher_suites=("ECDHE-RSA-AES128-GCM-SHA256",),
        curve="X25519",
        prefer_server_cipher_suites=False,
    )
    assert dict(config.headers) == {
        "Strict-Transport-Security": "max-age=31536000",
        "X-XSS-Protection": "0",
    }
    assert dict(config.basic_auth_users) == {"prometheus": HASH}
    assert HASH not in repr(config)


def test_empty_tls_block_means_plain_http(tmp_path: Path) -> None:
    assert load_web_config(write_config(tmp_path, "tls_server_config:\n")).tls is None
    assert load_web_config(write_config(tmp_path, "tls_server_config: {}\n")).tls is None


def test_unreadable_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError) as info:
        load_web_config(tmp_path / "absent.yml")
    assert info.value.problems == (
        f"{tmp_path / 'absent.yml'}: cannot read web config file: No such file or directory",
    )
    (problem,) = problems_of(tmp_path, "basic_auth_users: [\n")
    assert re.search(r":2:\d+: invalid YAML", problem), problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "tls_server_config:\n  key_file: server.key\n",
            ["tls_server_config.cert_file: required"],
            id="cert-required",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
            ["tls_server_config.cert_file: cannot read {dir}/missing.crt: No such file"],
            id="cert-missing",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.crt\n",
            ["tls_server_config.key_file: cannot be used with cert_file"],
            id="key-is-not-a-key",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
            ["tls_server_config.cert_file: no usable PEM certificate in {dir}/server.key"],
            id="cert-is-not-a-cert",
        ),
        pytest.param(
            "tls_sever_config: {}\n",
            ["tls_sever_config: unknown key (did you mean tls_server_config?)"],
            id="unknown-top-key",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_ca: ca.crt\n",
            ["tls_server_config.client_ca: unknown key (did you mean client_ca_file?)"],
            id="unknown-tls-key",
        ),
        pytest.param(
            "http_server_config:\n  header: {}\n",
            ["http_server_config.header: unknown key (did you mean headers?)"],
            id="unknown-http-key",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireClientCert\n",
            [
                "tls_server_config.client_auth_type: must be one of NoClientCert, "
                "RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven, "
                'RequireAndVerifyClientCert, got "RequireClientCert"'
            ],
            id="bad-client-auth-type",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            [
                "tls_server_config.client_ca_file: required when client_auth_type is "
                "RequireAndVerifyClientCert"
            ],
            id="verify-needs-ca",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: VerifyClientCertIfGiven\n",
            [
                "tls_server_config.client_ca_file: required when client_auth_type is "
                "VerifyClientCertIfGiven"
            ],
            id="verify-if-given-needs-ca",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_ca_file: client-ca.crt\n",
            ["tls_server_config.client_ca_file: set without a client_auth_type that verifies"],
            id="ca-without-client-auth",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  client_auth_type: RequireAnyClientCert\n  client_ca_file: client-ca.crt\n",
            ["tls_server_config.client_auth_type: RequireAnyClientCert is not supported"],
            id="require-any-unsupported",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  min_version: TLS9\n",
            [
                "tls_server_config.min_version: must be one of TLS10, TLS11, TLS12, TLS13, "
                'got "TLS9"'
            ],
            id="bad-min-version",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  min_version: TLS13\n  max_version: TLS12\n",
            ["tls_server_config.max_version: must not be lower than min_version TLS13"],
            id="max-below-min",
        ),
        pytest.param(
            "tls_server_config:\n  cert: '-----BEGIN CERTIFICATE-----'\n"
            "  cert_file: server.crt\n  key_file: server.key\n",
            ["tls_server_config.cert: inline certificates are not supported; use cert_file"],
            id="inline-cert",
        ),
        pytest.param(
            "tls_server_config: [server.crt]\n",
            ["tls_server_config: expected a mapping, got list"],
            id="tls-wrong-type",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: 5\n  key_file: server.key\n",
            ["tls_server_config.cert_file: expected a string, got number"],
            id="cert-file-wrong-type",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
            "  cipher_suites: TLS_AES_128_GCM_SHA256\n  curve_preferences: [1]\n"
            "  prefer_server_cipher_suites: sometimes\n",
            [
                "tls_server_config.cipher_suites: expected a list of strings, got string",
                "tls_server_config.curve_preferences[0]: expected a string, got number",
                "tls_server_config.prefer_server_cipher_suites: expected a boolean, got string",
            ],
            id="ignored-fields-still-typed",
        ),
        pytest.param(
            "http_server_config:\n  http2: 'yes'\n  headers: [X-Frame-Options]\n",
            [
                "http_server_config.http2: expected a boolean, got string",
                "http_server_config.headers: expected a mapping, got list",
            ],
            id="http-wrong-types",
        ),
        pytest.param(
            "http_server_config:\n  headers:\n    Content-Type: text/plain\n"
            '    X-Bad: "a\\r\\nSet-Cookie: x=1"\n    Bad Name: x\n    X-List: [1]\n',
            [
                "http_server_config.headers.Content-Type: cannot be configured",
                "http_server_config.headers.X-Bad: must not contain control characters",
                "http_server_config.headers.Bad Name: not a valid HTTP header name",
                "http_server_config.headers.X-List: expected a string, got list",
            ],
            id="bad-headers",
        ),
        pytest.param(
            "basic_auth_users: [prometheus]\n",
            ["basic_auth_users: expected a mapping of user name to bcrypt hash, got list"],
            id="users-wrong-type",
        ),
        pytest.param(
            "basic_auth_users:\n  alice: 12345\n  1234: x\n  'a:b': x\n",
            [
                "basic_auth_users.alice: expected a bcrypt hash string, got number",
                "basic_auth_users.1234: user name must be a string, got number (quote it)",
                'basic_auth_users.a:b: user name must not contain ":"',
            ],
            id="users-wrong-entries",
        ),
        pytest.param(
            "",
            [],
            id="empty",
        ),
    ],
)
def test_config_errors_name_the_key_path(pki: Pki, text: str, expected: list[str]) -> None:
    if not expected:
        load_web_config(write_config(pki.dir, text))
        return
    problems = problems_of(pki.dir, text)
    assert len(problems) == len(expected), problems
    for problem, start in zip(problems, expected, strict=True):
        assert problem.startswith(start.format(dir=pki.dir)), (problem, start)


def test_every_problem_is_reported_at_once(pki: Pki) -> None:
    problems = problems_of(
        pki.dir,
        "tls_server_config:\n  key_file: nope.key\n  client_auth_type: Nope\n"
        "basic_auth_users:\n  alice: nope\nextra: 1\n",
    )
    assert [problem.split(":")[0] for problem in problems] == [
        "extra",
        "tls_server_config.cert_file",
        "tls_server_config.client_auth_type",
        "basic_auth_users.alice",
    ]


def test_missing_key_file_is_reported_with_its_path(pki: Pki) -> None:
    pki.key_file.unlink()
    problems = problems_of(
        pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    assert problems == (
        f"tls_server_config.key_file: cannot read {pki.key_file}: No such file or directory",
    )


def test_encrypted_key_is_an_error_not_a_terminal_prompt(pki: Pki) -> None:
    key = serialization.load_pem_private_key(pki.server.private_key_pem.bytes(), password=None)
    pki.key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret passphrase"),
        )
    )
    problems = problems_of(
        pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    assert len(problems) == 1
    assert problems[0].startswith("tls_server_config.key_file: cannot be used with cert_file")


def test_mismatched_key_is_an_error(pki: Pki) -> None:
    other = pki.ca.issue_cert("127.0.0.1")
    pki.key_file.write_bytes(other.private_key_pem.bytes())
    problems = problems_of(
        pki.dir, "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
    )
    assert len(problems) == 1
    assert problems[0].startswith("tls_server_config.key_file: cannot be used with cert_file")


def test_passwords_and_hashes_never_appear_in_errors(tmp_path: Path) -> None:
    plaintext = "hunter2-plaintext-pasted-by-mistake"
    truncated_hash = HASH[:-5]
    problems = problems_of(
        tmp_path,
        f'basic_auth_users:\n  alice: "{plaintext}"\n  bob: "{truncated_hash}"\n'
        f'  carol: "{HASH}x"\n',
    )
    assert [problem.split(":")[0] for problem in problems] == [
        "basic_auth_users.alice",
        "basic_auth_users.bob",
        "basic_auth_users.carol",
    ]
    text = "\n".join(problems)
    assert plaintext not in text
    assert truncated_hash[7:] not in text
    # A YAML error on the very line of a valid hash must not quote that line.
    problems = problems_of(tmp_path, f'basic_auth_users:\n  alice: "{HASH}" ]\n')
    assert re.search(r":2:\d+: invalid YAML", problems[0]), problems[0]
    assert HASH[7:] not in "\n".join(problems)


def test_bcrypt_hash_variants_from_common_tools_are_accepted(tmp_path: Path) -> None:
    variants = {"b": HASH, "a": HASH.replace("$2b$", "$2a$"), "y": HASH.replace("$2b$", "$2y$")}
    users = "".join(f'  {name}: "{hashed}"\n' for name, hashed in variants.items())
    config = load_web_config(write_config(tmp_path, f"basic_auth_users:\n{users}"))
    authenticator = BasicAuthenticator(config.basic_auth_users)
    for name in variants:
        assert authenticator.check(basic(name, PASSWORD)), name


# -- TLS ------------------------------------------------------------------------------------------


def tls_config(pki: Pki, **overrides: Any) -> TLSServerConfig:
    values: dict[str, Any] = {"cert_file": pki.cert_file, "key_file": pki.key_file}
    values.update(overrides)
    return TLSServerConfig(**values)


async def test_tls_serves_https_and_refuses_plain_http(pki: Pki) -> None:
    manager = TLSContextManager(tls_config(pki))
    async with serve(make_app(), manager.context) as port:
        reply = await fetch(f"https://127.0.0.1:{port}/metrics", client_context(pki.ca))
        assert (reply.status, reply.text) == (200, "ok /metrics")
        assert await served_cert(port, pki.ca) == der(pki.server)
        with pytest.raises(aiohttp.ClientError):
            await fetch(f"http://127.0.0.1:{port}/metrics")
        # Verification is on in clients, so a stranger's certificate would not be accepted.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(f"https://127.0.0.1:{port}/metrics", client_context(trustme.CA()))


async def test_require_and_verify_client_cert(pki: Pki) -> None:
    manager = TLSContextManager(
        tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki.ca_file)
    )
    url = ""
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        reply = await fetch(url, client_context(pki.ca, pki.client))
        assert reply.status == 200
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, client_context(pki.ca))
        stranger = trustme.CA().issue_cert("intruder@example.org")
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, client_context(pki.ca, stranger))


async def test_verify_client_cert_if_given(pki: Pki) -> None:
    manager = TLSContextManager(
        tls_config(pki, client_auth_type="VerifyClientCertIfGiven", client_ca_file=pki.ca_file)
    )
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        assert (await fetch(url, client_context(pki.ca))).status == 200
        assert (await fetch(url, client_context(pki.ca, pki.client))).status == 200
        stranger = trustme.CA().issue_cert("intruder@example.org")
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, client_context(pki.ca, stranger))


async def test_min_version_tls13_rejects_a_tls12_only_client(pki: Pki) -> None:
    manager = TLSContextManager(tls_config(pki, min_version="TLS13"))
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        assert (await fetch(url, client_context(pki.ca))).status == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(url, client_context(pki.ca, max_version=ssl.TLSVersion.TLSv1_2))


async def test_max_version_tls12_rejects_a_tls13_only_client(pki: Pki) -> None:
    manager = TLSContextManager(tls_config(pki, max_version="TLS12"))
    tls13_only = client_context(pki.ca)
    tls13_only.minimum_version = ssl.TLSVersion.TLSv1_3
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        assert (await fetch(url, client_context(pki.ca))).status == 200
        with pytest.raises(aiohttp.ClientConnectorError):
            await fetch(url, tls13_only)


def test_manager_refuses_broken_files_at_startup(pki: Pki) -> None:
    pki.key_file.write_text("not a key")
    with pytest.raises(WebConfigError) as info:
        TLSContextManager(tls_config(pki))
    assert info.value.problems[0].startswith("tls_server_config.key_file: cannot be used")


async def test_rotated_certificate_is_served_to_new_connections(pki: Pki) -> None:
    manager = TLSContextManager(tls_config(pki))
    served = manager.context
    new_ca = trustme.CA()
    new_server = new_ca.issue_cert("127.0.0.1")
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        assert manager.reload_if_changed() is False
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch(url, client_context(new_ca))

        write_leaf(new_server, pki.cert_file, pki.key_file)
        assert manager.reload_if_changed() is True
        assert manager.context is served

        assert (await fetch(url, client_context(new_ca))).status == 200
        # By IP, so without SNI; the test below covers a client that sends a name.
        assert await served_cert(port, new_ca) == der(new_server)
        assert manager.reload_if_changed() is False


async def test_rotated_certificate_with_sni(pki: Pki) -> None:
    manager = TLSContextManager(tls_config(pki))
    new_server = pki.ca.issue_cert("localhost")
    async with serve(make_app(), manager.context) as port:
        before = await served_cert(port, pki.ca, "localhost")
        assert before == der(pki.server)
        write_leaf(new_server, pki.cert_file, pki.key_file)
        assert manager.reload_if_changed() is True
        assert await served_cert(port, pki.ca, "localhost") == der(new_server)


async def test_broken_rotation_keeps_the_old_certificate(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    manager = TLSContextManager(tls_config(pki))
    replacement = pki.ca.issue_cert("127.0.0.1")
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        # Half-way through a rotation: new certificate, old key.
        replacement.cert_chain_pems[0].write_to_path(str(pki.cert_file))
        with caplog.at_level(logging.WARNING, logger="exporter.webconfig"):
            assert manager.reload_if_changed() is False
        assert await served_cert(port, pki.ca) == der(pki.server)
        assert [record.getMessage() for record in caplog.records] == [
            "tls reload failed, still serving the previous certificate"
        ]
        assert "KEY_VALUES_MISMATCH" in getattr(caplog.records[0], "problems", "")

        # A garbage key: still the old certificate, and the key text is not logged.
        caplog.clear()
        pki.key_file.write_text("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n")
        with caplog.at_level(logging.WARNING, logger="exporter.webconfig"):
            assert manager.reload_if_changed() is False
            # The same broken state is reported once, not at every interval.
            assert manager.reload_if_changed() is False
        assert len(caplog.records) == 1
        assert "c2VjcmV0" not in caplog.text
        assert "c2VjcmV0" not in str(vars(caplog.records[0]))
        assert await served_cert(port, pki.ca) == der(pki.server)
        assert (await fetch(url, client_context(pki.ca))).status == 200

        replacement.private_key_pem.write_to_path(str(pki.key_file))
        assert manager.reload_if_changed() is True
        assert await served_cert(port, pki.ca) == der(replacement)


async def test_client_ca_rotation_drops_the_old_ca(pki: Pki) -> None:
    manager = TLSContextManager(
        tls_config(pki, client_auth_type="RequireAndVerifyClientCert", client_ca_file=pki.ca_file)
    )
    new_ca = trustme.CA()
    new_client = new_ca.issue_cert("prometheus@example.org")
    async with serve(make_app(), manager.context) as port:
        url = f"https://127.0.0.1:{port}/"
        assert (await fetch(url, client_context(pki.ca, pki.client))).status == 200
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, client_context(pki.ca, new_client))

        new_ca.cert_pem.write_to_path(str(pki.ca_file))
        assert manager.reload_if_changed() is True
        assert (await fetch(url, client_context(pki.ca, new_client))).status == 200
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, client_context(pki.ca, pki.client))


async def test_tls_reloader_task_picks_up_rotation_and_cancels(pki: Pki) -> None:
    path = write_config(pki.dir, "tls_server_config: {cert_file: server.crt, key_file: server.key}")
    live = LiveWebConfig(path, load_web_config(path))
    manager = live.tls
    assert manager is not None
    replacement = pki.ca.issue_cert("127.0.0.1")
    loop = asyncio.get_running_loop()
    reloaded = asyncio.Event()
    original = manager.reload_if_changed

    def watched_reload() -> bool:
        # Runs in a worker thread, hence the thread-safe hand-off to the loop.
        result = original()
        if result:
            loop.call_soon_threadsafe(reloaded.set)
        return result

    manager.reload_if_changed = watched_reload  # type: ignore[method-assign]
    async with serve(make_app(), manager.context) as port:
        task = start_web_config_reloader(live, interval=0.01)
        try:
            write_leaf(replacement, pki.cert_file, pki.key_file)
            async with asyncio.timeout(5):
                await reloaded.wait()
            assert await served_cert(port, pki.ca) == der(replacement)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert task.cancelled()
    with pytest.raises(ValueError, match="interval"):
        start_web_config_reloader(live, interval=0)


# -- basic auth -----------------------------------------------------------------------------------


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every hash bcrypt.checkpw is called with, in order."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return bool(real(password, hashed))

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    return calls


def test_basic_auth_accepts_only_the_right_password() -> None:
    authenticator = BasicAuthenticator({"prometheus": HASH, "other": OTHER_HASH})
    assert authenticator.check(basic("prometheus", PASSWORD))
    assert authenticator.check("basic " + basic("other", "another password")[6:])
    assert not authenticator.check(basic("prometheus", "wrong"))
    assert not authenticator.check(basic("prometheus", "another password"))
    assert not authenticator.check(basic("nobody", PASSWORD))
    assert not authenticator.check(basic("prometheus", PASSWORD + "x" * 100))
    for header in (
        None,
        "",
        "Basic",
        "Bearer " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode(),
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"prometheus").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:" + PASSWORD.encode()).decode(),
    ):
        assert not authenticator.check(header), header


def test_verified_credentials_are_cached_and_failures_are_not(checkpw_calls: list[bytes]) -> None:
    authenticator = BasicAuthenticator({"prometheus": HASH})
    right = basic("prometheus", PASSWORD)
    assert authenticator.check(right)
    assert len(checkpw_calls) == 1
    assert authenticator.check(right)
    assert len(checkpw_calls) == 1

    assert not authenticator.check(basic("prometheus", "wrong"))
    assert not authenticator.check(basic("prometheus", "wrong"))
    assert len(checkpw_calls) == 3
    # A failure does not evict or poison the verified entry.
    assert authenticator.check(right)
    assert len(checkpw_calls) == 3

    # Nothing kept in the authenticator holds the password itself.
    assert PASSWORD.encode() not in repr(vars(authenticator)).encode()


def test_unknown_users_cost_one_bcrypt_at_the_configured_cost(checkpw_calls: list[bytes]) -> None:
    authenticator = BasicAuthenticator({"prometheus": HASH})
    assert not authenticator.check(basic("nobody", PASSWORD))
    assert not authenticator.check(basic("nobody", PASSWORD))
    assert len(checkpw_calls) == 2
    assert all(hashed.startswith(b"$2b$04$") for hashed in checkpw_calls)


def test_cache_is_bounded_by_the_number_of_users(checkpw_calls: list[bytes]) -> None:
    authenticator = BasicAuthenticator({"prometheus": HASH})
    for attempt in range(50):
        authenticator.check(basic(f"user{attempt}", "x"))
        authenticator.check(basic("prometheus", f"guess{attempt}"))
    assert authenticator.check(basic("prometheus", PASSWORD))
    assert len(vars(authenticator)["_verified"]) == 1


async def test_check_async_uses_a_thread_only_on_a_cache_miss(
    checkpw_calls: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[Callable[..., object]] = []
    real_to_thread = asyncio.to_thread

    async def counting_to_thread(function: Callable[..., Any], /, *args: Any) -> Any:
        threads.append(function)
        return await real_to_thread(function, *args)

    monkeypatch.setattr(asyncio, "to_thread", counting_to_thread)
    authenticator = BasicAuthenticator({"prometheus": HASH})
    right = basic("prometheus", PASSWORD)
    assert await authenticator.check_async(right)
    assert (len(threads), len(checkpw_calls)) == (1, 1)
    assert await authenticator.check_async(right)
    assert (len(threads), len(checkpw_calls)) == (1, 1)
    assert not await authenticator.check_async(basic("prometheus", "wrong"))
    assert (len(threads), len(checkpw_calls)) == (2, 2)
    assert not await authenticator.check_async(None)
    assert (len(threads), len(checkpw_calls)) == (2, 2)


# -- middlewares over HTTP ------------------------------------------------------------------------


async def test_auth_middleware_over_http() -> None:
    authenticator = BasicAuthenticator({"prometheus": HASH})
    async with serve(make_app(auth_middleware(authenticator))) as port:
        base = f"http://127.0.0.1:{port}"
        for path in ("/metrics", "/", "/no-such-page"):
            reply = await fetch(base + path)
            assert reply.status == 401, path
            assert reply.text == "Unauthorized"
            assert reply.headers["WWW-Authenticate"] == 'Basic realm="modelarts-exporter"'
        reply = await fetch(base + "/metrics", authorization=basic("prometheus", "wrong"))
        assert (reply.status, reply.text) == (401, "Unauthorized")
        reply = await fetch(base + "/metrics", authorization=basic("prometheus", PASSWORD))
        assert (reply.status, reply.text) == (200, "ok /metrics")
        reply = await fetch(base + "/-/healthy")
        assert (reply.status, reply.text) == (200, "ok /-/healthy")
        # The open path is matched exactly, not by prefix.
        assert (await fetch(base + "/-/healthy/../metrics")).status == 401


async def test_configured_headers_are_added_to_every_response() -> None:
    headers = {"X-Frame-Options": "deny", "Strict-Transport-Security": "max-age=31536000"}
    authenticator = BasicAuthenticator({"prometheus": HASH})
    app = make_app(auth_middleware(authenticator))
    app.on_response_prepare.append(response_headers(headers))
    async with serve(app) as port:
        base = f"http://127.0.0.1:{port}"
        right = basic("prometheus", PASSWORD)
        for path, authorization, status in [
            ("/metrics", right, 200),
            ("/stream", right, 200),
            ("/metrics", None, 401),
            ("/-/healthy", None, 200),
            ("/no-such-page", right, 404),
        ]:
            reply = await fetch(base + path, authorization=authorization)
            assert reply.status == status, path
            for name, value in headers.items():
                assert reply.headers.get(name) == value, (path, name)


async def test_web_config_file_end_to_end(pki: Pki) -> None:
    path = write_config(
        pki.dir,
        f"""
tls_server_config:
  cert_file: server.crt
  key_file: server.key
  client_auth_type: RequireAndVerifyClientCert
  client_ca_file: client-ca.crt
http_server_config:
  headers:
    X-Content-Type-Options: nosniff
basic_auth_users:
  prometheus: {HASH}
""",
    )
    config = load_web_config(path)
    assert config.tls is not None
    manager = TLSContextManager(config.tls)
    app = make_app(auth_middleware(BasicAuthenticator(config.basic_auth_users)))
    app.on_response_prepare.append(response_headers(config.headers))
    async with serve(app, manager.context) as port:
        url = f"https://127.0.0.1:{port}/metrics"
        with_cert = client_context(pki.ca, pki.client)
        reply = await fetch(url, with_cert, basic("prometheus", PASSWORD))
        assert (reply.status, reply.headers["X-Content-Type-Options"]) == (200, "nosniff")
        assert (await fetch(url, with_cert)).status == 401
        with pytest.raises(aiohttp.ClientError):
            await fetch(url, client_context(pki.ca), basic("prometheus", PASSWORD))


# -- cipher suites and curves ---------------------------------------------------------------------


def test_cipher_suite_names_match_openssl_standard_names() -> None:
    """Our Go (IANA) -> OpenSSL table against OpenSSL's own: `openssl ciphers -stdname`."""
    from exporter.webconfig import _CIPHER_SUITES, _openssl_has_cipher

    available = {go: ossl for go, ossl in _CIPHER_SUITES.items() if _openssl_has_cipher(ossl)}
    assert len(available) >= 13  # every suite Go calls secure, at least
    listing = subprocess.run(
        ["openssl", "ciphers", "-stdname", ":".join(available.values())],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    standard = {}
    for line in listing.splitlines():
        iana, dash, ossl, *_ = line.split()
        assert dash == "-"
        standard[ossl] = iana
    for go, ossl in available.items():
        assert standard.get(ossl) == go, (go, ossl)


@pytest.mark.parametrize(
    ("tls", "expected"),
    [
        (
            "  cipher_suites: [TLS_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites[0]: TLS_AES_128_GCM_SHA256 is a TLS 1.3 suite; "
            "TLS 1.3 suites are not configurable (in Go neither): list TLS 1.2 suites only",
        ),
        (
            "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA25]\n",
            'tls_server_config.cipher_suites[0]: unknown cipher suite "TLS_ECDHE_RSA_WITH_AES_'
            '128_GCM_SHA25" (did you mean TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256?)',
        ),
        (
            "  cipher_suites: [TLS_RSA_WITH_RC4_128_SHA]\n",
            "tls_server_config.cipher_suites[0]: TLS_RSA_WITH_RC4_128_SHA is not available in "
            "this Python's OpenSSL",
        ),
        (
            "  min_version: TLS13\n  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n",
            "tls_server_config.cipher_suites: has no effect with min_version TLS13 "
            "(TLS 1.3 suites are fixed)",
        ),
        (
            "  curve_preferences: [X25519, CurveP256]\n",
            "tls_server_config.curve_preferences: Python's TLS can restrict key exchange to one "
            "curve only: list exactly one (one of CurveP256, CurveP384, CurveP521, X25519)",
        ),
        (
            "  curve_preferences: [X25519MLKEM768]\n",
            "tls_server_config.curve_preferences[0]: must be one of CurveP256, CurveP384, "
            'CurveP521, X25519, got "X25519MLKEM768"',
        ),
    ],
)
def test_cipher_suites_and_curves_that_cannot_be_honoured_are_refused(
    pki: Pki, tls: str, expected: str
) -> None:
    text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + tls
    assert problems_of(pki.dir, text) == (expected,)


async def _handshake(port: int, context: ssl.SSLContext) -> str:
    """The cipher a new connection negotiates (raises when the handshake fails)."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
    try:
        cipher: str = writer.get_extra_info("cipher")[0]
        return cipher
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()


def _tls12_client(pki: Pki, ciphers: str | None = None, curve: str | None = None) -> ssl.SSLContext:
    context = client_context(pki.ca, max_version=ssl.TLSVersion.TLSv1_2)
    if ciphers is not None:
        context.set_ciphers(ciphers)
    if curve is not None:
        context.set_ecdh_curve(curve)
    return context


def _served(pki: Pki, tls: str) -> TLSContextManager:
    text = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n" + tls
    config = load_web_config(write_config(pki.dir, text))
    assert config.tls is not None
    return TLSContextManager(config.tls)


async def test_cipher_suites_are_honoured_in_order_of_preference(pki: Pki) -> None:
    aes128 = "ECDHE-ECDSA-AES128-GCM-SHA256"
    aes256 = "ECDHE-ECDSA-AES256-GCM-SHA384"
    only_256 = "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n"
    async with serve(make_app(), _served(pki, "").context) as port:
        assert await _handshake(port, _tls12_client(pki, aes128)) == aes128  # default: allowed
    async with serve(make_app(), _served(pki, only_256).context) as port:
        assert await _handshake(port, _tls12_client(pki)) == aes256
        with pytest.raises((ssl.SSLError, ConnectionError)):  # refused
            await _handshake(port, _tls12_client(pki, aes128))
        # TLS 1.3 suites are not governed by the list (as in Go)
        assert await _handshake(port, client_context(pki.ca)) == "TLS_AES_256_GCM_SHA384"
    both = (
        "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,"
        " TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
    )
    client_prefers_128 = f"{aes128}:{aes256}"
    async with serve(make_app(), _served(pki, both).context) as port:
        assert await _handshake(port, _tls12_client(pki, client_prefers_128)) == aes256
    not_ours = both + "  prefer_server_cipher_suites: false\n"
    async with serve(make_app(), _served(pki, not_ours).context) as port:
        assert await _handshake(port, _tls12_client(pki, client_prefers_128)) == aes128


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
async def test_curve_preferences_restrict_key_exchange(pki: Pki, version: ssl.TLSVersion) -> None:
    # An RSA certificate: in TLS 1.2 an ECDSA one would also tie the handshake to its curve.
    rsa = trustme.CA(key_type=trustme.KeyType.RSA)
    leaf = rsa.issue_cert("127.0.0.1", key_type=trustme.KeyType.RSA)
    write_leaf(leaf, pki.cert_file, pki.key_file)

    def client(curve: str) -> ssl.SSLContext:
        context = client_context(rsa, max_version=version)
        context.set_ecdh_curve(curve)
        return context

    async with serve(make_app(), _served(pki, "").context) as port:
        assert await _handshake(port, client("prime256v1"))  # default: allowed
    async with serve(make_app(), _served(pki, "  curve_preferences: [CurveP384]\n").context) as p:
        assert await _handshake(p, client("secp384r1"))
        with pytest.raises((ssl.SSLError, ConnectionError)):  # refused
            await _handshake(p, client("prime256v1"))
