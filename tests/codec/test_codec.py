"""The payload codec: AES-GCM with the key id in the metadata, rotation, one clear error for a
payload this process cannot decrypt, and plain payloads (the stock CLI's JSON) still read."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload

from loanflow import codec_keys
from loanflow.codec import ENCRYPTED, KEY_ID, EncryptionCodec, PayloadKeyError, encrypted_converter
from loanflow.codec_keys import KeyConfigError, parse_keys
from loanflow.models import Borrower
from loanflow.settings import Settings, SettingsError
from tests.support import TEST_CODEC_KEYS

GRACE = Borrower(id="B-7", name="Grace Hopper", email="grace@example.com", country="US")
OLD, NEW = codec_keys.new_entry("k-old"), codec_keys.new_entry("k-new")


def plain(value: object) -> Payload:
    """What the stock `temporal` CLI sends for `--input '{...}'`."""
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())


async def test_a_payload_is_ciphertext_with_its_key_id() -> None:
    converter = encrypted_converter(parse_keys(f"{NEW},{OLD}"))
    [payload] = await converter.encode([GRACE])
    assert payload.metadata["encoding"] == ENCRYPTED
    assert payload.metadata[KEY_ID] == b"k-new"  # the first key is the current one
    assert set(payload.metadata) == {"encoding", KEY_ID}  # nothing of the original shows
    for secret in (b"Grace", b"grace@example.com", b"json/plain"):
        assert secret not in payload.data
    assert await converter.decode([payload], [Borrower]) == [GRACE]
    # A fresh nonce each time: the same value never gives the same ciphertext.
    [again] = await converter.encode([GRACE])
    assert again.data != payload.data


async def test_rotation_reads_old_keys_and_writes_the_current_one() -> None:
    before = encrypted_converter(parse_keys(OLD))
    after = encrypted_converter(parse_keys(f"{NEW},{OLD}"))
    written_before = await before.encode([GRACE])
    assert written_before[0].metadata[KEY_ID] == b"k-old"
    assert await after.decode(written_before, [Borrower]) == [GRACE]
    written_after = await after.encode([GRACE])
    assert written_after[0].metadata[KEY_ID] == b"k-new"


async def test_an_unknown_key_id_is_one_error_naming_it() -> None:
    written = await encrypted_converter(parse_keys(f"{NEW},{OLD}")).encode([GRACE])
    reader = encrypted_converter(parse_keys(OLD))
    with pytest.raises(PayloadKeyError) as raised:
        await reader.decode(written, [Borrower])
    assert "'k-new'" in raised.value.message and "k-old" in raised.value.message
    assert raised.value.non_retryable and raised.value.type == "PayloadKeyError"
    assert NEW.split(":", 1)[1] not in raised.value.message  # never the key itself


async def test_a_wrong_key_or_an_altered_payload_does_not_decrypt() -> None:
    [payload] = await encrypted_converter(parse_keys(NEW)).encode([GRACE])
    impostor = encrypted_converter(parse_keys(codec_keys.new_entry("k-new")))
    with pytest.raises(PayloadKeyError, match="does not decrypt"):
        await impostor.decode([payload], [Borrower])
    reader = encrypted_converter(parse_keys(f"{NEW},{OLD}"))
    flipped = Payload(metadata=payload.metadata, data=payload.data[:-1] + b"\0")
    relabelled = Payload(metadata={"encoding": ENCRYPTED, KEY_ID: b"k-old"}, data=payload.data)
    short = Payload(metadata=payload.metadata, data=b"abc")
    for bad in (flipped, relabelled, short):
        with pytest.raises(PayloadKeyError, match="does not decrypt"):
            await reader.decode([bad], [Borrower])


async def test_the_codec_passes_undecryptable_payloads_on_instead_of_raising() -> None:
    """Decoding covers a whole workflow activation: one bad payload must fail only its own
    value (a signal dropped, an update refused), not every task of the loan."""
    codec = EncryptionCodec(parse_keys(OLD))
    stranger = await EncryptionCodec(parse_keys(NEW)).encode([plain({"x": 1})])
    good = plain({"asset": "ETH"})
    decoded = await codec.decode([stranger[0], good])
    assert decoded[1] == good and decoded[0].metadata["encoding"] == b"binary/undecryptable"


async def test_plain_json_from_the_stock_cli_is_still_read() -> None:
    converter = encrypted_converter(parse_keys(TEST_CODEC_KEYS))
    payload = plain(GRACE.model_dump(mode="json"))
    assert await converter.decode([payload], [Borrower]) == [GRACE]


def test_the_converters_of_every_run_share_one_set_of_encodings() -> None:
    """The SDK builds a payload converter for each workflow run it holds; a private pydantic
    adapter cache in each cost every cached loan about 6 KiB (bench/README, memory)."""
    make = encrypted_converter(parse_keys(NEW)).payload_converter_class
    one_run, another = make(), make()
    assert one_run is not another
    assert set(one_run.converters) == set(another.converters) >= {b"json/plain",
                                                                  b"binary/undecryptable"}
    for encoding, converter in one_run.converters.items():
        assert another.converters[encoding] is converter
    [payload] = one_run.to_payloads([GRACE])
    assert another.from_payloads([payload], [Borrower]) == [GRACE]


@pytest.mark.parametrize("text, problem", [
    ("", "no key given"),
    ("k1", "not `id:base64key`"),
    ("bad id:" + base64.b64encode(bytes(32)).decode(), "not `id:base64key`"),
    ("k1:not-base64!", "not valid base64"),
    ("k1:" + base64.b64encode(bytes(10)).decode(), "10 bytes"),
    (f"{OLD},{OLD}", "appears twice"),
])
def test_malformed_keys_are_refused_naming_the_problem(text: str, problem: str) -> None:
    with pytest.raises(KeyConfigError, match=problem):
        parse_keys(text)


def test_keys_in_settings_fail_at_start_up_in_one_line(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOANFLOW_CODEC_KEYS", "k1:short")
    with pytest.raises(Exception) as raised:
        Settings()
    assert "LOANFLOW_CODEC_KEYS" in str(raised.value) and "short" not in str(raised.value)
    monkeypatch.delenv("LOANFLOW_CODEC_KEYS")
    missing = Settings(var_dir=tmp_path)
    with pytest.raises(SettingsError, match="no payload encryption key: set LOANFLOW_CODEC_KEYS"):
        missing.keyring()


def test_the_keys_file_is_made_once_and_kept(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOANFLOW_CODEC_KEYS")
    settings = Settings(var_dir=tmp_path)
    assert codec_keys.create_file(settings.keys_file)
    ring = settings.keyring()
    assert not codec_keys.create_file(settings.keys_file)  # never overwritten
    assert settings.keyring() == ring
    assert settings.keys_file.stat().st_mode & 0o777 == 0o600
    settings.keys_file.write_text("k1:nope!\n")
    with pytest.raises(SettingsError, match="codec.keys: key 'k1' is not valid base64"):
        settings.keyring()


async def test_the_error_is_caught_as_bad_input_too() -> None:
    written = await encrypted_converter(parse_keys(NEW)).encode([GRACE])
    with pytest.raises(ValueError, match="'k-new'"):
        await encrypted_converter(parse_keys(OLD)).decode(written, [Borrower])
