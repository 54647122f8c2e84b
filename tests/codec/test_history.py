"""A loan's raw history holds no borrower name or e-mail: its notices are not in it, and
every payload is ciphertext. With loanflow's codec the same payloads read as the real data.
Payloads loanflow cannot decrypt, or that come in plain JSON from the stock tools, are handled
without harming the loan."""

from __future__ import annotations

import base64
import json

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import RawValue

from bench.histories import notice_kinds, runs
from loanflow import codec_keys
from loanflow.codec import ENCRYPTED, KEY_ID, EncryptionCodec, PayloadKeyError, encrypted_converter
from loanflow.effects import ActivityName
from loanflow.mail import outbox
from loanflow.models import LoanApplication, LoanState
from loanflow.settings import get_settings
from tests.codec.history import payloads_in, plain_client
from tests.workflows.book import BORROWER, application
from tests.workflows.conftest import Desk, desk, ts_env  # noqa: F401  (the shared harness)
from tests.workflows.test_lifecycle import active_loan, wait_state

LOCAL_ACTIVITY_MARKER = {"seq", "attempt", "activity_id", "activity_type", "complete_time",
                         "backoff", "original_schedule_time", "activation_index"}
SECRETS = (BORROWER.name.encode(), BORROWER.email.encode())


def readable(payload: Payload) -> list[bytes]:
    """Everything a person could read from a payload: its bytes, its metadata and, for JSON,
    the text behind any base64 inside it."""
    texts = [payload.data, *payload.metadata.values()]
    for value in payload.metadata.values():
        try:
            texts.append(base64.b64decode(value, validate=True))
        except ValueError:
            pass
    return texts


async def test_the_raw_history_holds_no_borrower_data(desk: Desk) -> None:
    handle = await active_loan(desk, "PII1")
    await desk.price(handle, "BTC", "40000")  # 30,000 / 40,000 = 75%: a margin call
    await wait_state(desk, handle, LoanState.MARGIN_CALL)
    await desk.settle(handle)

    # Every run: the loan continued as new once ACTIVE, handing its file to the next run.
    histories = await runs(plain_client(desk.client), handle.id)
    assert len(histories) == 2
    found = [(f"run {n} event {event.event_id}{where}", payload)
             for n, history in enumerate(histories)
             for event in history.events for where, payload in payloads_in(event)]
    assert len(found) > 20
    codec = EncryptionCodec(get_settings().keyring())
    for where, payload in found:
        for text in readable(payload):
            for secret in SECRETS:
                assert secret not in text, f"{secret!r} readable in {where}"
        if ".search_attributes" in where:  # the server indexes these: they stay plain
            assert payload.metadata["encoding"] == b"json/plain", where
            assert b"country" not in payload.data
            continue
        if ".marker_recorded_event_attributes.details[data]" in where:
            # The SDK core's own bookkeeping of a local activity, not loanflow's data.
            assert set(json.loads(payload.data)) <= LOCAL_ACTIVITY_MARKER, where
            continue
        if ".marker_recorded_event_attributes.details[patch-data]" in where:
            # The SDK core's record of a `workflow.patched` id (the code's own name for a
            # change, never input data).
            assert set(json.loads(payload.data)) <= {"id", "deprecated"}, where
            continue
        assert payload.metadata["encoding"] == ENCRYPTED, f"{where} is not encrypted"
        assert payload.metadata[KEY_ID] == b"test-current"
        codec.decrypt(payload)  # real ciphertext under our key (raises otherwise)
    # The JSON an operator downloads from the Web UI: no plain grep finds them either.
    for history in histories:
        text = history.to_json()
        for secret in SECRETS:
            assert secret.decode() not in text

    # With the codec: the start input is the real application; notices carry only the id.
    events = [event for history in histories for event in history.events]
    started = events[0].workflow_execution_started_event_attributes
    [app] = await desk.client.data_converter.decode(started.input.payloads, [LoanApplication])
    assert app.borrower == BORROWER
    # The notices are not in the history at all: they ride with the loan's writes (a local
    # activity's input is not recorded), whose summaries name only their kinds.
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                and e.activity_task_scheduled_event_attributes.activity_type.name
                == ActivityName.RECORD_NOTICE]
    kinds = await notice_kinds(events, desk.client.data_converter)
    assert len([kind for named in kinds.values() for kind in named]) >= 5
    # ...and the e-mails went to the borrower's real address, read from the database.
    sent = await outbox.list_outbox(desk.db, loan_id="PII1")
    assert sent and {row.to_address for row in sent} == {BORROWER.email}
    assert any(row.kind == "margin_call" for row in sent)


async def test_a_loan_started_with_plain_json_runs(desk: Desk) -> None:
    """What `temporal workflow start --input '{...}'` sends: plain JSON, still read."""
    app = application("PLAIN1").model_dump(mode="json")
    handle = await plain_client(desk.client).start_workflow(
        "LoanWorkflow", app, id="loan-PLAIN1", task_queue=desk.task_queue,
        memo={"search_attributes": False})
    desk.handles.append(handle)
    await plain_client(desk.client).get_workflow_handle(handle.id).signal(
        "price_update", {"asset": "BTC", "price": "100000",
                         "observed_at": (await desk.now()).isoformat(), "source": "cli"})
    coded = desk.client.get_workflow_handle(handle.id)
    status = await wait_state(desk, coded, LoanState.AWAITING_COLLATERAL)
    assert status.loan_id == "PLAIN1"


def foreign(value: object) -> RawValue:
    """A payload encrypted with a key this desk does not have."""
    stranger = EncryptionCodec(codec_keys.parse_keys(codec_keys.new_entry("stranger")))
    plain = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(value).encode())
    return RawValue(stranger.encrypt(plain))


async def test_payloads_under_an_unknown_key_are_one_clear_error_not_a_frozen_loan(
        desk: Desk) -> None:
    handle = await active_loan(desk, "KEY1")
    price = {"asset": "BTC", "price": "40000", "observed_at": (await desk.now()).isoformat(),
             "source": "test"}
    # A signal nobody here can decrypt is dropped; the loan still answers and acts.
    await handle.signal("price_update", foreign(price))
    assert (await desk.status(handle)).state == LoanState.ACTIVE
    # An update is refused with the key id named.
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update("top_up", foreign({"amount": "1", "tx_id": "0x1"}))
    assert "'stranger'" in str(refused.value.cause)
    await desk.price(handle, "BTC", "40000")
    assert (await wait_state(desk, handle, LoanState.MARGIN_CALL)).state == LoanState.MARGIN_CALL

    # A client without the desk's current key: one error naming the key id it lacks.
    other_keys = encrypted_converter(codec_keys.parse_keys(
        codec_keys.new_entry("somebody-else")))
    client = desk.client
    stranger = Client(client.service_client, namespace=client.namespace,
                      data_converter=other_keys)
    with pytest.raises(PayloadKeyError) as raised:
        await stranger.get_workflow_handle(handle.id).query("status")
    assert "'test-current'" in raised.value.message
