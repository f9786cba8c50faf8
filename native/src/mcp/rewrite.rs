//! Rewriting a request routed to one target: its JSON-RPC id (the gateway's own id upstream)
//! and the one string in `params` that names what the target serves (`name`, `uri`,
//! `ref.name`, `ref.uri`), from the exposed form back to the target's own.
//!
//! Both edits are spans found in one scan, spliced in one copy; every other byte of the
//! message is kept.

use std::fmt;

use crate::jsonrpc::{self, Envelope, Message, ParseError, Span, Value, ValueKind, is_valid_id};

use super::json::{Sink, Walker, escaped_len, key_is, write_escaped};

/// The string at a dotted path in `params` and its replacement. The path has one or two
/// member names (`name`, `ref.uri`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParamEdit<'e> {
    pub path: &'e str,
    pub value: &'e str,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestRewriteError {
    /// Not a valid JSON-RPC message.
    Message(jsonrpc::Error),
    Batch,
    /// A new id was given for a message without one.
    NoId,
    /// The new id is not exactly one JSON string or integer token.
    NewId,
    /// The path is not one or two non-empty names separated by `.`.
    Path(String),
    /// No `params`, or `params` is an array.
    NoParams,
    /// The path (or its first part) does not exist.
    Missing(String),
    /// The first part of a two-part path is not an object.
    NotObject(String, ValueKind),
    NotString(String, ValueKind),
    /// A member on the path appears twice: the target might read the other copy.
    Duplicate(String),
}

impl fmt::Display for RequestRewriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestRewriteError::Message(e) => e.fmt(f),
            RequestRewriteError::Batch => {
                f.write_str("cannot rewrite a batch; rewrite each element")
            }
            RequestRewriteError::NoId => f.write_str("the message has no \"id\" to rewrite"),
            RequestRewriteError::NewId => f.write_str(
                "the new id must be exactly one JSON string or integer, without surrounding \
                 whitespace",
            ),
            RequestRewriteError::Path(path) => write!(
                f,
                "param path {path:?} must be one or two non-empty member names joined by '.'"
            ),
            RequestRewriteError::NoParams => f.write_str("the message has no \"params\" object"),
            RequestRewriteError::Missing(path) => write!(f, "params.{path} does not exist"),
            RequestRewriteError::NotObject(path, found) => {
                write!(f, "params.{path} must be an object, found {found}")
            }
            RequestRewriteError::NotString(path, found) => {
                write!(f, "params.{path} must be a string, found {found}")
            }
            RequestRewriteError::Duplicate(path) => write!(f, "params.{path} appears twice"),
        }
    }
}

impl std::error::Error for RequestRewriteError {}

impl From<jsonrpc::Error> for RequestRewriteError {
    fn from(e: jsonrpc::Error) -> Self {
        RequestRewriteError::Message(e)
    }
}

#[derive(Clone, Copy, Debug)]
enum Replacement<'a> {
    /// Raw JSON text (the new id).
    Raw(&'a [u8]),
    /// A string, escaped and quoted on output.
    Text(&'a str),
}

impl Replacement<'_> {
    fn len(&self) -> usize {
        match self {
            Replacement::Raw(raw) => raw.len(),
            Replacement::Text(text) => escaped_len(text) + 2,
        }
    }

    fn write(&self, out: &mut impl Sink) {
        match self {
            Replacement::Raw(raw) => out.put(raw),
            Replacement::Text(text) => {
                out.put(b"\"");
                write_escaped(out, text);
                out.put(b"\"");
            }
        }
    }
}

/// A planned rewrite: at most two non-overlapping spans to replace, in order.
#[derive(Clone, Debug)]
pub struct RequestRewrite<'a> {
    buf: &'a [u8],
    edits: Vec<(Span, Replacement<'a>)>,
    len: usize,
}

impl<'a> RequestRewrite<'a> {
    /// Plans the edits: `new_id` (raw JSON, a string or integer token) replaces the message
    /// id, and `edit` replaces a string in `params`.
    pub fn plan(
        buf: &'a [u8],
        new_id: Option<&'a [u8]>,
        edit: Option<ParamEdit<'a>>,
    ) -> Result<Self, RequestRewriteError> {
        let envelope = match jsonrpc::scan(buf)? {
            Message::Single(envelope) => envelope,
            Message::Batch(_) => return Err(RequestRewriteError::Batch),
        };
        let mut edits = Vec::with_capacity(2);
        if let Some(new_id) = new_id {
            let id = envelope.id.ok_or(RequestRewriteError::NoId)?;
            if !is_valid_id(new_id) {
                return Err(RequestRewriteError::NewId);
            }
            edits.push((id, Replacement::Raw(new_id)));
        }
        if let Some(edit) = edit {
            let span = find_param_string(buf, &envelope, edit.path)?;
            edits.push((span, Replacement::Text(edit.value)));
        }
        edits.sort_by_key(|(span, _)| span.start);
        let len = edits.iter().fold(buf.len(), |len, (span, replacement)| {
            len - span.len() + replacement.len()
        });
        Ok(RequestRewrite { buf, edits, len })
    }

    /// The exact length of the rewritten message.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn write(&self, out: &mut impl Sink) {
        let mut at = 0;
        for (span, replacement) in &self.edits {
            out.put(&self.buf[at..span.start]);
            replacement.write(out);
            at = span.end;
        }
        out.put(&self.buf[at..]);
    }
}

/// Rewrites a request's id and/or one string in its params; see [`RequestRewrite`].
pub fn rewrite_request(
    buf: &[u8],
    new_id: Option<&[u8]>,
    edit: Option<ParamEdit<'_>>,
) -> Result<Vec<u8>, RequestRewriteError> {
    let plan = RequestRewrite::plan(buf, new_id, edit)?;
    let mut out = Vec::with_capacity(plan.len());
    plan.write(&mut out);
    Ok(out)
}

/// Locates the string token at `params.<path>`.
fn find_param_string(
    buf: &[u8],
    envelope: &Envelope,
    path: &str,
) -> Result<Span, RequestRewriteError> {
    let (first, second) = match path.split_once('.') {
        Some((first, second)) => (first, Some(second)),
        None => (path, None),
    };
    let bad_part = |part: &str| part.is_empty() || part.contains('.');
    if bad_part(first) || second.is_some_and(bad_part) {
        return Err(RequestRewriteError::Path(path.to_owned()));
    }
    let params = envelope.params.ok_or(RequestRewriteError::NoParams)?;
    if buf[params.start] != b'{' {
        return Err(RequestRewriteError::NoParams);
    }
    let found = member_in(buf, params.start, first, first)?
        .ok_or_else(|| RequestRewriteError::Missing(first.to_owned()))?;
    let (found, path) = match second {
        None => (found, path),
        Some(second) => {
            if found.kind != ValueKind::Object {
                return Err(RequestRewriteError::NotObject(first.to_owned(), found.kind));
            }
            let inner = member_in(buf, found.span.start, second, path)?
                .ok_or_else(|| RequestRewriteError::Missing(path.to_owned()))?;
            (inner, path)
        }
    };
    if !matches!(found.kind, ValueKind::String { .. }) {
        return Err(RequestRewriteError::NotString(path.to_owned(), found.kind));
    }
    Ok(found.span)
}

/// The value of member `name` of the object at `start` (already validated), refusing a
/// repeated member; `path` names the member in errors.
fn member_in(
    buf: &[u8],
    start: usize,
    name: &str,
    path: &str,
) -> Result<Option<Value>, RequestRewriteError> {
    let mut found = None;
    let mut repeated = false;
    let mut w = Walker::at(buf, start);
    w.object(|w, key| {
        let value = w.value()?;
        if key_is(buf, key, name) {
            repeated |= found.is_some();
            found = Some(value);
        }
        Ok::<_, ParseError>(())
    })
    .expect("the message was validated");
    if repeated {
        return Err(RequestRewriteError::Duplicate(path.to_owned()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(
        message: &str,
        new_id: Option<&str>,
        edit: Option<(&str, &str)>,
    ) -> Result<String, RequestRewriteError> {
        let edit = edit.map(|(path, value)| ParamEdit { path, value });
        let out = rewrite_request(message.as_bytes(), new_id.map(str::as_bytes), edit)?;
        let plan =
            RequestRewrite::plan(message.as_bytes(), new_id.map(str::as_bytes), edit).unwrap();
        assert_eq!(plan.len(), out.len());
        assert!(!plan.is_empty());
        let text = String::from_utf8(out).unwrap();
        crate::jsonrpc::scan_message(text.as_bytes()).expect(&text);
        Ok(text)
    }

    const CALL: &str = r#"{"jsonrpc":"2.0", "id":"c1","method":"tools/call","params":{ "name" : "math_add","arguments":{"name":"keep","a":1}}}"#;

    #[test]
    fn id_and_name_in_one_pass() {
        assert_eq!(
            rewrite(CALL, Some("42"), Some(("name", "add"))).unwrap(),
            r#"{"jsonrpc":"2.0", "id":42,"method":"tools/call","params":{ "name" : "add","arguments":{"name":"keep","a":1}}}"#
        );
        assert_eq!(
            rewrite(CALL, None, Some(("name", "a\"d\nd\u{e9}"))).unwrap(),
            r#"{"jsonrpc":"2.0", "id":"c1","method":"tools/call","params":{ "name" : "a\"d\nd\u{e9}","arguments":{"name":"keep","a":1}}}"#
                .replace("\\u{e9}", "\u{e9}")
        );
        assert_eq!(
            rewrite(CALL, Some(r#""gw-7""#), None).unwrap(),
            CALL.replace(r#""c1""#, r#""gw-7""#)
        );
        assert_eq!(rewrite(CALL, None, None).unwrap(), CALL);
        // params before id.
        let early =
            r#"{"params":{"uri":"svc+memo:x"},"method":"resources/read","id":1,"jsonrpc":"2.0"}"#;
        assert_eq!(
            rewrite(early, Some("2"), Some(("uri", "memo:x"))).unwrap(),
            r#"{"params":{"uri":"memo:x"},"method":"resources/read","id":2,"jsonrpc":"2.0"}"#
        );
    }

    #[test]
    fn two_level_paths() {
        let complete = r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"p_greet"},"argument":{"name":"x","value":""}}}"#;
        assert_eq!(
            rewrite(complete, None, Some(("ref.name", "greet"))).unwrap(),
            complete.replace("p_greet", "greet")
        );
        let res = r#"{"jsonrpc":"2.0","id":3,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"s+f:{x}"}}}"#;
        assert_eq!(
            rewrite(res, Some("9"), Some(("ref.uri", "f:{x}"))).unwrap(),
            r#"{"jsonrpc":"2.0","id":9,"method":"completion/complete","params":{"ref":{"type":"ref/resource","uri":"f:{x}"}}}"#
        );
        // Escaped member names are found by their decoded value.
        let escaped =
            r#"{"jsonrpc":"2.0","id":3,"method":"m","params":{"r\u0065f":{"n\u0061me":"old"}}}"#;
        assert_eq!(
            rewrite(escaped, None, Some(("ref.name", "new"))).unwrap(),
            escaped.replace("old", "new")
        );
    }

    #[test]
    fn notifications_can_have_params_rewritten() {
        let note = r#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"s+f:x"}}"#;
        assert_eq!(
            rewrite(note, None, Some(("uri", "f:x"))).unwrap(),
            note.replace("s+f:x", "f:x")
        );
        assert_eq!(
            rewrite(note, Some("1"), None),
            Err(RequestRewriteError::NoId)
        );
    }

    #[test]
    fn errors() {
        use RequestRewriteError::*;
        let err = |message: &str, new_id: Option<&str>, path: &str| {
            rewrite(message, new_id, Some((path, "v"))).unwrap_err()
        };
        assert!(matches!(err("{", None, "name"), Message(_)));
        assert!(matches!(
            err(r#"{"id":1,"method":"m"}"#, None, "name"),
            Message(_)
        ));
        assert_eq!(
            err(r#"[{"jsonrpc":"2.0","method":"m"}]"#, None, "name"),
            Batch
        );
        assert_eq!(err(CALL, Some("1.5"), "name"), NewId);
        assert_eq!(err(CALL, Some(" 1"), "name"), NewId);
        for bad in ["", ".", "a.", ".a", "a.b.c", "ref..name"] {
            assert_eq!(err(CALL, None, bad), Path(bad.into()), "{bad}");
        }
        assert_eq!(err(CALL, None, "uri"), Missing("uri".into()));
        assert_eq!(err(CALL, None, "ref.name"), Missing("ref".into()));
        assert_eq!(
            err(CALL, None, "arguments.x"),
            Missing("arguments.x".into())
        );
        assert_eq!(
            err(CALL, None, "arguments"),
            NotString("arguments".into(), ValueKind::Object)
        );
        assert_eq!(
            err(CALL, None, "arguments.a"),
            NotString("arguments.a".into(), ValueKind::Integer)
        );
        assert_eq!(
            err(CALL, None, "name.x"),
            NotObject("name".into(), ValueKind::String { escaped: false })
        );
        let no_params = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        assert_eq!(err(no_params, None, "name"), NoParams);
        let array = r#"{"jsonrpc":"2.0","id":1,"method":"m","params":["name"]}"#;
        assert_eq!(err(array, None, "name"), NoParams);
        let twice =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}"#;
        assert_eq!(err(twice, None, "name"), Duplicate("name".into()));
        let twice =
            r#"{"jsonrpc":"2.0","id":1,"method":"m","params":{"ref":{"uri":"a","u\u0072i":"b"}}}"#;
        assert_eq!(err(twice, None, "ref.uri"), Duplicate("ref.uri".into()));
        assert_eq!(
            rewrite(twice, None, Some(("ref.name", "x"))).unwrap_err(),
            Missing("ref.name".into())
        );

        let messages = [
            (
                Path("a.b.c".into()),
                r#"param path "a.b.c" must be one or two non-empty member names joined by '.'"#,
            ),
            (NoParams, r#"the message has no "params" object"#),
            (Missing("ref.uri".into()), "params.ref.uri does not exist"),
            (
                NotObject("ref".into(), ValueKind::Array),
                "params.ref must be an object, found an array",
            ),
            (
                NotString("name".into(), ValueKind::Null),
                "params.name must be a string, found null",
            ),
            (Duplicate("name".into()), "params.name appears twice"),
            (NoId, r#"the message has no "id" to rewrite"#),
            (Batch, "cannot rewrite a batch; rewrite each element"),
        ];
        for (error, message) in messages {
            assert_eq!(error.to_string(), message);
        }
        let e = err(r#"{"jsonrpc":"2.0","id":1,"method":5}"#, None, "name");
        assert_eq!(
            e.to_string(),
            r#"Invalid Request: "method" must be a string, found an integer"#
        );
    }
}
