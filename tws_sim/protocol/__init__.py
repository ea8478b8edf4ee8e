"""The TWS wire codec: framing/handshake, request decoding and message encoding (v157..178).

- `framing`: `read_handshake` / `parse_handshake`, `negotiate`, `server_hello`, `frame`,
  `FrameReader`, `ProtocolError`.
- `ids`: message ids (`In` requests, `Out` messages) and tick type numbers.
- `incoming.decode(fields, server_version, client_id)` → one request dataclass (or
  `UnknownMessage` / `Unsupported` / `BadRequest`, never an exception).
- `outgoing.encode_*(..., server_version)` → the fields of one message.
"""

from tws_sim.protocol.framing import (
    MAX_SERVER_VERSION,
    MIN_SERVER_VERSION,
    FrameReader,
    ProtocolError,
    frame,
    frames,
    negotiate,
    parse_handshake,
    read_handshake,
    server_hello,
)
from tws_sim.protocol.incoming import decode

__all__ = [
    "MAX_SERVER_VERSION",
    "MIN_SERVER_VERSION",
    "FrameReader",
    "ProtocolError",
    "decode",
    "frame",
    "frames",
    "negotiate",
    "parse_handshake",
    "read_handshake",
    "server_hello",
]
