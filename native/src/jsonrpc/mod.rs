//! JSON-RPC 2.0 envelope scanning for MCP and A2A traffic.
//!
//! The gateway needs a message's kind, id and method to route it, and must otherwise pass
//! `params` and `result` through byte for byte. [`scan`] validates the whole message as JSON
//! and returns spans into the input instead of a decoded tree; [`rewrite_id`] and
//! [`Envelope::id_splice`] swap ids with a single copy.
//!
//! Validity rules beyond JSON-RPC 2.0 itself, chosen for MCP:
//! - `id` is a string or a number written as an integer (`1.0` and `1e3` are invalid: MCP
//!   asks for integers, and peers echo id bytes, so `1.0` would not match `1`). Integers of
//!   any size are accepted since they are echoed verbatim. `null` is allowed only in error
//!   responses.
//! - A repeated envelope member (`jsonrpc`, `id`, `method`, `params`, `result`, `error`) or
//!   a repeated `code` / `message` / `data` in an error object is invalid, matched by decoded
//!   name. Repeats elsewhere are not checked.
//! - `error.code` must be an integer that fits in an `i64`.
//! - Unpaired UTF-16 surrogate escapes (`"\ud800"`) are a parse error, and nesting is
//!   limited to [`MAX_DEPTH`] levels.

mod envelope;
mod error;
mod scanner;

pub use envelope::{
    Envelope, Kind, Message, is_valid_id, rewrite_id, scan, scan_message, split_batch,
};
pub use error::{Error, ErrorKind, INVALID_REQUEST, Invalid, PARSE_ERROR, RewriteError};
pub use scanner::{
    MAX_DEPTH, ParseError, Scanner, Span, Syntax, Value, ValueKind, decode_string,
    first_duplicate_member, first_nested_duplicate_member, validate,
};
