"""Frames round-trip, and every malformed frame is refused with a precise ProtocolError."""

from __future__ import annotations

import struct

import msgpack
import numpy as np
import pytest

from streamvis import FrameTooLarge, ProtocolError, UnsupportedVersion
from streamvis._protocol import (
    BadFrame,
    Frame,
    Limits,
    decode,
    decode_many,
    decode_reply,
    encode,
    encode_head,
    encode_reply,
    padded,
)


def frame(*arrays: np.ndarray, **fields: object) -> Frame:
    base: dict[str, object] = dict(
        op="plot", run="run1", cid="c1", seq=7, name="loss", opts={"kind": "scatter"}
    )
    base.update(fields)
    return Frame(arrays=arrays, **base)  # type: ignore[arg-type]


def raw(header: dict[str, object], body: bytes = b"") -> bytes:
    packed = msgpack.packb(header)
    pad = b"\0" * (-(4 + len(packed)) % 8)
    return struct.pack(">I", len(packed)) + packed + pad + body


GOOD = {"v": 1, "op": "plot", "run": "r", "cid": "c", "seq": 0, "name": "p"}


@pytest.mark.parametrize(
    "dtype", ["int8", "uint16", "int32", "int64", "float16", "float32", "float64"]
)
def test_round_trip_keeps_dtype_shape_and_values(dtype: str) -> None:
    a = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    b = np.linspace(0, 1, 5)
    out = decode(encode(frame(a, b, ack=True)))
    assert (out.op, out.run, out.cid, out.seq, out.name, out.ack) == (
        "plot",
        "run1",
        "c1",
        7,
        "loss",
        True,
    )
    assert out.opts == {"kind": "scatter"}
    assert out.arrays[0].dtype == a.dtype and out.arrays[0].shape == (2, 3, 4)
    np.testing.assert_array_equal(out.arrays[0], a)
    np.testing.assert_array_equal(out.arrays[1], b)


def test_decoded_arrays_are_aligned_views_not_copies() -> None:
    data = encode(frame(np.arange(3, dtype=np.int8), np.ones((4, 2))))
    out = decode(data)
    assert all(a.flags.aligned for a in out.arrays)
    assert not out.arrays[1].flags.owndata


def test_the_head_and_the_padded_arrays_make_the_frame() -> None:
    f = frame(np.arange(3, dtype=np.int8), np.ones((4, 2)))
    arrays = b"".join(a.tobytes().ljust(padded(a.nbytes), b"\0") for a in f.arrays)
    assert encode_head(f) + arrays == encode(f)
    assert len(encode_head(f)) % 8 == 0


def test_empty_and_zero_size_arrays() -> None:
    out = decode(encode(frame(np.zeros((0, 2)), op="plot")))
    assert out.arrays[0].shape == (0, 2)
    assert decode(encode(Frame(op="sync", run="r", cid="c", seq=1))).arrays == ()


def test_replies_round_trip() -> None:
    assert decode_reply(encode_reply({"ack": 3})) == {"ack": 3}
    with pytest.raises(ProtocolError, match="expected a map"):
        decode_reply(msgpack.packb([1]))


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ({**GOOD, "v": 2}, b"", "protocol version 2"),
        ({**GOOD, "op": "explode"}, b"", "'op' is 'explode'"),
        ({**GOOD, "run": "a b"}, b"", "run name 'a b'"),
        ({**GOOD, "name": ""}, b"", "plot name ''"),
        ({**GOOD, "seq": "7"}, b"", "'seq' is '7'"),
        ({**GOOD, "seq": True}, b"", "'seq' is True"),
        ({**GOOD, "cid": None}, b"", "'cid' is None"),
        ({**GOOD, "opts": [1]}, b"", "'opts' is [1]"),
        ({**GOOD, "arrays": [["complex128", [1]]]}, b"\0" * 16, "dtype 'complex128'"),
        ({**GOOD, "arrays": [[["float64"], [1]]]}, b"\0" * 8, "dtype ['float64']"),
        ({**GOOD, "arrays": [["float64", [0, 2**40]]]}, b"", "no axis can be longer"),
        ({**GOOD, "arrays": [["float64", [-1]]]}, b"", "sizes must be ints >= 0"),
        ({**GOOD, "arrays": [["float64", [4]]]}, b"\0" * 8, "needs 32 bytes but only 8 remain"),
        ({**GOOD, "arrays": [["float64", [1]]]}, b"\0" * 16, "8 bytes after its last array"),
        ({**GOOD, "arrays": "x"}, b"", "'arrays' is 'x'"),
    ],
)
def test_malformed_headers_name_field_and_value(
    header: dict[str, object], body: bytes, message: str
) -> None:
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("(", r"\(")):
        decode(raw(header, body))


def test_bad_version_is_its_own_error() -> None:
    with pytest.raises(UnsupportedVersion, match="install the same streamvis version"):
        decode(raw({**GOOD, "v": 0}))


def test_truncated_and_garbage_frames() -> None:
    with pytest.raises(ProtocolError, match="too short"):
        decode(b"\0\0")
    with pytest.raises(ProtocolError, match="claims 100 bytes"):
        decode(struct.pack(">I", 100) + b"xx")
    with pytest.raises(ProtocolError, match="not valid msgpack"):
        decode(struct.pack(">I", 2) + b"\xc1\xc1")
    with pytest.raises(ProtocolError, match="expected a map"):
        decode(struct.pack(">I", 1) + msgpack.packb(3))


def test_limits_are_enforced_with_numbers() -> None:
    small = Limits(max_frame_bytes=1000, max_header_bytes=64, max_arrays=1)
    with pytest.raises(FrameTooLarge, match=r"frame of 80.. bytes exceeds the limit of 1000"):
        decode(encode(frame(np.zeros(1000, np.float64))), small)
    with pytest.raises(FrameTooLarge, match=r"header of .* exceeds the limit of 64"):
        decode(encode(frame(opts={"kind": "x" * 100})), small)
    with pytest.raises(FrameTooLarge, match="2 arrays; the limit is 1"):
        decode(encode(frame(np.zeros(1), np.zeros(1))), Limits(max_arrays=1))


def test_a_message_may_carry_several_frames_back_to_back() -> None:
    first, second = frame(np.arange(3, dtype=np.int8), seq=1), frame(np.ones((2, 2)), seq=2)
    message = encode(first) + encode(second)
    decoded = [item for item in decode_many(message) if not isinstance(item, BadFrame)]
    assert [f.seq for f, _ in decoded] == [1, 2]
    assert bytes(decoded[1][1]) == encode(second)  # each frame keeps its own bytes, for the log
    np.testing.assert_array_equal(decoded[1][0].arrays[0], np.ones((2, 2)))
    *_, torn = decode_many(message + b"\0\0")  # refused alone: the frames before it stand
    assert isinstance(torn, BadFrame) and torn.last and "too short" in str(torn.error)
