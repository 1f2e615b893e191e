"""SDK-HMAC-SHA256 signer: the SDK's own vectors, the server-side check, and properties."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from exporter.modelarts.signing import (
    ALGORITHM,
    SignatureError,
    SignedRequest,
    canonical_query,
    canonical_uri,
    format_sdk_date,
    parse_query_string,
    sign_request,
    verify_request,
)

# The repository's copy keeps the test self-contained; the shared reference is run as well
# whenever it sits beside the checkout (as it does in CI).
_COPY = Path(__file__).parent / "data" / "signing-vectors.json"
_REFERENCE = Path(__file__).parents[2] / "shared" / "reference" / "signing-vectors.json"
_VECTOR_FILES = [_COPY, _REFERENCE]


def _load_vectors() -> list[Any]:
    params = []
    for source in (path for path in _VECTOR_FILES if path.exists()):
        document = json.loads(source.read_text(encoding="utf-8"))
        for vector in document["vectors"]:
            case = {**vector, "credentials": document["credentials"]}
            params.append(pytest.param(case, id=f"{source.parent.name}:{vector['id']}"))
    return params


VECTORS = _load_vectors()
AK = "AKEXAMPLE00000000000"
SK = "SKEXAMPLE0000000000000000000000000000000"
VECTOR_TIME = datetime(2025, 1, 1, tzinfo=UTC)
PATH = "/v1/0123456789abcdef0123456789abcdef/services"
TOKEN = "temporary-security-token"


def test_vector_copy_is_present_and_current() -> None:
    copy = json.loads(_COPY.read_text(encoding="utf-8"))
    assert len(copy["vectors"]) >= 9
    if _REFERENCE.exists():
        assert json.loads(_REFERENCE.read_text(encoding="utf-8")) == copy


@pytest.mark.parametrize("vector", VECTORS)
def test_sdk_vector(vector: dict[str, Any]) -> None:
    body = vector["body"].encode() if vector["body"] is not None else None
    signed = sign_request(
        method=vector["method"],
        host=vector["host"],
        path=vector["path"],
        query=[(name, value) for name, value in vector["query_params_as_given"]],
        headers=vector["headers_given"],
        body=body,
        access_key=vector["credentials"]["ak"],
        secret_key=vector["credentials"]["sk"],
    )
    assert signed.canonical_request == vector["canonical_request"]
    assert signed.string_to_sign == vector["string_to_sign"]
    assert signed.canonical_request.split("\n")[-2] == vector["signed_headers"]
    assert signed.headers == {
        **vector["headers_given"],
        **vector["headers_added_by_signer"],
        "Authorization": vector["authorization"],
    }
    sent = vector["path"] + (f"?{signed.query_string}" if signed.query_string else "")
    assert sent == vector["request_uri_sent"]

    # The simulator's check must accept exactly what the SDK sends.
    assert (
        verify_request(
            method=vector["method"],
            path=vector["path"],
            raw_query_string=signed.query_string,
            headers=signed.headers,
            body=body or b"",
            secret_for={vector["credentials"]["ak"]: vector["credentials"]["sk"]}.get,
            now=VECTOR_TIME,
        )
        == vector["credentials"]["ak"]
    )


def test_canonical_uri_ignores_trailing_slash_and_encodes_segments() -> None:
    assert canonical_uri("/v1/p/services") == canonical_uri("/v1/p/services/") == "/v1/p/services/"
    assert canonical_uri("/a b/c%2Fd/é~") == "/a%20b/c%2Fd/%C3%A9~/"
    assert canonical_uri("") == "/"


def test_canonical_query_encoding_and_value_types() -> None:
    query = [("tags", ["b", "a"]), ("flag", False), ("q", "x y/z,|~"), ("skip", None), ("n", 7)]
    assert canonical_query(query) == "flag=false&n=7&q=x%20y%2Fz%2C%7C~&tags=a&tags=b"
    assert canonical_query([]) == ""


def test_parse_query_string_keeps_plus_literal() -> None:
    assert parse_query_string("a=b+c&d=e%20f&g=") == [("a", "b+c"), ("d", "e f"), ("g", "")]
    assert parse_query_string("") == []


def test_format_sdk_date_converts_to_utc_and_rejects_naive() -> None:
    beijing = datetime(2025, 1, 1, 16, 0, 5, tzinfo=timezone(timedelta(hours=8)))
    assert format_sdk_date(beijing) == "20250101T080005Z"
    with pytest.raises(ValueError, match="naive"):
        format_sdk_date(datetime(2025, 1, 1))


def _sign(
    *,
    query: list[tuple[str, object]] | None = None,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    method: str = "GET",
) -> SignedRequest:
    return sign_request(
        method=method,
        host="127.0.0.1:8080",
        path=PATH,
        query=[("limit", 100), ("service_name", "demo svc/1 模型")] if query is None else query,
        headers={"Content-Type": "application/json", "X-Security-Token": TOKEN}
        if headers is None
        else headers,
        body=body,
        access_key=AK,
        secret_key=SK,
        now=VECTOR_TIME,
    )


def _verify(
    signed: SignedRequest,
    *,
    query_string: str | None = None,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    secret_key: str = SK,
    now: datetime = VECTOR_TIME,
    method: str = "GET",
) -> str:
    return verify_request(
        method=method,
        path=PATH,
        raw_query_string=signed.query_string if query_string is None else query_string,
        headers=signed.headers if headers is None else headers,
        body=body,
        secret_for={AK: secret_key}.get,
        now=now,
    )


def test_sign_adds_date_host_and_signs_security_token() -> None:
    signed = _sign()
    assert signed.headers["X-Sdk-Date"] == "20250101T000000Z"
    assert signed.headers["Host"] == "127.0.0.1:8080"
    assert signed.query_string == "limit=100&service_name=demo%20svc%2F1%20%E6%A8%A1%E5%9E%8B"
    assert signed.headers["Authorization"].startswith(
        f"{ALGORITHM} Access={AK}, SignedHeaders=content-type;host;x-sdk-date;x-security-token, "
    )
    assert _verify(signed) == AK


def test_sign_respects_headers_given_in_any_case() -> None:
    signed = _sign(headers={"host": "example.test", "x-sdk-date": "20250101T000100Z"})
    assert "Host" not in signed.headers
    assert "X-Sdk-Date" not in signed.headers
    assert "host:example.test\n" in signed.canonical_request
    with pytest.raises(ValueError, match="case"):
        _sign(headers={"Host": "a", "host": "b"})


def test_headers_added_after_signing_are_ignored() -> None:
    signed = _sign()
    later = {**signed.headers, "Accept-Encoding": "gzip", "User-Agent": "aiohttp"}
    assert _verify(signed, headers=later) == AK


def test_body_is_covered_by_the_signature() -> None:
    signed = _sign(method="POST", body=b'{"limit":1}')
    assert _verify(signed, method="POST", body=b'{"limit":1}') == AK
    with pytest.raises(SignatureError, match="signature mismatch"):
        _verify(signed, method="POST", body=b'{"limit":2}')


def test_non_json_payload_hash_rules() -> None:
    headers = {"Content-Type": "text/plain"}
    empty = _sign(method="PUT", headers=headers, body=b"")
    assert empty.headers["X-Sdk-Content-Sha256"] == "UNSIGNED-PAYLOAD"
    # Reference 7.4 step 6: an empty body hashes as empty even when the header is present.
    assert empty.canonical_request.endswith("\n" + hashlib.sha256(b"").hexdigest())
    full = _sign(method="PUT", headers=headers, body=b"hello")
    assert full.canonical_request.endswith("\nUNSIGNED-PAYLOAD")
    assert _verify(full, method="PUT", body=b"changed") == AK  # unsigned payload by design


REJECTIONS: list[Any] = [
    pytest.param({"secret_key": "S" * 40}, "signature mismatch", id="wrong-sk"),
    pytest.param({"method": "POST"}, "signature mismatch", id="tampered-method"),
    pytest.param(
        {"query_string": "limit=101&service_name=demo%20svc%2F1%20%E6%A8%A1%E5%9E%8B"},
        "signature mismatch",
        id="tampered-query",
    ),
    pytest.param(
        {"query_string": "limit=100&service_name=demo+svc%2F1+%E6%A8%A1%E5%9E%8B"},
        "query string not canonical",
        id="plus-for-space",
    ),
    pytest.param(
        {"query_string": "service_name=demo%20svc%2F1%20%E6%A8%A1%E5%9E%8B&limit=100"},
        "query string not canonical",
        id="unsorted-query",
    ),
    pytest.param(
        {"query_string": "limit=100&service_name=demo%20svc/1%20%E6%A8%A1%E5%9E%8B"},
        "query string not canonical",
        id="unencoded-slash",
    ),
    pytest.param(
        {"now": VECTOR_TIME + timedelta(minutes=15, seconds=1)}, "signature expired", id="late"
    ),
    pytest.param(
        {"now": VECTOR_TIME - timedelta(minutes=15, seconds=1)}, "signature expired", id="early"
    ),
]


@pytest.mark.parametrize(("change", "reason"), REJECTIONS)
def test_verify_rejects(change: dict[str, Any], reason: str) -> None:
    signed = _sign()
    with pytest.raises(SignatureError, match=reason) as caught:
        _verify(signed, **change)
    assert SK not in str(caught.value) and SK not in repr(caught.value)


@pytest.mark.parametrize(
    ("header", "value", "reason"),
    [
        ("X-Security-Token", "other-token", "signature mismatch"),
        ("Host", "evil.test", "signature mismatch"),
        ("X-Sdk-Date", "20250101T000001Z", "signature mismatch"),
        ("X-Sdk-Date", "yesterday", "malformed X-Sdk-Date"),
        ("Authorization", "SDK-HMAC-SHA256 Access=AK, Signature=00", "malformed Authorization"),
        ("Authorization", "Bearer abc", "malformed Authorization"),
    ],
)
def test_verify_rejects_tampered_header(header: str, value: str, reason: str) -> None:
    signed = _sign()
    with pytest.raises(SignatureError, match=reason):
        _verify(signed, headers={**signed.headers, header: value})


def test_verify_rejects_unknown_key_and_missing_headers() -> None:
    signed = _sign()
    other_ak = signed.headers["Authorization"].replace(AK, "AKOTHER")
    with pytest.raises(SignatureError, match="unknown access key"):
        _verify(signed, headers={**signed.headers, "Authorization": other_ak})
    without_token = {k: v for k, v in signed.headers.items() if k != "X-Security-Token"}
    with pytest.raises(SignatureError, match="signed header missing: x-security-token"):
        _verify(signed, headers=without_token)
    without_auth = {k: v for k, v in signed.headers.items() if k != "Authorization"}
    with pytest.raises(SignatureError, match="missing Authorization"):
        _verify(signed, headers=without_auth)


def test_verify_header_lookup_is_case_insensitive() -> None:
    signed = _sign()
    assert _verify(signed, headers={k.upper(): v for k, v in signed.headers.items()}) == AK


def test_secrets_stay_out_of_repr_and_errors() -> None:
    shown = repr(_sign())
    assert SK not in shown and TOKEN not in shown
    odd_key = "secret-part\udc80"
    with pytest.raises(ValueError, match="secret key") as caught:
        sign_request(
            method="GET",
            host="h",
            path="/",
            query=[],
            headers={},
            body=None,
            access_key=AK,
            secret_key=odd_key,
            now=VECTOR_TIME,
        )
    assert "secret-part" not in repr(caught.value.args) and caught.value.__context__ is None


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12)
_PAIRS = st.lists(st.tuples(_TEXT, _TEXT), max_size=8)


@given(pairs=_PAIRS)
def test_property_sign_then_verify_round_trips(pairs: list[tuple[str, str]]) -> None:
    signed = _sign(query=list(pairs))
    assert sorted(parse_query_string(signed.query_string)) == sorted(pairs)
    assert _verify(signed) == AK


@given(data=_PAIRS.flatmap(lambda pairs: st.tuples(st.just(pairs), st.permutations(pairs))))
def test_property_canonical_query_ignores_input_order(
    data: tuple[list[tuple[str, str]], list[tuple[str, str]]],
) -> None:
    original, shuffled = data
    assert canonical_query(list(original)) == canonical_query(list(shuffled))


@given(
    page_size=st.integers(1, 10_000),
    offset=st.integers(0, 10**9),
    start_time=st.none() | st.integers(0, 2**53),
)
def test_the_events_query_written_out_is_the_canonical_query(
    page_size: int, offset: int, start_time: int | None
) -> None:
    from exporter.modelarts.client import events_query

    params, query = events_query(page_size, offset, start_time)
    assert query == canonical_query(params)
    assert dict(params)["offset"] == offset and dict(params).get("start_time") == start_time
