"""Every payload loanflow writes to Temporal is encrypted (AES-GCM), so a borrower's name,
e-mail and country are not readable by whoever can open the Web UI or the raw history.

An encrypted payload is `binary/encrypted` with the key id in its metadata and
`nonce (12 bytes) || ciphertext+tag` as data; the plaintext is the whole original payload
(metadata and data), so nothing about it shows. The key id is bound to the ciphertext as
associated data: relabelling a payload with another key id makes it undecryptable.

Reading:
- payloads that are not encrypted (what the stock `temporal` CLI sends: `json/plain`) pass
  through unchanged, so operators can keep driving loans with it;
- a payload whose key id this process does not have, or that does not decrypt, becomes a
  `binary/undecryptable` payload instead of an exception inside the codec. Decoding happens for a
  whole workflow activation at once: an exception there would fail every workflow task of the
  loan (one bad signal freezing it). Converting the placeholder raises `PayloadKeyError` (a
  non-retryable ApplicationError naming the key id) for just that value: a client gets one clear
  error, a signal is dropped and logged, an update refused, a query fails, a start fails the
  workflow with that message; an activity attempt fails with it as the cause and is retried (a
  worker that lacks a new key during a rotation leaves the task to one that has it).
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticPayloadConverter, pydantic_data_converter
from temporalio.converter import (CompositePayloadConverter, DataConverter,
                                 EncodingPayloadConverter, PayloadCodec)
from temporalio.exceptions import ApplicationError

from loanflow.codec_keys import KeyRing

ENCRYPTED = b"binary/encrypted"
UNDECRYPTABLE = b"binary/undecryptable"
KEY_ID = "encryption-key-id"
REASON = "loanflow-reason"
NONCE_SIZE = 12
ERROR_TYPE = "PayloadKeyError"


class PayloadKeyError(ApplicationError, ValueError):
    """A payload this process cannot decrypt: unknown key id, wrong key or altered data. Also a
    ValueError, so code that turns raw payloads into values and catches bad input catches it."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=ERROR_TYPE, non_retryable=True)


class EncryptionCodec(PayloadCodec):
    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keyring.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decode_one(p) for p in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        """With the current key. An already encrypted payload is left as it is."""
        if payload.metadata.get("encoding") == ENCRYPTED:
            return payload
        key_id = self.keyring.current
        nonce = os.urandom(NONCE_SIZE)
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), key_id.encode())
        return Payload(metadata={"encoding": ENCRYPTED, KEY_ID: key_id.encode()},
                       data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        """The original payload; not encrypted ones as they are. Raises PayloadKeyError."""
        if payload.metadata.get("encoding") != ENCRYPTED:
            return payload
        key_id = payload.metadata.get(KEY_ID, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadKeyError(
                f"payload encrypted with key id {key_id!r}, which is not configured here "
                f"(keys: {', '.join(self.keyring.ids)}): add it to LOANFLOW_CODEC_KEYS")
        try:
            plain = cipher.decrypt(payload.data[:NONCE_SIZE], payload.data[NONCE_SIZE:],
                                   key_id.encode())
            return Payload.FromString(plain)
        except (InvalidTag, ValueError):
            raise PayloadKeyError(
                f"payload for key id {key_id!r} does not decrypt: a different key under that "
                "id, or the payload was altered") from None

    def decode_one(self, payload: Payload) -> Payload:
        try:
            return self.decrypt(payload)
        except PayloadKeyError as err:
            # Not logged here: the error surfaces once, where the value is used.
            return Payload(metadata={"encoding": UNDECRYPTABLE, REASON: err.message.encode()})


class UndecryptablePayloadConverter(EncodingPayloadConverter):
    """Turns the codec's placeholder into the error, for the one value that needs it."""

    @property
    def encoding(self) -> str:
        return UNDECRYPTABLE.decode()

    def to_payload(self, value: Any) -> Payload | None:
        return None

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        raise PayloadKeyError(payload.metadata.get(REASON, b"undecryptable payload").decode())


@functools.cache
def encoding_converters() -> tuple[EncodingPayloadConverter, ...]:
    """The pydantic converter's encodings and the placeholder's, built once per process."""
    return (*PydanticPayloadConverter().converters.values(), UndecryptablePayloadConverter())


class LoanflowPayloadConverter(CompositePayloadConverter):
    """The pydantic converter (Decimals as JSON strings) that also reads the placeholder.

    The SDK builds a payload converter for every workflow run it holds, so with a converter of
    its own each cached loan kept a private pydantic JSON converter with a TypeAdapter cache
    (seven adapters, a schema validator and serializers of its own: about 6 KiB a loan, 30 MiB
    for a worker's 5,000 loans) and paid to build them on every start or replay. The encodings
    hold no state of a run's (the adapter cache is keyed by type and thread-safe), so every
    instance shares one set."""

    def __init__(self) -> None:
        super().__init__(*encoding_converters())


def encrypted_converter(keyring: KeyRing) -> DataConverter:
    return dataclasses.replace(pydantic_data_converter,
                               payload_converter_class=LoanflowPayloadConverter,
                               payload_codec=EncryptionCodec(keyring))
