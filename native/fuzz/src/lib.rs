//! Shared pieces of the fuzz targets: how a target cuts its input into fields, and the
//! independent reference implementations that the differential targets compare the native
//! code with. The references are written from the rules (RFC 8259 through `serde_json`,
//! JSON-RPC 2.0 as narrowed in `jsonrpc`'s module doc, the WHATWG event-stream rules), not
//! from the native code, and favour obviousness over speed.

pub mod cel_fixture;
pub mod jsonrpc_ref;
pub mod sse_ref;

/// Separates the fields of a structured input. 0xFF never occurs in UTF-8, so JSON texts and
/// names in a seed file stay readable between separators.
pub const SEPARATOR: u8 = 0xFF;

/// The fields of `data` split at [`SEPARATOR`].
pub fn fields(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == SEPARATOR).collect()
}

/// The field as text, replacing what is not UTF-8 (names and values the native API takes as
/// `&str`).
pub fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(field).into_owned()
}
