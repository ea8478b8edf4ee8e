"""Framing of IB's socket protocol: the `API\\0` handshake and length-prefixed NUL-separated frames.

After the handshake every message is a 4-byte big-endian length followed by that many bytes of
NUL-terminated ASCII fields. The client opens with `API\\0` plus one length-prefixed field
`v<min>..<max>` (optionally followed by a space and connect options such as `+PACEAPI`); the server
answers with a frame of two fields, `[serverVersion, connectionTime]`, and no message id.

Everything here is defensive: a peer that sends garbage gets a `ProtocolError` (the server closes
that one connection), never an exception of another kind.
"""

from __future__ import annotations

import re
import struct
from datetime import UTC, datetime
from typing import Final, NamedTuple

#: the oldest and newest server versions this codec speaks (the text protocol).
MIN_SERVER_VERSION: Final = 157
MAX_SERVER_VERSION: Final = 178

HANDSHAKE_PREFIX: Final = b"API\0"
#: IB's own clients refuse messages above 16 MiB (0xFFFFFF); requests are far smaller. A larger
#: length prefix is garbage, not a message to buffer.
MAX_MESSAGE_SIZE: Final = 0xFFFFFF
#: the version field of a handshake is a few dozen bytes; anything longer is not a handshake.
MAX_HANDSHAKE_SIZE: Final = 4096

_LEN = struct.Struct(">I")
_VERSION_RE = re.compile(r"v(\d{1,6})(?:\.\.(\d{1,6}))?(?:\s+(.*))?", re.S)


class ProtocolError(Exception):
    """The peer broke the framing (bad prefix, impossible length, undecodable version string)."""


class Handshake(NamedTuple):
    """A parsed client handshake; `consumed` is how many bytes of the buffer it used."""

    min_version: int
    max_version: int
    options: str
    consumed: int


def read_handshake(buf: bytes | bytearray) -> Handshake | None:
    """Parse the client's opening bytes; None while they are incomplete.

    Raises `ProtocolError` when the bytes cannot be a handshake (wrong magic, absurd length,
    a version field that is not `v<min>[..<max>]`), so the server can close without waiting.
    """
    n = len(buf)
    head = bytes(buf[:4])
    if head != HANDSHAKE_PREFIX[: len(head)]:
        raise ProtocolError("handshake must start with API\\0")
    if n < 8:
        return None
    (length,) = _LEN.unpack_from(buf, 4)
    if length == 0 or length > MAX_HANDSHAKE_SIZE:
        raise ProtocolError(f"bad handshake length {length}")
    if n < 8 + length:
        return None
    raw = bytes(buf[8 : 8 + length])
    try:
        text = raw.decode("ascii").rstrip("\0")
    except UnicodeDecodeError as e:
        raise ProtocolError("handshake version is not ASCII") from e
    m = _VERSION_RE.fullmatch(text)
    if m is None:
        raise ProtocolError(f"garbage version string {text[:40]!r}")
    lo = int(m.group(1))
    hi = int(m.group(2)) if m.group(2) is not None else lo
    if lo > hi:
        raise ProtocolError(f"version range {lo}..{hi} is empty")
    return Handshake(lo, hi, (m.group(3) or "").strip(), 8 + length)


def parse_handshake(buf: bytes | bytearray) -> tuple[int, int, str] | None:
    """`(min_version, max_version, options)` of a complete handshake, None while incomplete."""
    hs = read_handshake(buf)
    if hs is None:
        return None
    return hs.min_version, hs.max_version, hs.options


def negotiate(
    client_min: int,
    client_max: int,
    server_min: int = MIN_SERVER_VERSION,
    server_max: int = MAX_SERVER_VERSION,
) -> int | None:
    """The version both sides speak: min(client max, server max); None when the ranges miss.

    `ibapi` 9.81 asks v100..157 → 157; ib_async asks v157..178 → 178; official 10.x clients ask up
    to 2xx → 178, which keeps them on the text protocol.
    """
    version = min(client_max, server_max)
    if version < server_min or version < client_min:
        return None
    return version


def connection_time(now: datetime) -> str:
    """The connection-time field of the server hello: `yyyymmdd hh:mm:ss <tz>` (UTC here)."""
    return now.astimezone(UTC).strftime("%Y%m%d %H:%M:%S") + " UTC"


def server_hello(version: int, now: datetime) -> bytes:
    """The server's handshake answer: one frame `[version, connectionTime]` with no message id."""
    return frame((str(version), connection_time(now)))


def frame(fields: list[str] | tuple[str, ...]) -> bytes:
    """Encode one message: length prefix + each field NUL-terminated (ASCII / UTF-8)."""
    body = ("\0".join(fields) + "\0").encode()
    return _LEN.pack(len(body)) + body


def frames(messages: list[list[str]]) -> bytes:
    """Encode several messages into one buffer (one socket write for a burst of market data)."""
    out = bytearray()
    pack = _LEN.pack
    for fields in messages:
        body = ("\0".join(fields) + "\0").encode()
        out += pack(len(body))
        out += body
    return bytes(out)


class FrameReader:
    """Incremental parser of length-prefixed frames from a byte stream.

    `feed(data)` returns every complete message as a list of str fields. A zero or oversized length,
    or a body that does not end in NUL, raises `ProtocolError`: from then on the stream cannot be
    resynchronised and the connection has to go.
    """

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self.max_size = max_size

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[list[str]]:
        buf = self._buf
        buf += data
        out: list[list[str]] = []
        pos = 0
        end = len(buf)
        unpack = _LEN.unpack_from
        while end - pos >= 4:
            (length,) = unpack(buf, pos)
            if length == 0 or length > self.max_size:
                raise ProtocolError(f"bad message length {length}")
            stop = pos + 4 + length
            if stop > end:
                break
            if buf[stop - 1] != 0:
                raise ProtocolError("message does not end with a NUL field terminator")
            text = buf[pos + 4 : stop - 1].decode("utf-8", errors="backslashreplace")
            out.append(text.split("\0"))
            pos = stop
        if pos:
            del buf[:pos]
        return out
