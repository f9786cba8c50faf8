//! Errors of envelope scanning, carrying the JSON-RPC code the gateway answers with.

use std::fmt;

use super::scanner::{ParseError, Span, ValueKind};

/// JSON-RPC 2.0 "Parse error": the bytes are not JSON.
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC 2.0 "Invalid Request": JSON, but not a valid JSON-RPC message.
pub const INVALID_REQUEST: i32 = -32600;

/// Why a well-formed JSON text is not a valid JSON-RPC 2.0 message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalid {
    /// The message (or a batch element) is not an object.
    NotAnObject(ValueKind),
    /// `[]`: JSON-RPC 2.0 answers an empty batch with a single Invalid Request.
    EmptyBatch,
    /// A batch was required (see `split_batch`) but the text is some other JSON value.
    NotABatch(ValueKind),
    /// An envelope member appears twice. JSON leaves duplicate names undefined and parsers
    /// differ (first wins, last wins), so a gateway that read one `method` could forward a
    /// message its upstream reads as another; we refuse the ambiguity.
    DuplicateMember(&'static str),
    MissingVersion,
    /// `jsonrpc` is present but is not exactly the string `"2.0"`.
    WrongVersion,
    /// `id` is an object, array, boolean or a number with fraction or exponent. MCP requires
    /// string or integer ids, and `1.0` and `1` are different ids to peers that echo bytes.
    IdType(ValueKind),
    /// `id: null` in a request or result response (MCP forbids null ids).
    NullId,
    MethodType(ValueKind),
    ParamsType(ValueKind),
    /// A message with `method` and also `result` or `error`.
    MethodWithResponse,
    ResultAndError,
    NoMethodOrResponse,
    /// A result response without an `id`.
    ResultWithoutId,
    ErrorType(ValueKind),
    /// `error.code` is absent (`None`), not an integer, or (`Some(Integer)`) does not fit in
    /// a signed 64-bit integer.
    ErrorCode(Option<ValueKind>),
    /// `error.message` is absent (`None`) or not a string.
    ErrorMessage(Option<ValueKind>),
    /// `code`, `message` or `data` appears twice in the error object.
    DuplicateErrorMember(&'static str),
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Invalid::NotAnObject(found) => {
                write!(f, "a message must be a JSON object, found {found}")
            }
            Invalid::EmptyBatch => f.write_str("a batch must not be empty"),
            Invalid::NotABatch(found) => {
                write!(f, "expected a batch (a JSON array), found {found}")
            }
            Invalid::DuplicateMember(name) => write!(f, "duplicate member \"{name}\""),
            Invalid::MissingVersion => f.write_str("missing member \"jsonrpc\""),
            Invalid::WrongVersion => f.write_str("\"jsonrpc\" must be the string \"2.0\""),
            Invalid::IdType(found) => {
                write!(f, "\"id\" must be a string or an integer, found {found}")
            }
            Invalid::NullId => f.write_str("\"id\" must not be null"),
            Invalid::MethodType(found) => write!(f, "\"method\" must be a string, found {found}"),
            Invalid::ParamsType(found) => {
                write!(f, "\"params\" must be an object or an array, found {found}")
            }
            Invalid::MethodWithResponse => {
                f.write_str("a message with \"method\" must not have \"result\" or \"error\"")
            }
            Invalid::ResultAndError => {
                f.write_str("a response must not have both \"result\" and \"error\"")
            }
            Invalid::NoMethodOrResponse => {
                f.write_str("a message must have \"method\", \"result\" or \"error\"")
            }
            Invalid::ResultWithoutId => f.write_str("a result response must have an \"id\""),
            Invalid::ErrorType(found) => write!(f, "\"error\" must be an object, found {found}"),
            Invalid::ErrorCode(None) => f.write_str("\"error\" must have a \"code\""),
            Invalid::ErrorCode(Some(ValueKind::Integer)) => {
                f.write_str("\"error.code\" does not fit in a 64-bit signed integer")
            }
            Invalid::ErrorCode(Some(found)) => {
                write!(f, "\"error.code\" must be an integer, found {found}")
            }
            Invalid::ErrorMessage(None) => f.write_str("\"error\" must have a \"message\""),
            Invalid::ErrorMessage(Some(found)) => {
                write!(f, "\"error.message\" must be a string, found {found}")
            }
            Invalid::DuplicateErrorMember(name) => {
                write!(f, "duplicate member \"{name}\" in \"error\"")
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Parse(ParseError),
    Invalid(Invalid),
}

/// A message the gateway must answer with a JSON-RPC error instead of forwarding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    /// Span of the message's `id` when it could be read (present once, a string or an
    /// integer), so the error response can carry the right id. Always `None` for parse
    /// errors: JSON-RPC answers those with a null id.
    pub id: Option<Span>,
}

impl Error {
    pub(crate) fn parse(e: ParseError) -> Self {
        Error {
            kind: ErrorKind::Parse(e),
            id: None,
        }
    }

    pub(crate) fn invalid(reason: Invalid, id: Option<Span>) -> Self {
        Error {
            kind: ErrorKind::Invalid(reason),
            id,
        }
    }

    /// The JSON-RPC error code to answer with.
    pub fn code(&self) -> i32 {
        match self.kind {
            ErrorKind::Parse(_) => PARSE_ERROR,
            ErrorKind::Invalid(_) => INVALID_REQUEST,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::Parse(e) => write!(f, "Parse error: {e}"),
            ErrorKind::Invalid(reason) => write!(f, "Invalid Request: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<ParseError> for Error {
    fn from(e: ParseError) -> Self {
        Error::parse(e)
    }
}

/// Why an id could not be rewritten.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RewriteError {
    /// The message itself is not a valid single JSON-RPC message.
    Message(Error),
    /// A batch holds many ids; rewrite its elements one by one.
    Batch,
    /// A notification (or an error response without id) has no id to replace.
    NoId,
    /// The replacement is not exactly one JSON string or integer token.
    NewId,
}

impl fmt::Display for RewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RewriteError::Message(e) => e.fmt(f),
            RewriteError::Batch => f.write_str("cannot rewrite the id of a batch; rewrite each element"),
            RewriteError::NoId => f.write_str("the message has no \"id\" to rewrite"),
            RewriteError::NewId => f.write_str(
                "the new id must be exactly one JSON string or integer, without surrounding whitespace",
            ),
        }
    }
}

impl std::error::Error for RewriteError {}

impl From<Error> for RewriteError {
    fn from(e: Error) -> Self {
        RewriteError::Message(e)
    }
}
