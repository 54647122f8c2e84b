"""`loanflow codec-server` over real HTTP: what the Web UI and the stock CLI send to /encode and
/decode, the CORS answers the browser needs, and the refusals."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from loanflow.codec import KEY_ID, EncryptionCodec
from loanflow.codec_keys import new_entry, parse_keys
from loanflow.codec_server import CodecServer
from tests.support import TEST_CODEC_KEYS

UI = "http://127.0.0.1:8233"
APPLICATION = {"loan_id": "L1", "borrower": {"id": "B-7", "name": "Grace Hopper",
                                             "email": "grace@example.com", "country": "US"}}


@pytest.fixture
def server() -> Iterator[CodecServer]:
    codec = EncryptionCodec(parse_keys(TEST_CODEC_KEYS))
    running = CodecServer(codec, "127.0.0.1", 0, origins=[UI], auth=None).start()
    yield running
    running.stop()


def post(url: str, body: bytes, **headers: str) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def as_json(value: Any) -> dict[str, Any]:
    """One payload as the Web UI sends it: JSON of the protobuf, bytes in base64."""
    return {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
            "data": base64.b64encode(json.dumps(value).encode()).decode()}


def test_encode_then_decode_round_trips_over_http(server: CodecServer) -> None:
    status, headers, encoded = post(f"{server.url}/encode",
                                    json.dumps({"payloads": [as_json(APPLICATION)]}).encode(),
                                    Origin=UI, **{"X-Namespace": "default"})
    assert status == 200 and headers["Access-Control-Allow-Origin"] == UI
    [sealed] = encoded["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(sealed["metadata"][KEY_ID]) == b"test-current"
    assert b"Grace" not in base64.b64decode(sealed["data"])

    plain = as_json({"asset": "ETH"})  # not encrypted: comes back as it is
    status, _, decoded = post(f"{server.url}/decode",
                              json.dumps({"payloads": [sealed, plain]}).encode(), Origin=UI)
    assert status == 200
    opened, untouched = decoded["payloads"]
    assert json.loads(base64.b64decode(opened["data"])) == APPLICATION
    assert base64.b64decode(opened["metadata"]["encoding"]) == b"json/plain"
    assert untouched == plain


def test_a_payload_under_an_unknown_key_comes_back_as_it_is(server: CodecServer) -> None:
    stranger = CodecServer(EncryptionCodec(parse_keys(new_entry("stranger"))), "127.0.0.1", 0,
                           origins=[])
    sealed = json.loads(stranger.transform(
        "encode", json.dumps({"payloads": [as_json(APPLICATION)]}).encode()))["payloads"][0]
    stranger.server_close()
    status, _, decoded = post(f"{server.url}/decode", json.dumps({"payloads": [sealed]}).encode())
    assert status == 200 and decoded["payloads"] == [sealed]


def test_the_browser_preflight_is_answered_for_the_ui_origin_only(server: CodecServer) -> None:
    def preflight(origin: str) -> dict[str, str]:
        request = urllib.request.Request(f"{server.url}/decode", method="OPTIONS", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace"})
        with urllib.request.urlopen(request, timeout=10) as answer:
            assert answer.status == 204
            return dict(answer.headers)

    allowed = preflight(UI)
    assert allowed["Access-Control-Allow-Origin"] == UI
    assert "POST" in allowed["Access-Control-Allow-Methods"]
    assert "X-Namespace" in allowed["Access-Control-Allow-Headers"]
    assert "Access-Control-Allow-Origin" not in preflight("http://evil.example")


def test_bad_requests_are_refused_with_a_reason(server: CodecServer) -> None:
    status, _, answer = post(f"{server.url}/decode", b"not json")
    assert status == 400 and "payloads" in answer["error"]
    status, _, answer = post(f"{server.url}/other", b"{}")
    assert status == 404


def test_an_auth_header_is_required_when_configured() -> None:
    codec = EncryptionCodec(parse_keys(TEST_CODEC_KEYS))
    guarded = CodecServer(codec, "127.0.0.1", 0, origins=[UI], auth="Bearer s3cret").start()
    try:
        body = json.dumps({"payloads": [as_json(APPLICATION)]}).encode()
        assert post(f"{guarded.url}/encode", body)[0] == 401
        assert post(f"{guarded.url}/encode", body, Authorization="Bearer s3cret")[0] == 200
    finally:
        guarded.stop()
