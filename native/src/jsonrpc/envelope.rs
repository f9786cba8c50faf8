//! Classifies a JSON-RPC 2.0 message and locates its members in one pass over the bytes.

use std::borrow::Cow;

use super::error::{Error, Invalid, RewriteError};
use super::scanner::{Scanner, Span, Value, ValueKind, decode_string};

/// What a single JSON-RPC message is, which decides where the gateway routes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Has `method` and an `id`; expects a response.
    Request,
    /// Has `method` and no `id`; is never answered.
    Notification,
    /// Has `result`.
    Result,
    /// Has `error`.
    Error,
}

impl Kind {
    /// The lowercase name used in the Python API, logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Notification => "notification",
            Kind::Result => "result",
            Kind::Error => "error",
        }
    }
}

/// Where the parts of one valid message are. Spans index the buffer given to [`scan`] and
/// are raw: the id is its exact source text (`"abc"`, `42`), so it can be echoed or spliced
/// without re-serializing, and `params` / `result` / `error` are never decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope {
    pub kind: Kind,
    /// The `id` value: a string or integer, or `null` in an error response that answers a
    /// message whose id could not be read. `None` when there is no `id` member.
    pub id: Option<Span>,
    /// The `method` string token, quotes and escapes included; see [`Envelope::method`].
    pub method: Option<Span>,
    /// `params` of a request or notification (an object or array), when present.
    pub params: Option<Span>,
    pub result: Option<Span>,
    pub error: Option<Span>,
    /// `error.code` of an error response.
    pub error_code: Option<i64>,
}

impl Envelope {
    /// The decoded method name. Borrows from `buf` unless the name contains escapes.
    /// `buf` must be the buffer this envelope was scanned from.
    pub fn method<'a>(&self, buf: &'a [u8]) -> Option<Cow<'a, str>> {
        let span = self.method?;
        Some(decode_string(span.slice(buf)).expect("scan validated the method string"))
    }

    /// The three pieces of the message with its id replaced by `new_id`: everything before
    /// the id, `new_id`, everything after. Concatenating them is the only copy a rewrite
    /// needs, and callers can write them straight into their output buffer.
    pub fn id_splice<'a>(
        &self,
        buf: &'a [u8],
        new_id: &'a [u8],
    ) -> Result<[&'a [u8]; 3], RewriteError> {
        let id = self.id.ok_or(RewriteError::NoId)?;
        if !is_valid_id(new_id) {
            return Err(RewriteError::NewId);
        }
        Ok([&buf[..id.start], new_id, &buf[id.end..]])
    }
}

/// One message or a batch of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    Single(Envelope),
    /// Spans of the batch elements, in order. They are valid JSON but not yet checked as
    /// messages: JSON-RPC answers each invalid element on its own, so scan each with
    /// [`scan_message`].
    Batch(Vec<Span>),
}

/// Scans a message or a batch. A top-level array is a batch; anything else must be one
/// message object.
pub fn scan(buf: &[u8]) -> Result<Message, Error> {
    let mut scanner = Scanner::new(buf);
    scanner.skip_whitespace();
    if scanner.peek() == Some(b'[') {
        return batch(scanner).map(Message::Batch);
    }
    single(scanner, buf).map(Message::Single)
}

/// Scans exactly one message; an array is rejected as not an object. This is how batch
/// elements are scanned, since batches do not nest.
pub fn scan_message(buf: &[u8]) -> Result<Envelope, Error> {
    single(Scanner::new(buf), buf)
}

/// Splits a batch into the spans of its elements, validating the whole array as JSON first
/// (a batch that is not JSON gets one parse error, not one per element).
pub fn split_batch(buf: &[u8]) -> Result<Vec<Span>, Error> {
    let mut scanner = Scanner::new(buf);
    scanner.skip_whitespace();
    if scanner.peek() == Some(b'[') {
        return batch(scanner);
    }
    let value = scanner.value()?;
    scanner.end()?;
    Err(Error::invalid(Invalid::NotABatch(value.kind), None))
}

/// Replaces the id of one message with `new_id` (the raw text of a JSON string or integer),
/// copying the message once.
pub fn rewrite_id(buf: &[u8], new_id: &[u8]) -> Result<Vec<u8>, RewriteError> {
    match scan(buf)? {
        Message::Single(envelope) => Ok(envelope.id_splice(buf, new_id)?.concat()),
        Message::Batch(_) => Err(RewriteError::Batch),
    }
}

/// Whether `raw` is exactly one JSON string or integer token, the ids we accept and emit.
pub fn is_valid_id(raw: &[u8]) -> bool {
    if !matches!(raw.first(), Some(b'"' | b'-' | b'0'..=b'9')) {
        return false;
    }
    let mut scanner = Scanner::new(raw);
    matches!(scanner.value(), Ok(v) if is_id_kind(v.kind)) && scanner.pos() == raw.len()
}

fn is_id_kind(kind: ValueKind) -> bool {
    matches!(kind, ValueKind::String { .. } | ValueKind::Integer)
}

fn batch(mut scanner: Scanner<'_>) -> Result<Vec<Span>, Error> {
    let mut elements = Vec::new();
    scanner.array(|element| elements.push(element.span))?;
    scanner.end()?;
    if elements.is_empty() {
        return Err(Error::invalid(Invalid::EmptyBatch, None));
    }
    Ok(elements)
}

fn single(mut scanner: Scanner<'_>, buf: &[u8]) -> Result<Envelope, Error> {
    scanner.skip_whitespace();
    if scanner.peek() != Some(b'{') {
        // Syntax first: `[1,` is a parse error even though it is not an object either.
        let value = scanner.value()?;
        scanner.end()?;
        return Err(Error::invalid(Invalid::NotAnObject(value.kind), None));
    }
    let mut members = Members::new(&ENVELOPE_MEMBERS);
    scanner.object(|key, value| members.record(buf, key, value))?;
    scanner.end()?;
    envelope(buf, &members)
}

const JSONRPC: usize = 0;
const ID: usize = 1;
const METHOD: usize = 2;
const PARAMS: usize = 3;
const RESULT: usize = 4;
const ERROR: usize = 5;
const ENVELOPE_MEMBERS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];

const CODE: usize = 0;
const MESSAGE: usize = 1;
const ERROR_MEMBERS: [&str; 3] = ["code", "message", "data"];

/// The first occurrence of each member we care about, plus which ones were repeated.
/// Other members are skipped (JSON-RPC lets messages carry extensions).
struct Members<const N: usize> {
    names: &'static [&'static str; N],
    values: [Option<Value>; N],
    duplicates: u8,
}

impl<const N: usize> Members<N> {
    fn new(names: &'static [&'static str; N]) -> Self {
        Members {
            names,
            values: [None; N],
            duplicates: 0,
        }
    }

    fn record(&mut self, buf: &[u8], key: Value, value: Value) {
        let Some(index) = self.index_of(buf, key) else {
            // A spelling a case-insensitive peer takes for a member (Go's encoding/json: `Method`,
            // `paramſ`) is that member repeated: it would read one the gateway did not.
            if let Some(index) = self.folded_index_of(buf, key) {
                self.duplicates |= 1 << index;
            }
            return;
        };
        if self.values[index].is_some() {
            self.duplicates |= 1 << index;
        } else {
            self.values[index] = Some(value);
        }
    }

    /// Matches the key by its decoded value, so `"\u006dethod"` is `method` here exactly as
    /// it is for the peer that will decode it.
    fn index_of(&self, buf: &[u8], key: Value) -> Option<usize> {
        let token = key.span.slice(buf);
        match key.kind {
            ValueKind::String { escaped: false } => {
                let name = &token[1..token.len() - 1];
                self.names.iter().position(|n| n.as_bytes() == name)
            }
            ValueKind::String { escaped: true } => {
                let name = decode_string(token).ok()?;
                self.names.iter().position(|n| *n == name)
            }
            _ => None,
        }
    }

    /// The member `key` matches the way Go's `encoding/json` matches names (ASCII case ignored,
    /// `ſ` U+017F as `s`, the Kelvin sign U+212A as `k`), for a key that is not one exactly.
    fn folded_index_of(&self, buf: &[u8], key: Value) -> Option<usize> {
        let token = key.span.slice(buf);
        let name = decode_string(token).ok()?;
        self.names.iter().position(|n| folds_to(&name, n))
    }

    fn get(&self, index: usize) -> Option<Value> {
        self.values[index]
    }

    fn is_duplicated(&self, index: usize) -> bool {
        self.duplicates & (1 << index) != 0
    }

    fn first_duplicate(&self) -> Option<&'static str> {
        (0..N)
            .find(|&i| self.is_duplicated(i))
            .map(|i| self.names[i])
    }
}

/// Whether `key` folds to `name` (lower-case ASCII) as Go's `encoding/json` folds names, or as
/// segmentio/encoding before 0.5.4 (the Go SDK's first fix) also did: trailing U+0000 ignored.
fn folds_to(key: &str, name: &str) -> bool {
    let mut chars = key.trim_end_matches('\0').chars();
    for expected in name.bytes() {
        let folded = match chars.next() {
            Some('\u{17F}') => b's',
            Some('\u{212A}') => b'k',
            Some(c) if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return false,
        };
        if folded != expected {
            return false;
        }
    }
    chars.next().is_none()
}

fn envelope(buf: &[u8], members: &Members<6>) -> Result<Envelope, Error> {
    let id_value = members.get(ID);
    // The id echoed in an error answer: only one we could read unambiguously.
    let readable_id = id_value
        .filter(|v| is_id_kind(v.kind) && !members.is_duplicated(ID))
        .map(|v| v.span);
    let invalid = |reason| Error::invalid(reason, readable_id);

    if let Some(name) = members.first_duplicate() {
        return Err(invalid(Invalid::DuplicateMember(name)));
    }
    match members.get(JSONRPC) {
        None => return Err(invalid(Invalid::MissingVersion)),
        Some(v) if !is_version_2(buf, v) => return Err(invalid(Invalid::WrongVersion)),
        Some(_) => {}
    }
    let id_is_null = match id_value.map(|v| v.kind) {
        Some(kind) if is_id_kind(kind) => false,
        Some(ValueKind::Null) => true,
        Some(other) => return Err(invalid(Invalid::IdType(other))),
        None => false,
    };

    let result = members.get(RESULT);
    let error = members.get(ERROR);
    let mut envelope = Envelope {
        kind: Kind::Request,
        id: id_value.map(|v| v.span),
        method: None,
        params: None,
        result: result.map(|v| v.span),
        error: error.map(|v| v.span),
        error_code: None,
    };

    if let Some(method) = members.get(METHOD) {
        if result.is_some() || error.is_some() {
            return Err(invalid(Invalid::MethodWithResponse));
        }
        if !matches!(method.kind, ValueKind::String { .. }) {
            return Err(invalid(Invalid::MethodType(method.kind)));
        }
        if let Some(params) = members.get(PARAMS) {
            if !matches!(params.kind, ValueKind::Object | ValueKind::Array) {
                return Err(invalid(Invalid::ParamsType(params.kind)));
            }
            envelope.params = Some(params.span);
        }
        envelope.method = Some(method.span);
        envelope.kind = match id_value {
            None => Kind::Notification,
            Some(_) if id_is_null => return Err(invalid(Invalid::NullId)),
            Some(_) => Kind::Request,
        };
        return Ok(envelope);
    }

    match (result, error) {
        (Some(_), Some(_)) => Err(invalid(Invalid::ResultAndError)),
        (None, None) => Err(invalid(Invalid::NoMethodOrResponse)),
        (Some(_), None) => {
            if id_value.is_none() {
                return Err(invalid(Invalid::ResultWithoutId));
            }
            if id_is_null {
                return Err(invalid(Invalid::NullId));
            }
            envelope.kind = Kind::Result;
            Ok(envelope)
        }
        // An error response may have a null or absent id: it answers a message whose id
        // could not be read (JSON-RPC uses null, MCP leaves it out).
        (None, Some(error)) => {
            envelope.error_code = Some(error_code(buf, error).map_err(invalid)?);
            envelope.kind = Kind::Error;
            Ok(envelope)
        }
    }
}

/// `jsonrpc` must be the string `2.0`, compared decoded so an escaped spelling counts.
fn is_version_2(buf: &[u8], value: Value) -> bool {
    let token = value.span.slice(buf);
    match value.kind {
        ValueKind::String { escaped: false } => token == b"\"2.0\"",
        ValueKind::String { escaped: true } => decode_string(token).is_ok_and(|s| s == "2.0"),
        _ => false,
    }
}

/// Checks the error object shape and returns its code.
fn error_code(buf: &[u8], error: Value) -> Result<i64, Invalid> {
    if error.kind != ValueKind::Object {
        return Err(Invalid::ErrorType(error.kind));
    }
    let mut members = Members::new(&ERROR_MEMBERS);
    Scanner::at(buf, error.span.start)
        .object(|key, value| members.record(buf, key, value))
        .expect("scan validated the error object");
    if let Some(name) = members.first_duplicate() {
        return Err(Invalid::DuplicateErrorMember(name));
    }
    let code = match members.get(CODE) {
        None => return Err(Invalid::ErrorCode(None)),
        Some(v) if v.kind == ValueKind::Integer => std::str::from_utf8(v.span.slice(buf))
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .ok_or(Invalid::ErrorCode(Some(ValueKind::Integer)))?,
        Some(v) => return Err(Invalid::ErrorCode(Some(v.kind))),
    };
    match members.get(MESSAGE) {
        Some(Value {
            kind: ValueKind::String { .. },
            ..
        }) => Ok(code),
        other => Err(Invalid::ErrorMessage(other.map(|v| v.kind))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonrpc::error::{ErrorKind, INVALID_REQUEST, PARSE_ERROR};
    use crate::jsonrpc::scanner::Syntax;

    fn one(text: &str) -> Envelope {
        scan_message(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn invalid(text: &str) -> (Invalid, Option<String>) {
        let buf = text.as_bytes();
        let e = scan_message(buf).expect_err(text);
        let id =
            e.id.map(|s| String::from_utf8(s.slice(buf).to_vec()).unwrap());
        match e.kind {
            ErrorKind::Invalid(reason) => {
                assert_eq!(e.code(), INVALID_REQUEST);
                (reason, id)
            }
            ErrorKind::Parse(p) => panic!("{text}: parse error {p}"),
        }
    }

    fn text(buf: &[u8], span: Option<Span>) -> Option<&str> {
        span.map(|s| std::str::from_utf8(s.slice(buf)).unwrap())
    }

    #[test]
    fn request() {
        let buf = br#" {"jsonrpc":"2.0","id":"a\"b","method":"tools/call","params":{"name":"x"}} "#;
        let e = scan_message(buf).unwrap();
        assert_eq!(e.kind, Kind::Request);
        assert_eq!(text(buf, e.id), Some(r#""a\"b""#));
        assert_eq!(e.method(buf).as_deref(), Some("tools/call"));
        assert_eq!(text(buf, e.params), Some(r#"{"name":"x"}"#));
        assert_eq!((e.result, e.error, e.error_code), (None, None, None));
    }

    #[test]
    fn members_in_any_order_with_extensions() {
        let buf = br#"{"params":[1,2],"x":{"id":5},"method":"m","id":-7,"jsonrpc":"2.0"}"#;
        let e = scan_message(buf).unwrap();
        assert_eq!(e.kind, Kind::Request);
        assert_eq!(text(buf, e.id), Some("-7"));
        assert_eq!(text(buf, e.params), Some("[1,2]"));
    }

    #[test]
    fn notification_and_escaped_method() {
        let buf = br#"{"jsonrpc":"2.0","method":"notifications/\u0063ancelled"}"#;
        let e = scan_message(buf).unwrap();
        assert_eq!(e.kind, Kind::Notification);
        assert_eq!(e.id, None);
        assert_eq!(e.params, None);
        assert_eq!(e.method(buf).as_deref(), Some("notifications/cancelled"));
    }

    #[test]
    fn responses() {
        let buf = br#"{"jsonrpc":"2.0","id":12345678901234567890123,"result":{"tools":[]}}"#;
        let e = scan_message(buf).unwrap();
        assert_eq!(e.kind, Kind::Result);
        assert_eq!(text(buf, e.id), Some("12345678901234567890123"));
        assert_eq!(text(buf, e.result), Some(r#"{"tools":[]}"#));

        // JSON-RPC allows any result value.
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":1,"result":null}"#).kind,
            Kind::Result
        );

        let buf =
            br#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"no","data":[1]}}"#;
        let e = scan_message(buf).unwrap();
        assert_eq!(e.kind, Kind::Error);
        assert_eq!(e.error_code, Some(-32601));
        assert_eq!(
            text(buf, e.error),
            Some(r#"{"code":-32601,"message":"no","data":[1]}"#)
        );

        let buf = br#"{"jsonrpc":"2.0","id":null,"error":{"message":"bad","code":-32700}}"#;
        let e = scan_message(buf).unwrap();
        assert_eq!((e.kind, text(buf, e.id)), (Kind::Error, Some("null")));
        let e = one(r#"{"jsonrpc":"2.0","error":{"code":-0,"message":""}}"#);
        assert_eq!((e.kind, e.id, e.error_code), (Kind::Error, None, Some(0)));
        let e = one(&format!(
            r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":{},"message":""}}}}"#,
            i64::MIN
        ));
        assert_eq!(e.error_code, Some(i64::MIN));
        // `params` in a response is an unknown extension member, not reported.
        assert_eq!(
            one(r#"{"jsonrpc":"2.0","id":1,"result":1,"params":3}"#).params,
            None
        );
    }

    #[test]
    fn invalid_shapes() {
        use Invalid::*;
        let cases: &[(&str, Invalid, Option<&str>)] = &[
            (r#"[]"#, NotAnObject(ValueKind::Array), None),
            (
                r#""x""#,
                NotAnObject(ValueKind::String { escaped: false }),
                None,
            ),
            (r#" 42 "#, NotAnObject(ValueKind::Integer), None),
            (r#"null"#, NotAnObject(ValueKind::Null), None),
            (r#"{"id":1,"method":"m"}"#, MissingVersion, Some("1")),
            (
                r#"{"jsonrpc":"1.0","id":1,"method":"m"}"#,
                WrongVersion,
                Some("1"),
            ),
            (
                r#"{"jsonrpc":2.0,"id":1,"method":"m"}"#,
                WrongVersion,
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0 ","id":1,"method":"m"}"#,
                WrongVersion,
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1.0,"method":"m"}"#,
                IdType(ValueKind::Float),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1e3,"method":"m"}"#,
                IdType(ValueKind::Float),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":true,"method":"m"}"#,
                IdType(ValueKind::True),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":{},"method":"m"}"#,
                IdType(ValueKind::Object),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":[1],"result":1}"#,
                IdType(ValueKind::Array),
                None,
            ),
            (r#"{"jsonrpc":"2.0","id":null,"method":"m"}"#, NullId, None),
            (r#"{"jsonrpc":"2.0","id":null,"result":{}}"#, NullId, None),
            (
                r#"{"jsonrpc":"2.0","id":"q","method":5}"#,
                MethodType(ValueKind::Integer),
                Some(r#""q""#),
            ),
            (
                r#"{"jsonrpc":"2.0","method":null}"#,
                MethodType(ValueKind::Null),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","params":"p"}"#,
                ParamsType(ValueKind::String { escaped: false }),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","method":"m","params":null}"#,
                ParamsType(ValueKind::Null),
                None,
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","result":{}}"#,
                MethodWithResponse,
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"method":"m","error":{}}"#,
                MethodWithResponse,
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":""}}"#,
                ResultAndError,
                Some("1"),
            ),
            (r#"{"jsonrpc":"2.0","id":1}"#, NoMethodOrResponse, Some("1")),
            (r#"{"jsonrpc":"2.0"}"#, NoMethodOrResponse, None),
            (r#"{"jsonrpc":"2.0","result":{}}"#, ResultWithoutId, None),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":"boom"}"#,
                ErrorType(ValueKind::String { escaped: false }),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"message":"m"}}"#,
                ErrorCode(None),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":"1","message":"m"}}"#,
                ErrorCode(Some(ValueKind::String { escaped: false })),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1.5,"message":"m"}}"#,
                ErrorCode(Some(ValueKind::Float)),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":9223372036854775808,"message":"m"}}"#,
                ErrorCode(Some(ValueKind::Integer)),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1}}"#,
                ErrorMessage(None),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":null}}"#,
                ErrorMessage(Some(ValueKind::Null)),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"a","code":2}}"#,
                DuplicateErrorMember("code"),
                Some("1"),
            ),
            (
                r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"a","data":1,"data":2}}"#,
                DuplicateErrorMember("data"),
                Some("1"),
            ),
        ];
        for (message, reason, id) in cases {
            assert_eq!(
                invalid(message),
                (*reason, id.map(String::from)),
                "{message}"
            );
        }
    }

    #[test]
    fn duplicate_members() {
        use Invalid::DuplicateMember;
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","id":1,"method":"a","method":"b"}"#),
            (DuplicateMember("method"), Some("1".into()))
        );
        // Escaped names are the same member once decoded.
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","id":1,"method":"a","\u006dethod":"b"}"#),
            (DuplicateMember("method"), Some("1".into()))
        );
        // A repeated id is ambiguous, so no id is echoed.
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"a"}"#),
            (DuplicateMember("id"), None)
        );
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","jsonrpc":"2.0","id":1,"method":"a"}"#),
            (DuplicateMember("jsonrpc"), Some("1".into()))
        );
        // Unknown members and nested objects may repeat names: not our envelope.
        one(r#"{"jsonrpc":"2.0","id":1,"method":"a","x":1,"x":2,"params":{"k":1,"k":2}}"#);
        // Keys a case-insensitive peer (Go's encoding/json) reads as a member are that member
        // repeated; other look-alikes are other members.
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"a","Method":"b"}"#,
            r#"{"jsonrpc":"2.0","id":1,"METHOD":"b","method":"a"}"#,
            r#"{"jsonrpc":"2.0","id":1,"Method":"b"}"#,
        ] {
            assert_eq!(invalid(text).0, DuplicateMember("method"), "{text}");
        }
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","id":1,"method":"a","paramſ":{}}"#).0,
            DuplicateMember("params")
        );
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","id":1,"method":"a","ID":2}"#),
            (DuplicateMember("id"), None)
        );
        assert_eq!(
            invalid(r#"{"jsonrpc":"2.0","id":1,"method":"a","method\u0000":"b"}"#).0,
            DuplicateMember("method")
        );
        one(r#"{"jsonrpc":"2.0","id":1,"method":"a","method ":"c","metho":1,"methods":2}"#);
    }

    #[test]
    fn escaped_version_and_keys() {
        let e = one(r#"{"\u006asonrpc":"\u0032.0","\u0069d":7,"method":"m"}"#);
        assert_eq!(e.kind, Kind::Request);
    }

    #[test]
    fn parse_errors_win_and_carry_no_id() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"m""#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m"} x"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"m",}"#,
            r#"[1,"#,
            "",
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"a":NaN}}"#,
        ] {
            let e = scan_message(text.as_bytes()).expect_err(text);
            assert_eq!((e.code(), e.id), (PARSE_ERROR, None), "{text}");
        }
        let e = scan_message(br#"{"jsonrpc":"2.0","id":1,"method":"m"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Parse error: expected '\"' to close the string at byte 35, found end of input"
        );
        let e = scan_message(br#"{"id":1,"method":"m"}"#).unwrap_err();
        assert_eq!(e.to_string(), "Invalid Request: missing member \"jsonrpc\"");
    }

    #[test]
    fn batches() {
        let buf = br#" [ {"jsonrpc":"2.0","method":"a"} , 1, [] ] "#;
        let Message::Batch(elements) = scan(buf).unwrap() else {
            panic!("not a batch")
        };
        let texts: Vec<_> = elements
            .iter()
            .map(|s| text(buf, Some(*s)).unwrap())
            .collect();
        assert_eq!(texts, [r#"{"jsonrpc":"2.0","method":"a"}"#, "1", "[]"]);
        assert_eq!(split_batch(buf).unwrap(), elements);
        // Elements are messages on their own; a nested array is not a batch.
        assert_eq!(
            scan_message(elements[2].slice(buf)).unwrap_err().kind,
            ErrorKind::Invalid(Invalid::NotAnObject(ValueKind::Array))
        );

        let e = scan(b" [ ] ").unwrap_err();
        assert_eq!(
            (e.kind, e.code()),
            (ErrorKind::Invalid(Invalid::EmptyBatch), INVALID_REQUEST)
        );
        assert_eq!(scan(b"[{},").unwrap_err().code(), PARSE_ERROR);
        assert_eq!(
            split_batch(br#"{"jsonrpc":"2.0","method":"a"}"#)
                .unwrap_err()
                .kind,
            ErrorKind::Invalid(Invalid::NotABatch(ValueKind::Object))
        );
        assert_eq!(split_batch(b"{").unwrap_err().code(), PARSE_ERROR);
        assert!(matches!(
            scan(br#"{"jsonrpc":"2.0","method":"a"}"#),
            Ok(Message::Single(_))
        ));
    }

    #[test]
    fn rewriting_ids() {
        let buf = br#"{"jsonrpc":"2.0", "id" : "client-1" ,"method":"m"}"#;
        let out = rewrite_id(buf, b"17").unwrap();
        assert_eq!(out, br#"{"jsonrpc":"2.0", "id" : 17 ,"method":"m"}"#);
        let out = rewrite_id(&out, br#""gw\"2""#).unwrap();
        assert_eq!(out, br#"{"jsonrpc":"2.0", "id" : "gw\"2" ,"method":"m"}"#);
        assert_eq!(scan_message(&out).unwrap().kind, Kind::Request);

        let error = br#"{"jsonrpc":"2.0","id":null,"error":{"code":1,"message":""}}"#;
        assert_eq!(
            rewrite_id(error, b"3").unwrap(),
            br#"{"jsonrpc":"2.0","id":3,"error":{"code":1,"message":""}}"#
        );

        let notification = br#"{"jsonrpc":"2.0","method":"m"}"#;
        assert_eq!(rewrite_id(notification, b"1"), Err(RewriteError::NoId));
        assert_eq!(rewrite_id(b"[{}]", b"1"), Err(RewriteError::Batch));
        assert!(matches!(
            rewrite_id(b"{", b"1"),
            Err(RewriteError::Message(_))
        ));
        for bad in [
            &b""[..],
            b" 1",
            b"1 ",
            b"1.0",
            b"null",
            b"{}",
            b"\"a",
            b"1,2",
            b"01",
            b"true",
        ] {
            assert_eq!(rewrite_id(buf, bad), Err(RewriteError::NewId), "{bad:?}");
        }
        for good in [
            &b"0"[..],
            b"-5",
            b"\"\"",
            b"\"\\u00e9\"",
            b"123456789012345678901234567890",
        ] {
            assert!(is_valid_id(good), "{good:?}");
        }
    }

    #[test]
    fn lone_surrogate_in_method_is_a_parse_error() {
        let e = scan_message(br#"{"jsonrpc":"2.0","method":"\ud800"}"#).unwrap_err();
        assert!(matches!(e.kind, ErrorKind::Parse(p) if p.syntax == Syntax::LoneSurrogate(0xD800)));
    }
}
