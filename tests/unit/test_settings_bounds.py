"""Settings that would break a promise later are refused at start, in one line."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from hookstream.settings import MAX_RECORD_BODY_BYTES, Settings, describe


def test_a_body_limit_past_what_one_kafka_record_holds_is_refused() -> None:
    # A bigger limit would let the receiver accept a body the producer can never send: 503 forever.
    with pytest.raises(ValidationError) as caught:
        Settings(max_body_bytes=2 * 1024 * 1024)
    line = describe(caught.value)
    assert line.startswith("HOOKSTREAM_MAX_BODY_BYTES='2097152'") and str(MAX_RECORD_BODY_BYTES) in line
    assert Settings(max_body_bytes=MAX_RECORD_BODY_BYTES).max_body_bytes == MAX_RECORD_BODY_BYTES
