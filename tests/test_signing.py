"""SDK-HMAC-SHA256 signer: the SDK's own vectors, the server-side check, and properties."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from exporter.modelarts.signing import (
    sign_request,
    verify_request,
)

# The repository's copy keeps the test self-contained; the shared reference is checked too
# whenever it sits beside the checkout, so the two cannot drift apart unnoticed.
_VECTOR_FILES = [
    Path(__file__).parent / "data" / "signing-vectors.json",
    Path(__file__).parents[2] / "shared" / "reference" / "signing-vectors.json",
]


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


def test_every_vector_file_is_loaded() -> None:
    assert _VECTOR_FILES[0].exists()
    assert len(VECTORS) >= 9


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
