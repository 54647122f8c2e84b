"""The payload encryption keys: `id:base64key` entries, the first one current.

    LOANFLOW_CODEC_KEYS="k2026b:<base64 of 32 bytes>,k2026a:<base64 of 32 bytes>"

Payloads are encrypted with the first (current) key and decrypted with whichever key their
metadata names, so rotation is: add the new key first, keep the old ones after it until no
history that is still read was written with them. Without the variable the keys come from a
file in the same format (LOANFLOW_CODEC_KEYS_FILE, by default var/codec.keys), which the
embedded stack (`loanflow up`) creates with a fresh key so a development machine needs nothing.

Messages here never contain key material, only key ids.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
KEY_SIZES = (16, 24, 32)  # AES-128, AES-192, AES-256


class KeyConfigError(ValueError):
    """Key settings that cannot be used; the message names the problem, never the key."""


@dataclass(frozen=True)
class KeyRing:
    current: str
    keys: dict[str, bytes]

    @property
    def ids(self) -> list[str]:
        return list(self.keys)


def parse_keys(text: str) -> KeyRing:
    """`id:base64key` entries separated by commas or new lines (`#` starts a comment)."""
    entries = [e.strip() for line in text.splitlines() for e in line.split("#", 1)[0].split(",")]
    keys: dict[str, bytes] = {}
    for number, entry in enumerate((e for e in entries if e), start=1):
        key_id, sep, encoded = entry.partition(":")
        key_id = key_id.strip()
        if not sep or not KEY_ID.match(key_id):
            raise KeyConfigError(
                f"entry {number} is not `id:base64key` with an id of letters, digits, `_.-`")
        if key_id in keys:
            raise KeyConfigError(f"key id {key_id!r} appears twice")
        keys[key_id] = _decode_key(key_id, encoded.strip())
    if not keys:
        raise KeyConfigError("no key given (expected `id:base64key[,id:base64key...]`)")
    return KeyRing(current=next(iter(keys)), keys=keys)


def _decode_key(key_id: str, encoded: str) -> bytes:
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyConfigError(f"key {key_id!r} is not valid base64") from None
    if len(key) not in KEY_SIZES:
        raise KeyConfigError(
            f"key {key_id!r} is {len(key)} bytes; AES-GCM needs 16, 24 or 32 (32 recommended)")
    return key


def new_entry(key_id: str | None = None) -> str:
    """A fresh random 256-bit key as one `id:base64key` entry."""
    key_id = key_id or f"dev-{secrets.token_hex(4)}"
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(32)).decode()}"


def read_file(path: Path) -> KeyRing:
    try:
        text = path.read_text()
    except OSError as err:
        raise KeyConfigError(f"cannot read {path}: {err.strerror}") from None
    try:
        return parse_keys(text)
    except KeyConfigError as err:
        raise KeyConfigError(f"{path}: {err}") from None


def create_file(path: Path) -> bool:
    """Write a keys file with one fresh key, readable by its owner only; False if one is
    already there (never overwritten: its keys may be the only way to read old payloads)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as out:
        out.write("# loanflow payload keys, first = current (id:base64 AES key). Keep a copy:\n"
                  "# without it, the histories encrypted with it cannot be read.\n")
        out.write(new_entry() + "\n")
    return True
