"""`loanflow codec-server`: Temporal's remote codec endpoint, so the Web UI and the stock
`temporal` CLI (`--codec-endpoint`) show operators the decrypted payloads.

The protocol (Temporal's "codec server"): `POST <endpoint>/decode` or `/encode` with the JSON
form of `temporal.api.common.v1.Payloads`, `{"payloads": [{"metadata": {...}, "data": "..."}]}`
(bytes in base64), answered in the same form. The Web UI calls it from the operator's browser,
so the answers carry CORS headers for the configured UI origins and preflight requests are
answered. A payload that does not decrypt here is returned as it came (the UI then shows it
encrypted) rather than failing the whole page.

The standard library's threaded HTTP server is enough: requests are small and local, and it adds
no dependency.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from loanflow.codec import EncryptionCodec, PayloadKeyError
from loanflow.settings import Settings

log = logging.getLogger("loanflow.codec_server")

MAX_BODY = 64 * 1024 * 1024  # a page of history with large payloads, never unbounded
ALLOWED_HEADERS = "Content-Type, X-Namespace, Authorization, Caller-Type"


class CodecServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, codec: EncryptionCodec, host: str, port: int, *,
                 origins: list[str], auth: str | None = None) -> None:
        self.codec, self.origins, self.auth = codec, origins, auth
        super().__init__((host, port), _Handler)
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Settings, host: str | None = None,
                      port: int | None = None) -> CodecServer:
        auth = settings.codec_auth.get_secret_value() if settings.codec_auth else None
        return cls(EncryptionCodec(settings.keyring()), host or settings.codec_server_host,
                   settings.codec_server_port if port is None else port,
                   origins=settings.codec_origins, auth=auth)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CodecServer:
        """Serve in a background thread (the embedded stack, tests)."""
        self._thread = threading.Thread(target=self.serve_forever, name="codec-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()

    def transform(self, action: str, body: bytes) -> bytes:
        """The answer to one /encode or /decode body. Raises ValueError for a bad body."""
        try:
            request = json_format.Parse(body, Payloads(), ignore_unknown_fields=True)
        except (json_format.ParseError, UnicodeDecodeError) as err:
            raise ValueError(f"expected {{\"payloads\": [...]}}: {err}") from None
        step = self.codec.encrypt if action == "encode" else self._decrypt
        answer = Payloads(payloads=[step(p) for p in request.payloads])
        return json_format.MessageToJson(answer, indent=None).encode()

    def _decrypt(self, payload: Payload) -> Payload:
        try:
            return self.codec.decrypt(payload)
        except PayloadKeyError as err:
            log.warning("%s", err.message)
            return payload


class _Handler(BaseHTTPRequestHandler):
    server: CodecServer
    protocol_version = "HTTP/1.1"

    def do_OPTIONS(self) -> None:  # noqa: N802  (the CORS preflight)
        self._reply(HTTPStatus.NO_CONTENT, b"")

    def do_POST(self) -> None:  # noqa: N802
        action = self.path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
        if action not in ("encode", "decode"):
            return self._error(HTTPStatus.NOT_FOUND, "POST /encode or /decode")
        if self.server.auth is not None and self.headers.get("Authorization") != self.server.auth:
            return self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong Authorization header")
        length = int(self.headers.get("Content-Length") or 0)
        if not 0 < length <= MAX_BODY:
            return self._error(HTTPStatus.BAD_REQUEST, f"body must be 1 to {MAX_BODY} bytes")
        try:
            answer = self.server.transform(action, self.rfile.read(length))
        except ValueError as err:
            return self._error(HTTPStatus.BAD_REQUEST, str(err))
        self._reply(HTTPStatus.OK, answer)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._reply(status, json.dumps({"error": message}).encode())

    def _reply(self, status: HTTPStatus, body: bytes) -> None:
        self.send_response(status)
        for name, value in self._cors().items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _cors(self) -> dict[str, Any]:
        origin = (self.headers.get("Origin") or "").rstrip("/")
        allowed = self.server.origins
        if not origin or not (origin in allowed or "*" in allowed):
            return {"Vary": "Origin"}
        return {"Vary": "Origin", "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Access-Control-Allow-Methods": "POST, OPTIONS",
                "Access-Control-Allow-Headers": ALLOWED_HEADERS,
                "Access-Control-Max-Age": "600"}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("%s " + format, self.address_string(), *args)
