"""Huawei Cloud AK/SK request signing (``SDK-HMAC-SHA256``), client and server side.

Pure: no I/O, and the clock is read only when ``sign_request`` gets no ``now``. The client sends
``path + "?" + query_string`` verbatim, because an HTTP library that re-encodes the query after
signing (yarl turns ``%2F`` into ``/`` and spaces into ``+``) breaks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote, unquote

ALGORITHM = "SDK-HMAC-SHA256"

_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
_SIGNED_PAYLOAD_TYPES = ("application/json", "application/bson")
_AUTHORIZATION = re.compile(
    rf"{ALGORITHM} Access=([^,\s]+), SignedHeaders=([^,\s]+), Signature=([0-9a-f]{{64}})"
)


class SignatureError(Exception):
    """A request whose signature cannot be verified; message says why and never contains the SK."""


@dataclass(frozen=True, repr=False)
class SignedRequest:
    """The headers and query string to send, plus the intermediate strings for debugging."""

    headers: dict[str, str]
    query_string: str
    canonical_request: str
    string_to_sign: str

    def __repr__(self) -> str:
        # Header values and the canonical request may carry an X-Security-Token.
        return f"SignedRequest(headers=[{', '.join(self.headers)}], query={self.query_string!r})"


_UNRESERVED = re.compile(r"[A-Za-z0-9_.~-]*")


def _encode(text: str) -> str:
    # Most names and values (ids, numbers) need no escaping: skip quote(), the costlier path.
    if _UNRESERVED.fullmatch(text):
        return text
    return quote(text, safe="")  # leaves exactly A-Z a-z 0-9 - _ . ~ alone


def canonical_uri(path: str) -> str:
    """Percent-encode each path segment and end with '/', as the signer sees the path."""
    uri = "/".join(_encode(unquote(segment)) for segment in path.split("/"))
    return uri if uri.endswith("/") else uri + "/"


def _query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def canonical_query(params: Sequence[tuple[str, object]]) -> str:
    """Sorted, percent-encoded query; bools become true/false, lists repeat the name, None drops."""
    pairs: list[tuple[str, str]] = []
    for name, value in params:
        values = value if isinstance(value, list | tuple) else [value]
        pairs.extend((name, _query_value(item)) for item in values if item is not None)
    return "&".join(f"{_encode(name)}={_encode(value)}" for name, value in sorted(pairs))


def parse_query_string(raw: str) -> list[tuple[str, str]]:
    """Split and percent-decode a raw query string; '+' stays a literal plus."""
    pairs = []
    for piece in raw.split("&") if raw else []:
        name, _, value = piece.partition("=")
        pairs.append((unquote(name), unquote(value)))
    return pairs


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: give a timezone-aware moment")
    return moment.astimezone(UTC)


def format_sdk_date(moment: datetime) -> str:
    """Format a timezone-aware moment as X-Sdk-Date (20250101T000000Z)."""
    return _as_utc(moment).strftime(_DATE_FORMAT)


def _hmac_hex(secret_key: str, message: str) -> str:
    # A lone surrogate is the only thing UTF-8 cannot encode; checking first keeps the key out
    # of a UnicodeEncodeError, whose args (and any chained traceback) would carry all of it.
    if any("\ud800" <= char <= "\udfff" for char in secret_key):
        raise ValueError("secret key is not valid text (lone surrogate)")
    return hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).hexdigest()


def _payload_hash(body: bytes | None, lower_headers: Mapping[str, str]) -> str:
    if not body:
        return _EMPTY_SHA256
    declared = lower_headers.get("x-sdk-content-sha256")
    return declared if declared is not None else hashlib.sha256(body).hexdigest()


def _string_to_sign(
    method: str,
    path: str,
    query_string: str,
    *,
    lower: Mapping[str, str],
    names: list[str],
    body: bytes | None,
) -> tuple[str, str]:
    """Return (canonical request, string to sign); ``lower`` maps lowercased names to values."""
    header_lines = "".join(f"{name}:{lower[name].strip()}\n" for name in names)
    canonical = "\n".join(
        [
            method.upper(),
            canonical_uri(path),
            query_string,
            header_lines,
            ";".join(names),
            _payload_hash(body, lower),
        ]
    )
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return canonical, f"{ALGORITHM}\n{lower['x-sdk-date']}\n{digest}"


def sign_request(
    *,
    method: str,
    host: str,
    path: str,
    query: Sequence[tuple[str, object]],
    headers: Mapping[str, str],
    body: bytes | None,
    access_key: str,
    secret_key: str,
    now: datetime | None = None,
) -> SignedRequest:
    """Sign one request; every header given (bar names with '_') is signed."""
    sent = dict(headers)
    lower = {name.lower(): value for name, value in sent.items()}
    if len(lower) != len(sent):
        raise ValueError("header names differ only in case")
    additions = {"X-Sdk-Date": format_sdk_date(now or datetime.now(UTC)), "Host": host}
    content_type = lower.get("content-type")
    if content_type is not None and not content_type.startswith(_SIGNED_PAYLOAD_TYPES):
        additions = {"X-Sdk-Content-Sha256": _UNSIGNED_PAYLOAD, **additions}
    for name, value in additions.items():
        if name.lower() not in lower:  # a caller's own X-Sdk-Date is signed as-is
            sent[name] = lower[name.lower()] = value

    names = sorted(name for name in lower if "_" not in name)
    query_string = canonical_query(query)
    canonical, string_to_sign = _string_to_sign(
        method, path, query_string, lower=lower, names=names, body=body
    )
    sent["Authorization"] = (
        f"{ALGORITHM} Access={access_key}, "
        f"SignedHeaders={';'.join(names)}, "
        f"Signature={_hmac_hex(secret_key, string_to_sign)}"
    )
    return SignedRequest(sent, query_string, canonical, string_to_sign)


def verify_request(
    *,
    method: str,
    path: str,
    raw_query_string: str,
    headers: Mapping[str, str],
    body: bytes,
    secret_for: Callable[[str], str | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> str:
    """Check a signed request as the API gateway would; return its access key.

    ``path`` is the request path as received, still percent-encoded (aiohttp's ``raw_path``
    without the query); the decoded path also works unless a segment holds an encoded '%' or '/'.
    """
    lower: dict[str, str] = {}
    for name, value in headers.items():
        lower.setdefault(name.lower(), value)
    authorization = lower.get("authorization")
    if authorization is None:
        raise SignatureError("missing Authorization header")
    match = _AUTHORIZATION.fullmatch(authorization.strip())
    if match is None:
        raise SignatureError("malformed Authorization header")
    access_key, signed_list, signature = match.groups()

    secret_key = secret_for(access_key)
    if secret_key is None:
        raise SignatureError("unknown access key")

    try:
        signed_at = datetime.strptime(lower.get("x-sdk-date", ""), _DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SignatureError("missing or malformed X-Sdk-Date header") from None
    if abs(_as_utc(now) - signed_at) > max_skew:
        raise SignatureError("signature expired")

    if raw_query_string != canonical_query(parse_query_string(raw_query_string)):
        raise SignatureError("query string not canonical")

    names = signed_list.split(";")
    missing = [name for name in names if name not in lower]
    if missing:
        raise SignatureError(f"signed header missing: {';'.join(missing)}")

    _, string_to_sign = _string_to_sign(
        method, path, raw_query_string, lower=lower, names=names, body=body
    )
    expected = _hmac_hex(secret_key, string_to_sign)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise SignatureError("signature mismatch")
    return access_key
