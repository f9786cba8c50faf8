//! Server-Sent Events, the streaming framing of MCP streamable HTTP, A2A and LLM APIs.
//!
//! [`Decoder`] follows the WHATWG event-stream parsing rules over chunks split anywhere, with
//! a bound on the size of one event; the encoder writes events and comments that decode back
//! to the same values.

mod decoder;
mod encoder;

pub use decoder::{Decoder, Event, EventTooLarge, Item, MIN_EVENT_SIZE, OwnedEvent};
pub use encoder::{EncodeError, encode_comment, encode_event};
