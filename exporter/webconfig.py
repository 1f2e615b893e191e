"""Web security from an exporter-toolkit web config file: TLS, basic auth and response headers.

`--web.config.file` uses the format every Prometheus exporter shares (exporter-toolkit's web
configuration), so a file written for node_exporter works here unchanged, except where Python's
TLS cannot do what the file asks; those are reported as config errors rather than silently
weakened: inline `cert`/`key` and `client_allowed_sans`, `client_auth_type:
RequireAnyClientCert` (see `_CLIENT_AUTH_TYPES`), TLS 1.3 names in `cipher_suites`, and more than
one curve in `curve_preferences`. Cipher suites (TLS 1.2 and below, as in Go), the one curve and
`prefer_server_cipher_suites` are applied.

The YAML itself is read by `config.read_yaml`, so every file of the exporter is parsed in one
place with the same secret-safe error messages; the schema is validated here.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import difflib
import hashlib
import hmac
import logging
import re
import secrets
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType

import bcrypt
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from exporter.config import ConfigError, read_yaml

__all__ = [
    "BasicAuthenticator",
    "LiveWebConfig",
    "TLSContextManager",
    "TLSServerConfig",
    "WebConfig",
    "WebConfigError",
    "auth_middleware",
    "load_web_config",
    "response_headers",
    "start_web_config_reloader",
]

logger = logging.getLogger(__name__)

REALM = "modelarts-exporter"

# Python's ssl module has no verify callback, so it cannot ask for a client certificate and then
# accept it unverified. RequestClientCert never rejects anyone and we never read the certificate,
# so not asking at all is equivalent. RequireAnyClientCert cannot be honoured: quietly verifying
# against a CA would be a different policy, so it is refused with a pointer to the alternative.
_CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": None,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
# exporter-toolkit's default minimum.
_DEFAULT_MIN_VERSION = "TLS12"

# cipher_suites names are Go's, which are the IANA names; OpenSSL names the same suites its own
# way. Like Go, the list governs TLS 1.2 and below: TLS 1.3 suites are not configurable in
# either (Python's set_ciphers leaves them alone too), so naming one is refused, not ignored.
_CIPHER_SUITES: Mapping[str, str] = {
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}
_TLS13_SUITES = frozenset(
    ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
)
# curve_preferences names are Go's; the values are OpenSSL's group names.
_CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
)
_TLS_UNSUPPORTED = {
    "cert": "inline certificates are not supported; use cert_file",
    "key": "inline keys are not supported; use key_file",
    "client_allowed_sans": "not supported; issue client certificates from a dedicated CA instead",
}
_HTTP_KEYS = ("headers", "http2")

# Headers that frame the message or carry authentication belong to the server; letting the file
# override them would break responses or the basic auth challenge.
_RESERVED_HEADERS = frozenset(
    name.lower()
    for name in (
        "Connection",
        "Content-Encoding",
        "Content-Length",
        "Content-Type",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "WWW-Authenticate",
    )
)
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\uffff]*")

# The variants the bcrypt library verifies correctly ($2x$ marks hashes from a buggy
# implementation); cost 04..31; 22 salt + 31 digest characters.
_BCRYPT_HASH = re.compile(r"\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")


class WebConfigError(Exception):
    """The web config file is invalid; `problems` has one line per problem, with its key path."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class TLSServerConfig:
    """Server-side TLS settings; paths are absolute or relative to the working directory."""

    cert_file: Path
    key_file: Path
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str | None = None
    max_version: str | None = None
    # OpenSSL names, in the configured order (empty: OpenSSL's defaults).
    cipher_suites: tuple[str, ...] = ()
    curve: str | None = None  # the one key-exchange group allowed (OpenSSL name)
    prefer_server_cipher_suites: bool = True


@dataclass(frozen=True)
class WebConfig:
    """The parsed web config; the defaults mean plain HTTP without authentication."""

    tls: TLSServerConfig | None = None
    # Hashes are kept out of repr so that logging the config cannot leak them.
    basic_auth_users: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))


# -- parsing --------------------------------------------------------------------------------------


def load_web_config(path: str | Path) -> WebConfig:
    """Read and validate a web config file, reporting every problem at once."""
    path = Path(path)
    try:
        raw = read_yaml(path, what="web config file")
    except ConfigError as exc:
        raise WebConfigError(exc.problems) from None
    parser = _Parser(path.absolute().parent)
    config = parser.web_config(raw)
    if config is not None and config.tls is not None:
        parser.problems.extend(_tls_file_problems(config.tls))
    if parser.problems or config is None:
        raise WebConfigError(parser.problems)
    return config


class _Parser:
    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.problems: list[str] = []

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def web_config(self, raw: object) -> WebConfig | None:
        top = self.mapping(raw, "(top level)", "", _TOP_KEYS)
        if top is None:
            return None
        tls = self.tls(top.get("tls_server_config"))
        headers = self.http(top.get("http_server_config"))
        users = self.users(top.get("basic_auth_users"))
        return WebConfig(
            tls=tls,
            basic_auth_users=MappingProxyType(users),
            headers=MappingProxyType(headers),
        )

    def mapping(
        self,
        value: object,
        label: str,
        prefix: str,
        allowed: tuple[str, ...],
        unsupported: Mapping[str, str] | None = None,
    ) -> dict[str, object] | None:
        """Check `value` is a mapping with only `allowed` keys; null counts as empty."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(label, f"expected a mapping, got {_type_name(value)}")
            return None
        result: dict[str, object] = {}
        for key, item in value.items():
            name = str(key)
            if isinstance(key, str) and unsupported and key in unsupported:
                self.problem(prefix + name, unsupported[key])
            elif not isinstance(key, str) or key not in allowed:
                hint = difflib.get_close_matches(name, allowed, n=1)
                suffix = f" (did you mean {hint[0]}?)" if hint else ""
                self.problem(prefix + name, f"unknown key{suffix}")
            else:
                result[key] = item
        return result

    def string(self, section: Mapping[str, object], path: str, key: str) -> str | None:
        """A non-empty string, or None when absent, null or empty (exporter-toolkit's "unset")."""
        value = section.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            self.problem(path, f"expected a string, got {_type_name(value)}")
            return None
        return value

    def file(self, section: Mapping[str, object], path: str, key: str) -> Path | None:
        text = self.string(section, path, key)
        return None if text is None else self.base_dir / text

    def choice(
        self, section: Mapping[str, object], path: str, key: str, choices: Mapping[str, object]
    ) -> str | None:
        text = self.string(section, path, key)
        if text is not None and text not in choices:
            self.problem(path, f"must be one of {', '.join(choices)}, got {_quote(text)}")
            return None
        return text

    def boolean(self, section: Mapping[str, object], path: str, key: str) -> None:
        value = section.get(key)
        if value is not None and not isinstance(value, bool):
            self.problem(path, f"expected a boolean, got {_type_name(value)}")

    def string_list(self, section: Mapping[str, object], path: str, key: str) -> list[str]:
        value = section.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"expected a list of strings, got {_type_name(value)}")
            return []
        items: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.problem(f"{path}[{index}]", f"expected a string, got {_type_name(item)}")
            else:
                items.append(item)
        return items

    def tls(self, raw: object) -> TLSServerConfig | None:
        label = "tls_server_config"
        section = self.mapping(raw, label, label + ".", _TLS_KEYS, _TLS_UNSUPPORTED)
        # An absent or empty block means plain HTTP, as in exporter-toolkit; anything written in
        # it means the operator wants TLS, so the certificate becomes required.
        if section is None or not raw:
            return None
        cert_file = self.file(section, f"{label}.cert_file", "cert_file")
        key_file = self.file(section, f"{label}.key_file", "key_file")
        ca_file = self.file(section, f"{label}.client_ca_file", "client_ca_file")
        for key, value in (("cert_file", cert_file), ("key_file", key_file)):
            if value is None and section.get(key) in (None, ""):
                self.problem(f"{label}.{key}", "required")
        auth_path = f"{label}.client_auth_type"
        auth = self.choice(section, auth_path, "client_auth_type", _CLIENT_AUTH_TYPES)
        if auth is None and section.get("client_auth_type") in (None, ""):
            auth = "NoClientCert"
        if auth == "RequireAnyClientCert":
            self.problem(
                auth_path,
                "RequireAnyClientCert is not supported (Python's TLS cannot require a client "
                "certificate without verifying it); use RequireAndVerifyClientCert with "
                "client_ca_file",
            )
        elif auth is not None:
            verifies = _CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE
            if verifies and ca_file is None and section.get("client_ca_file") in (None, ""):
                self.problem(f"{label}.client_ca_file", f"required when client_auth_type is {auth}")
            if auth == "NoClientCert" and ca_file is not None:
                self.problem(
                    f"{label}.client_ca_file",
                    "set without a client_auth_type that verifies client certificates "
                    "(VerifyClientCertIfGiven or RequireAndVerifyClientCert)",
                )
        min_version = self.choice(section, f"{label}.min_version", "min_version", _TLS_VERSIONS)
        max_version = self.choice(section, f"{label}.max_version", "max_version", _TLS_VERSIONS)
        if (
            min_version is not None
            and max_version is not None
            and _TLS_VERSIONS[min_version] > _TLS_VERSIONS[max_version]
        ):
            self.problem(
                f"{label}.max_version", f"must not be lower than min_version {min_version}"
            )
        suites = self.cipher_suites(section, label, min_version)
        curve = self.curve(section, label)
        self.boolean(section, f"{label}.prefer_server_cipher_suites", "prefer_server_cipher_suites")
        prefer = section.get("prefer_server_cipher_suites")
        if cert_file is None or key_file is None or auth is None or auth == "RequireAnyClientCert":
            return None
        return TLSServerConfig(
            cert_file=cert_file,
            key_file=key_file,
            client_auth_type=auth,
            # Only consulted when client certificates are verified; RequestClientCert accepts a
            # CA file in exporter-toolkit as a hint to clients, which has no effect here.
            client_ca_file=ca_file if _CLIENT_AUTH_TYPES[auth] != ssl.CERT_NONE else None,
            min_version=min_version,
            max_version=max_version,
            cipher_suites=suites,
            curve=curve,
            prefer_server_cipher_suites=prefer is not False,
        )

    def cipher_suites(
        self, section: Mapping[str, object], label: str, min_version: str | None
    ) -> tuple[str, ...]:
        path = f"{label}.cipher_suites"
        names = self.string_list(section, path, "cipher_suites")
        if not names:
            return ()
        if min_version == "TLS13":
            self.problem(path, "has no effect with min_version TLS13 (TLS 1.3 suites are fixed)")
            return ()
        suites: list[str] = []
        for index, name in enumerate(names):
            item = f"{path}[{index}]"
            if name in _TLS13_SUITES:
                self.problem(
                    item,
                    f"{name} is a TLS 1.3 suite; TLS 1.3 suites are not configurable "
                    "(in Go neither): list TLS 1.2 suites only",
                )
            elif name not in _CIPHER_SUITES:
                hint = difflib.get_close_matches(name, list(_CIPHER_SUITES), n=1)
                suffix = f" (did you mean {hint[0]}?)" if hint else ""
                self.problem(item, f"unknown cipher suite {_quote(name)}{suffix}")
            elif not _openssl_has_cipher(_CIPHER_SUITES[name]):
                self.problem(item, f"{name} is not available in this Python's OpenSSL")
            else:
                suites.append(_CIPHER_SUITES[name])
        return tuple(suites)

    def curve(self, section: Mapping[str, object], label: str) -> str | None:
        path = f"{label}.curve_preferences"
        names = self.string_list(section, path, "curve_preferences")
        if not names:
            return None
        if len(names) > 1:
            # ssl.SSLContext.set_ecdh_curve takes one group; Python 3.11 has no way to set a list.
            self.problem(
                path,
                "Python's TLS can restrict key exchange to one curve only: list exactly one "
                f"(one of {', '.join(_CURVES)})",
            )
            return None
        name = names[0]
        if name not in _CURVES:
            self.problem(f"{path}[0]", f"must be one of {', '.join(_CURVES)}, got {_quote(name)}")
            return None
        return _CURVES[name]

    def http(self, raw: object) -> dict[str, str]:
        label = "http_server_config"
        section = self.mapping(raw, label, label + ".", _HTTP_KEYS)
        if section is None:
            return {}
        # http2 is accepted for compatibility; aiohttp serves HTTP/1.1 only.
        self.boolean(section, f"{label}.http2", "http2")
        headers_path = f"{label}.headers"
        raw_headers = section.get("headers")
        if raw_headers is None:
            return {}
        if not isinstance(raw_headers, dict):
            self.problem(headers_path, f"expected a mapping, got {_type_name(raw_headers)}")
            return {}
        headers: dict[str, str] = {}
        for name, raw_value in raw_headers.items():
            path = f"{headers_path}.{name}"
            if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                self.problem(path, "not a valid HTTP header name")
                continue
            if name.lower() in _RESERVED_HEADERS:
                self.problem(path, "cannot be configured (the server sets it)")
                continue
            # YAML turns `X-XSS-Protection: 0` into a number; the operator meant the text.
            value = raw_value
            if isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                self.problem(path, f"expected a string, got {_type_name(value)}")
            elif not _HEADER_VALUE.fullmatch(value):
                self.problem(path, "must not contain control characters such as line breaks")
            else:
                headers[name] = value
        return headers

    def users(self, raw: object) -> dict[str, str]:
        label = "basic_auth_users"
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.problem(
                label, f"expected a mapping of user name to bcrypt hash, got {_type_name(raw)}"
            )
            return {}
        users: dict[str, str] = {}
        for user, hashed in raw.items():
            if not isinstance(user, str):
                self.problem(
                    f"{label}.{user}",
                    f"user name must be a string, got {_type_name(user)} (quote it)",
                )
                continue
            path = f"{label}.{user}"
            if not user:
                self.problem(label, "user names must not be empty")
            elif ":" in user:
                # Basic credentials split at the first colon, so such a user could never log in.
                self.problem(path, 'user name must not contain ":"')
            # Never echo the value: it is a password hash, or worse a password pasted by mistake.
            elif not isinstance(hashed, str):
                self.problem(path, f"expected a bcrypt hash string, got {_type_name(hashed)}")
            elif not _BCRYPT_HASH.fullmatch(hashed):
                self.problem(
                    path, "not a valid bcrypt hash (expected $2a$, $2b$ or $2y$, cost 04-31)"
                )
            else:
                users[user] = hashed
        return users


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _quote(text: str) -> str:
    shown = text if len(text) <= 40 else text[:40] + "..."
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _os_reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    if isinstance(exc, UnicodeDecodeError):
        return "not UTF-8 text"
    return type(exc).__name__


def _ssl_reason(exc: ssl.SSLError) -> str:
    return exc.reason or exc.strerror or str(exc)


# -- TLS ------------------------------------------------------------------------------------------


def _refuse_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key and hang the
    # daemon; an empty answer makes it fail instead.
    return b""


def _tls_file_problems(cfg: TLSServerConfig) -> list[str]:
    """Check the certificate, key and CA files can be read and used; one line per problem."""
    label = "tls_server_config"
    problems: list[str] = []
    files = [("cert_file", cfg.cert_file), ("key_file", cfg.key_file)]
    if cfg.client_ca_file is not None:
        files.append(("client_ca_file", cfg.client_ca_file))
    readable: set[str] = set()
    for key, path in files:
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            problems.append(f"{label}.{key}: cannot read {path}: {_os_reason(exc)}")
        else:
            readable.add(key)
    scratch = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    if "cert_file" in readable:
        try:
            # Parses the certificates alone, so a bad certificate is not blamed on the key.
            scratch.load_verify_locations(cafile=cfg.cert_file)
        except ssl.SSLError as exc:
            problems.append(
                f"{label}.cert_file: no usable PEM certificate in {cfg.cert_file}: "
                f"{_ssl_reason(exc)}"
            )
            readable.discard("cert_file")
    if {"cert_file", "key_file"} <= readable:
        try:
            scratch.load_cert_chain(cfg.cert_file, cfg.key_file, password=_refuse_password)
        except ssl.SSLError as exc:
            problems.append(
                f"{label}.key_file: cannot be used with cert_file ({_ssl_reason(exc)}); "
                "it must be the unencrypted PEM private key of the certificate"
            )
    if "client_ca_file" in readable and cfg.client_ca_file is not None:
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_verify_locations(cafile=cfg.client_ca_file)
        except ssl.SSLError as exc:
            problems.append(
                f"{label}.client_ca_file: no usable PEM certificate in {cfg.client_ca_file}: "
                f"{_ssl_reason(exc)}"
            )
    return problems


def _openssl_has_cipher(name: str) -> bool:
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ciphers(name)
    except ssl.SSLError:
        return False
    return True


def _build_context(cfg: TLSServerConfig) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = _TLS_VERSIONS[cfg.min_version or _DEFAULT_MIN_VERSION]
    if cfg.max_version is not None:
        context.maximum_version = _TLS_VERSIONS[cfg.max_version]
    if cfg.cipher_suites:
        context.set_ciphers(":".join(cfg.cipher_suites))
    if cfg.curve is not None:
        context.set_ecdh_curve(cfg.curve)
    if cfg.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    context.load_cert_chain(cfg.cert_file, cfg.key_file, password=_refuse_password)
    verify_mode = _CLIENT_AUTH_TYPES.get(cfg.client_auth_type)
    if verify_mode is None:
        raise WebConfigError(
            [f"tls_server_config.client_auth_type: {cfg.client_auth_type} is not supported"]
        )
    if verify_mode != ssl.CERT_NONE:
        if cfg.client_ca_file is None:
            raise WebConfigError(["tls_server_config.client_ca_file: required"])
        context.load_verify_locations(cafile=cfg.client_ca_file)
    context.verify_mode = verify_mode
    return context


_FileState = tuple[int, int, bytes] | None


class TLSContextManager:
    """Builds the server SSLContext and reloads cert/key/CA when their files change.

    The server keeps one SSLContext for its whole life (`context`). Each reload builds a complete
    new context from the files and, only if that succeeds, makes it the active one; the served
    context's SNI callback, which OpenSSL runs on every handshake (with or without SNI), moves each
    new connection onto the active context. Compared with calling `load_cert_chain` on the served
    context this is atomic (a key that does not match, or a pair caught half-rotated, never
    reaches a handshake) and it can also drop CAs removed from `client_ca_file`, which
    `load_verify_locations` can only ever add to. Protocol versions and the client verify mode
    stay those of the served context, and they do not change between reloads.
    """

    def __init__(self, cfg: TLSServerConfig) -> None:
        problems = _tls_file_problems(cfg)
        if problems:
            raise WebConfigError(problems)
        self._cfg = cfg
        self._state = self._file_state()
        self._failed_state: tuple[_FileState, ...] | None = None
        self._context = _build_context(cfg)
        self._active = self._context
        self._context.sni_callback = self._select_context

    @property
    def context(self) -> ssl.SSLContext:
        """The context to serve with, for the server's whole lifetime."""
        return self._context

    @property
    def config(self) -> TLSServerConfig:
        return self._cfg

    def retarget(self, cfg: TLSServerConfig) -> None:
        """Read the certificate, key and CA from other files from now on (the next
        `reload_if_changed` loads them); everything else is fixed for the server's life."""
        if (
            replace(
                cfg,
                cert_file=self._cfg.cert_file,
                key_file=self._cfg.key_file,
                client_ca_file=self._cfg.client_ca_file,
            )
            != self._cfg
        ):
            raise ValueError("only the file paths can change without a restart")
        self._cfg = cfg
        self._state = ()
        self._failed_state = None

    def reload_if_changed(self) -> bool:
        """Re-read the files if they changed; True when new connections now use the new ones."""
        state = self._file_state()
        if state in (self._state, self._failed_state):
            return False
        problems = _tls_file_problems(self._cfg)
        new_context: ssl.SSLContext | None = None
        if not problems:
            try:
                new_context = _build_context(self._cfg)
            except (OSError, WebConfigError) as exc:
                problems = [str(exc)]
        if new_context is None:
            # Remembered so that a file left broken is reported once, not at every interval.
            self._failed_state = state
            logger.warning(
                "tls reload failed, still serving the previous certificate",
                extra={"problems": "; ".join(problems)},
            )
            return False
        self._active = new_context
        self._state = state
        self._failed_state = None
        logger.info("tls certificate reloaded", extra={"cert_file": str(self._cfg.cert_file)})
        return True

    def _select_context(
        self, connection: ssl.SSLObject, server_name: str | None, initial: ssl.SSLContext
    ) -> None:
        active = self._active
        if active is not initial:
            connection.context = active

    def _file_state(self) -> tuple[_FileState, ...]:
        paths = [self._cfg.cert_file, self._cfg.key_file]
        if self._cfg.client_ca_file is not None:
            paths.append(self._cfg.client_ca_file)
        return tuple(_stat_file(path) for path in paths)


def _stat_file(path: Path) -> _FileState:
    # The content digest catches a rewrite that keeps size and (coarse) mtime; mtime and size
    # catch the cases where hashing alone would be fine too but are cheap to carry along.
    try:
        info = path.stat()
        digest = hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size, digest)


class LiveWebConfig:
    """The web config file as last read successfully, re-read when it changes.

    exporter-toolkit reads the file for every connection, so a revoked password stops working at
    once; here the file is checked every few seconds (`start_web_config_reloader`) and users and
    headers are swapped in whole when it parses. A file that does not parse is reported once and
    changes nothing. Certificates are re-read when their files change; whether TLS is on, its
    versions, client auth, suites and curve are fixed at start (the listening socket and the
    served context are), so a change to those is reported as needing a restart.
    """

    def __init__(self, path: str | Path, config: WebConfig) -> None:
        self._path = Path(path)
        self._state = _stat_file(self._path)
        self._failed_state: _FileState = None
        self.tls = TLSContextManager(config.tls) if config.tls is not None else None
        self._config = config
        self.headers: Mapping[str, str] = config.headers
        self.authenticator = _authenticator(config.basic_auth_users)

    def attach(self, app: web.Application) -> None:
        """Basic auth (first of the app's middlewares) and the response headers."""
        app.middlewares.insert(0, auth_middleware(lambda: self.authenticator))
        app.on_response_prepare.append(response_headers(lambda: self.headers))

    def read_if_changed(self) -> WebConfig | None:
        """The new config when the file changed and parses (blocking: run it in a thread)."""
        state = _stat_file(self._path)
        if state in (self._state, self._failed_state):
            return None
        try:
            config = load_web_config(self._path)
        except WebConfigError as exc:
            self._failed_state = state
            logger.warning(
                "web config reload failed, keeping the previous users, headers and TLS",
                extra={"problems": "; ".join(exc.problems)},
            )
            return None
        self._state = state
        self._failed_state = None
        return config

    def apply(self, config: WebConfig) -> None:
        """Swap in users and headers; point TLS at new files (on the event loop)."""
        old = self._config
        if dict(config.basic_auth_users) != dict(old.basic_auth_users):
            self.authenticator = _authenticator(config.basic_auth_users)
        self.headers = config.headers
        kept = old.tls
        if (config.tls is None) != (self.tls is None):
            logger.warning("web config: turning TLS on or off needs a restart")
        elif self.tls is not None and config.tls is not None and config.tls != self.tls.config:
            try:
                self.tls.retarget(config.tls)
                kept = config.tls
            except ValueError:
                logger.warning(
                    "web config: TLS versions, client auth, cipher suites and curve apply at "
                    "start; restart to use the new ones (certificate files still re-read)"
                )
        self._config = replace(config, tls=kept)
        logger.info(
            "web config reloaded",
            extra={"users": len(config.basic_auth_users), "headers": len(config.headers)},
        )


def _authenticator(users: Mapping[str, str]) -> BasicAuthenticator | None:
    return BasicAuthenticator(users) if users else None


def start_web_config_reloader(live: LiveWebConfig, interval: float = 2.0) -> asyncio.Task[None]:
    """Check the web config file and the certificate files every `interval` seconds."""
    if interval <= 0:
        raise ValueError("interval must be greater than 0")
    return asyncio.create_task(_watch_web_config(live, interval), name="web-config-reloader")


async def _watch_web_config(live: LiveWebConfig, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            config = await asyncio.to_thread(live.read_if_changed)
            if config is not None:
                live.apply(config)
            if live.tls is not None:
                await asyncio.to_thread(live.tls.reload_if_changed)
        except Exception:
            logger.exception("web config reload crashed; will retry")


# -- basic auth -----------------------------------------------------------------------------------

# bcrypt calls run in the default executor, which aiohttp also uses for DNS lookups; a flood of
# bad credentials must not be able to occupy all of its threads.
_MAX_CONCURRENT_BCRYPT = 2


class BasicAuthenticator:
    """Checks `Authorization: Basic` credentials against bcrypt hashes.

    A verified password is remembered per user as a salted SHA-256 digest of user, password and
    hash (never the password itself), so routine scrapes skip bcrypt. The cache holds at most one
    entry per configured user, and only successes enter it. Unknown users still pay for one bcrypt
    computation, so response times do not reveal which user names exist.
    """

    def __init__(self, users: Mapping[str, str]) -> None:
        self._hashes = {user: hashed.encode("ascii") for user, hashed in users.items()}
        self._verified: dict[str, bytes] = {}
        self._salt = secrets.token_bytes(32)
        cost = max((int(hashed[4:6]) for hashed in users.values()), default=4)
        # Syntactically valid, matches no password: bcrypt still does the full work.
        self._dummy_hash = f"$2b${cost:02d}${'.' * 53}".encode("ascii")
        self._bcrypt_slots = asyncio.Semaphore(_MAX_CONCURRENT_BCRYPT)

    def check(self, authorization_header: str | None) -> bool:
        """True when the header carries valid credentials; may run bcrypt on this thread."""
        credentials = _parse_basic(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        digest = self._digest(user, password)
        if self._is_cached(user, digest):
            return True
        return self._verify_and_remember(user, password, digest)

    async def check_async(self, authorization_header: str | None) -> bool:
        """Like `check`, but bcrypt runs in a worker thread; a cache hit needs none."""
        credentials = _parse_basic(authorization_header)
        if credentials is None:
            return False
        user, password = credentials
        digest = self._digest(user, password)
        if self._is_cached(user, digest):
            return True
        async with self._bcrypt_slots:
            return await asyncio.to_thread(self._verify_and_remember, user, password, digest)

    def _digest(self, user: str, password: bytes) -> bytes:
        hashed = self._hashes.get(user, b"")
        hasher = hashlib.sha256(self._salt)
        # Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in (user.encode("utf-8"), password, hashed):
            hasher.update(len(part).to_bytes(8, "big"))
            hasher.update(part)
        return hasher.digest()

    def _is_cached(self, user: str, digest: bytes) -> bool:
        cached = self._verified.get(user)
        return cached is not None and hmac.compare_digest(cached, digest)

    def _verify_and_remember(self, user: str, password: bytes, digest: bytes) -> bool:
        hashed = self._hashes.get(user)
        try:
            matched = bcrypt.checkpw(password, hashed if hashed is not None else self._dummy_hash)
        except ValueError:
            # bcrypt refuses passwords over 72 bytes; such a password cannot match any hash.
            matched = False
        if matched and hashed is not None:
            self._verified[user] = digest
            return True
        return False


def _parse_basic(header: str | None) -> tuple[str, bytes] | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip(), validate=True)
        user_bytes, colon, password = decoded.partition(b":")
        user = user_bytes.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not colon:
        return None
    return user, password


# -- middlewares ----------------------------------------------------------------------------------


def auth_middleware(
    authenticator: BasicAuthenticator | Callable[[], BasicAuthenticator | None],
    *,
    open_paths: frozenset[str] = frozenset({"/-/healthy"}),
) -> Middleware:
    """Answer 401 unless the request has valid basic auth credentials or its path is open.

    `authenticator` may be a callable giving the current one (None: no users, all open)."""
    challenge = {hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"'}
    current = authenticator if callable(authenticator) else (lambda: authenticator)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        checker = current()
        if checker is None or request.path in open_paths:
            return await handler(request)
        if await checker.check_async(request.headers.get(hdrs.AUTHORIZATION)):
            return await handler(request)
        logger.debug("unauthorized request", extra={"path": request.path})
        return web.Response(status=401, text="Unauthorized", headers=challenge)

    return middleware


def response_headers(
    headers: Mapping[str, str] | Callable[[], Mapping[str, str]],
) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An `on_response_prepare` handler adding the configured headers to every response:
    streamed ones (/metrics), 401s and router errors included, since all are prepared.

    `headers` may be a callable giving the current ones."""
    fixed = None if callable(headers) else dict(headers)
    current = headers if callable(headers) else (lambda: fixed or {})

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(current())

    return on_prepare
