"""HTTP/2 protocol engine shared by the server (``server/http2.py``) and the upstream client
(``upstream/http2.py``): libnghttp2 through ``ngh2``, its sans-I/O binding.

nghttp2 keeps the protocol state: framing, HPACK, stream states and limits, flow-control
windows, header validation (RFC 9113 §8.2), graceful GOAWAY, and the buffering of body bytes
beyond the peer's window. The gateway owns the sockets, decides when received bytes are
acknowledged (window updates are manual, so a paused request body stops its sender), and maps
streams to requests.
"""

from __future__ import annotations

from ngh2 import Configuration, Connection, Role, Setting

# RFC 9113 §6.5.2 bounds.
MIN_FRAME_SIZE = 16_384
MAX_FRAME_SIZE = 16_777_215
MAX_WINDOW_SIZE = 2**31 - 1
DEFAULT_WINDOW = 65_535

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RST_STREAM and GOAWAY codes (RFC 9113 §7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
CANCEL = 0x8


def new_connection(client: bool, header_list_cap: int = 65_536) -> Connection:
    """A connection whose window updates are the caller's (``acknowledge_received_data``).
    ``header_list_cap``: larger received header lists are a connection error (a defence; the
    server answers lists between its advertised limit and this cap with 431 itself)."""
    config = Configuration(auto_window_update=False, max_inbound_header_list_size=header_list_cap)
    return Connection(Role.CLIENT if client else Role.SERVER, config)


def local_settings(
    stream_window: int, frame_size: int, max_streams: int | None = None, header_list: int | None = None
) -> dict[Setting, int]:
    """The SETTINGS this side sends: what it accepts."""
    settings = {
        Setting.INITIAL_WINDOW_SIZE: stream_window,
        Setting.MAX_FRAME_SIZE: frame_size,
        Setting.ENABLE_PUSH: 0,
    }
    if max_streams is not None:
        settings[Setting.MAX_CONCURRENT_STREAMS] = max_streams
    if header_list is not None:
        settings[Setting.MAX_HEADER_LIST_SIZE] = header_list
    return settings


def error_name(code: int) -> str:
    names = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR", 7: "REFUSED_STREAM"}
    names.update({8: "CANCEL", 9: "COMPRESSION_ERROR", 11: "ENHANCE_YOUR_CALM", 13: "HTTP_1_1_REQUIRED"})
    return names.get(code, f"error {code}")
