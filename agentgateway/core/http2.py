"""HTTP/2 connection state, shared by the server (``server/http2.py``) and the upstream client
(``upstream/http2.py``): the ``h2`` library's state machine with the two changes a proxy needs.

h2 (python-hyper) does the framing, HPACK, stream states and flow-control accounting; what it
does not do the way a proxy must:

- A GOAWAY, sent or received, closes its connection state machine at once: every later frame,
  also DATA of the streams the GOAWAY lets finish, is a protocol error. A graceful GOAWAY
  (RFC 9113 §6.8: the streams up to ``last_stream_id`` complete) needs the connection to go on.
  So a graceful GOAWAY is written here, outside the state machine (``goaway``), and one received
  with NO_ERROR leaves the state machine open (``goaway_received`` tells the owner to open no
  new stream).
- A HEADERS frame over the advertised SETTINGS_MAX_CONCURRENT_STREAMS is a connection error to
  h2, raised before the header block is decoded. RFC 9113 §5.1.2 makes it a stream error
  (REFUSED_STREAM), and the HPACK context must see every block: the server decodes every block
  and refuses the extra stream itself (``enforce_stream_limit=False``).
"""

from __future__ import annotations

from h2.config import H2Configuration
from h2.connection import ConnectionState, H2Connection
from h2.errors import ErrorCodes
from h2.events import Event
from h2.settings import SettingCodes, Settings
from hyperframe.frame import Frame, GoAwayFrame

# RFC 9113 §6.5.2 bounds.
MIN_FRAME_SIZE = 16_384
MAX_FRAME_SIZE = 16_777_215
MAX_WINDOW_SIZE = 2**31 - 1
DEFAULT_WINDOW = 65_535

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class ProxyH2Connection(H2Connection):
    """``H2Connection`` with graceful GOAWAY both ways and, on the server side, stream limits
    enforced by the owner (see the module docstring)."""

    def __init__(self, client_side: bool, settings: dict[SettingCodes, int], enforce_stream_limit: bool) -> None:
        config = H2Configuration(
            client_side=client_side,
            header_encoding=None,
            # Outbound headers are built by the gateway from validated input (the HTTP/1.1 parser
            # or h2's inbound validation) with hop-by-hop fields left out: validating and
            # normalizing them again costs more than the rest of the response.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=True,
            normalize_inbound_headers=True,
        )
        super().__init__(config)
        self.local_settings = Settings(client=client_side, initial_values=settings)
        self.max_inbound_frame_size = self.local_settings.max_frame_size
        self.enforce_stream_limit = enforce_stream_limit
        # Set when the peer sent a GOAWAY: the streams it names may finish, no new one opens.
        self.goaway_received = False
        self.goaway_last_stream_id = 0

    @property
    def open_inbound_streams(self) -> int:
        count = super().open_inbound_streams  # also drops closed streams from h2's table
        return count if self.enforce_stream_limit else 0

    def _receive_goaway_frame(self, frame: GoAwayFrame) -> tuple[list[Frame], list[Event]]:
        state = self.state_machine.state
        frames, events = super()._receive_goaway_frame(frame)
        self.goaway_received = True
        self.goaway_last_stream_id = frame.last_stream_id
        if frame.error_code == ErrorCodes.NO_ERROR and state in (
            ConnectionState.CLIENT_OPEN,
            ConnectionState.SERVER_OPEN,
        ):
            # Graceful: the streams up to last_stream_id go on (h2 would refuse their frames).
            self.state_machine.state = state
        return frames, events

    def goaway(self, last_stream_id: int, error_code: int = 0) -> bytes:
        """A GOAWAY frame that leaves this connection's streams running (see the module docstring);
        the caller writes it after ``data_to_send()``."""
        return GoAwayFrame(0, last_stream_id=last_stream_id, error_code=error_code).serialize()


def window_settings(
    stream_window: int, frame_size: int, max_streams: int | None, header_list: int | None
) -> dict[SettingCodes, int]:
    """Local SETTINGS: what this side accepts."""
    settings: dict[SettingCodes, int] = {
        SettingCodes.INITIAL_WINDOW_SIZE: stream_window,
        SettingCodes.MAX_FRAME_SIZE: frame_size,
        SettingCodes.ENABLE_PUSH: 0,
    }
    if max_streams is not None:
        settings[SettingCodes.MAX_CONCURRENT_STREAMS] = max_streams
    if header_list is not None:
        settings[SettingCodes.MAX_HEADER_LIST_SIZE] = header_list
    return settings
