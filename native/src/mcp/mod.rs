//! MCP federation on bytes: session tokens, the merge of `*/list` results across targets,
//! name → target resolution, and the rewrite of requests routed to one target.
//!
//! Like [`crate::jsonrpc`], everything works on spans of the input: payload members the
//! gateway does not edit are copied byte for byte, never decoded and re-encoded, and outputs
//! are planned to their exact length before being written once.

mod json;
mod merge;
mod names;
mod rewrite;
mod session;

pub use json::{Sink, SliceSink};
pub use merge::{
    ListError, ListItem, ListKind, ListResults, Malformed, MergeOptions, MergePlan, list_item_keys,
    merge_list_results,
};
pub use names::{has_scheme, split_prefixed_name, split_prefixed_uri};
pub use rewrite::{ParamEdit, RequestRewrite, RequestRewriteError, rewrite_request};
pub use session::{
    KEY_LEN, KeyError, NONCE_LEN, OVERHEAD, SealError, SessionCipher, TAG_LEN, TokenError,
    key_from_hex,
};
