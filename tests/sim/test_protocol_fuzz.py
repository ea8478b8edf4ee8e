"""Garbage in, IB's error out: the decoder and the frame reader never raise anything unexpected.

`incoming.decode` must turn any list of fields into a request or an error value (the server answers
it and keeps the connection); `FrameReader.feed` may only raise `ProtocolError` (the server closes
that one connection).
"""

from __future__ import annotations

import contextlib
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sim.test_protocol_clients import async_client
from tws_sim.protocol import incoming as inc
from tws_sim.protocol.framing import FrameReader, ProtocolError, read_handshake

ERROR_TYPES = (inc.UnknownMessage, inc.Unsupported, inc.BadRequest)
FIELD = st.one_of(
    st.sampled_from(["", "0", "1", "-1", "2147483647", "1.7976931348623157E308", "BAG", "LMT"]),
    st.text(max_size=12),
    st.integers(min_value=-(2**40), max_value=2**40).map(str),
)


@settings(max_examples=400, deadline=None)
@given(
    msg_id=st.integers(min_value=0, max_value=110),
    fields=st.lists(FIELD, max_size=40),
    version=st.sampled_from([157, 163, 170, 176, 178]),
)
def test_decode_never_raises(msg_id: int, fields: list[str], version: int) -> None:
    r = inc.decode([str(msg_id), *fields], version, 1)
    if isinstance(r, ERROR_TYPES):
        assert isinstance(r.error_code, int)
        assert r.error_text


def _place_order_fields(version: int) -> list[str]:
    import ib_async.contract as ac
    import ib_async.order as ao

    cap = async_client(version)
    bag = ac.Contract(symbol="SPY", secType="BAG", exchange="SMART", currency="USD")
    bag.comboLegs = [ac.ComboLeg(conId=1, ratio=1, action="BUY", exchange="SMART")]
    cap.client.placeOrder(5, bag, ao.Order(action="BUY", totalQuantity=1, orderType="LMT"))
    return cap.take()[0]


PLACE_178 = _place_order_fields(178)


@settings(max_examples=400, deadline=None)
@given(index=st.integers(min_value=1, max_value=len(PLACE_178) - 1), value=FIELD)
def test_place_order_with_one_field_corrupted(index: int, value: str) -> None:
    fields = list(PLACE_178)
    fields[index] = value
    r = inc.decode(fields, 178, 1)
    assert isinstance(r, inc.PlaceOrder | inc.BadRequest), r


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_frame_reader_only_raises_protocol_error(data: bytes) -> None:
    reader = FrameReader(max_size=1024)
    try:
        for fields in reader.feed(data):
            assert isinstance(fields, list)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=40))
def test_handshake_only_raises_protocol_error(body: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        read_handshake(b"API\0" + struct.pack(">I", len(body)) + body)
