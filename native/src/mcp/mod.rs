//! MCP federation on bytes: session tokens, the merge of `*/list` results across targets,
//! name → target resolution, and the rewrite of requests routed to one target.
//!
//! Like [`crate::jsonrpc`], everything works on spans of the input: payload members the
//! gateway does not edit are copied byte for byte, never decoded and re-encoded, and outputs
//! are planned to their exact length before being written once.

mod session;

pub use session::{
    KEY_LEN, KeyError, NONCE_LEN, OVERHEAD, SealError, SessionCipher, TAG_LEN, TokenError,
    key_from_hex,
};
