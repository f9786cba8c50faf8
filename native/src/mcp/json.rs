//! Small JSON tools for editing documents in place: a walker that descends into the few
//! containers we edit while validating everything else with the shared [`Scanner`], a test
//! of member names by their decoded value, and string escaping with exact lengths so
//! outputs can be allocated once.

use std::borrow::Cow;

use crate::jsonrpc::{ParseError, Scanner, Span, Syntax, Value, ValueKind, decode_string};

/// Walks a JSON text one container level at a time. Values the caller does not descend into
/// are validated by [`Scanner`] in one call, so each byte is scanned once.
///
/// Nesting depth is counted per [`Scanner`] call, so a document edited through the walker
/// may be nested a few levels deeper than [`crate::jsonrpc::MAX_DEPTH`]; the bound exists to
/// protect the stack, which a handful of walker levels do not threaten.
pub(crate) struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Walker { buf, pos: 0 }
    }

    pub(crate) fn at(buf: &'a [u8], pos: usize) -> Self {
        Walker { buf, pos }
    }

    /// The next byte after whitespace, without consuming it.
    pub(crate) fn peek(&mut self) -> Option<u8> {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.buf.get(self.pos) {
            self.pos += 1;
        }
        self.buf.get(self.pos).copied()
    }

    fn expected(&self, expected: &'static str) -> ParseError {
        ParseError {
            offset: self.pos,
            syntax: Syntax::Expected {
                expected,
                found: self.buf.get(self.pos).copied(),
            },
        }
    }

    /// Scans (and validates) one whole value.
    pub(crate) fn value(&mut self) -> Result<Value, ParseError> {
        let mut scanner = Scanner::at(self.buf, self.pos);
        let value = scanner.value()?;
        self.pos = scanner.pos();
        Ok(value)
    }

    /// Requires that only whitespace is left.
    pub(crate) fn end(&mut self) -> Result<(), ParseError> {
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.expected("end of input")),
        }
    }

    /// Walks the object that starts here (the caller checked for `{`), calling `member` with
    /// each key; `member` must consume the member's value, with [`Walker::value`] or by
    /// walking into it. Returns the object's span.
    pub(crate) fn object<E>(
        &mut self,
        mut member: impl FnMut(&mut Self, Value) -> Result<(), E>,
    ) -> Result<Span, E>
    where
        E: From<ParseError>,
    {
        let start = self.pos;
        debug_assert_eq!(self.buf.get(start), Some(&b'{'));
        self.pos += 1;
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Span {
                start,
                end: self.pos,
            });
        }
        let mut expected_key = "a string key or '}'";
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.expected(expected_key).into());
            }
            let key = self.value()?;
            if self.peek() != Some(b':') {
                return Err(self.expected("':' after the object key").into());
            }
            self.pos += 1;
            if self.peek().is_none() {
                return Err(self.expected("a JSON value").into());
            }
            member(self, key)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Span {
                        start,
                        end: self.pos,
                    });
                }
                _ => return Err(self.expected("',' or '}' after an object member").into()),
            }
            expected_key = "a string key";
        }
    }

    /// Walks the array that starts here (the caller checked for `[`), calling `element`,
    /// which must consume one element, at each one (whitespace skipped).
    pub(crate) fn array<E>(
        &mut self,
        mut element: impl FnMut(&mut Self) -> Result<(), E>,
    ) -> Result<Span, E>
    where
        E: From<ParseError>,
    {
        let start = self.pos;
        debug_assert_eq!(self.buf.get(start), Some(&b'['));
        self.pos += 1;
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Span {
                start,
                end: self.pos,
            });
        }
        loop {
            if self.peek().is_none() {
                return Err(self.expected("a JSON value").into());
            }
            element(self)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Span {
                        start,
                        end: self.pos,
                    });
                }
                _ => return Err(self.expected("',' or ']' after an array element").into()),
            }
        }
    }
}

/// Whether the string token `key` (quotes included, from a validated text) decodes to `name`.
/// Escape-free keys, the usual case, are compared without decoding.
pub(crate) fn key_is(buf: &[u8], key: Value, name: &str) -> bool {
    let token = key.span.slice(buf);
    match key.kind {
        ValueKind::String { escaped: false } => &token[1..token.len() - 1] == name.as_bytes(),
        ValueKind::String { escaped: true } => {
            decode_string(token).is_ok_and(|decoded| decoded == name)
        }
        _ => false,
    }
}

/// The decoded text of a validated string token, borrowed unless it holds escapes.
pub(crate) fn string_value(buf: &[u8], value: Value) -> Cow<'_, str> {
    decode_string(value.span.slice(buf)).expect("the token was validated as a JSON string")
}

/// Where output bytes go: a growable buffer, or a slice of exactly the planned size (a
/// Python bytes object being filled).
pub trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// Fills a preallocated slice front to back. Writing past its end is a planning bug and
/// panics rather than truncating output.
pub struct SliceSink<'a> {
    buf: &'a mut [u8],
    at: usize,
}

impl<'a> SliceSink<'a> {
    pub fn new(buf: &'a mut [u8]) -> Self {
        SliceSink { buf, at: 0 }
    }

    /// How many bytes were written.
    pub fn written(&self) -> usize {
        self.at
    }
}

impl Sink for SliceSink<'_> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.buf[self.at..self.at + bytes.len()].copy_from_slice(bytes);
        self.at += bytes.len();
    }
}

/// The escape of byte `b` inside a JSON string, if it needs one: the two-character forms
/// where JSON has them, `\u00XX` (lowercase hex) for other control bytes. This is exactly what
/// Python's `json.dumps(s, ensure_ascii=False)` writes, so tests can compare bytes.
fn escape_of(b: u8) -> Option<&'static [u8]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    const fn control(b: u8) -> [u8; 6] {
        [
            b'\\',
            b'u',
            b'0',
            b'0',
            HEX[(b >> 4) as usize],
            HEX[(b & 15) as usize],
        ]
    }
    const CONTROLS: [[u8; 6]; 32] = {
        let mut table = [[0; 6]; 32];
        let mut b = 0;
        while b < 32 {
            table[b as usize] = control(b);
            b += 1;
        }
        table
    };
    Some(match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        0x08 => b"\\b",
        0x0c => b"\\f",
        0..0x20 => &CONTROLS[b as usize],
        _ => return None,
    })
}

/// Length of `text` once escaped for the inside of a JSON string (quotes not included).
pub(crate) fn escaped_len(text: &str) -> usize {
    text.bytes()
        .map(|b| escape_of(b).map_or(1, <[u8]>::len))
        .sum()
}

/// Writes `text` escaped for the inside of a JSON string (quotes not included). UTF-8 beyond
/// ASCII is written as is: JSON texts are UTF-8, and peers read it either way.
pub(crate) fn write_escaped(out: &mut impl Sink, text: &str) {
    let bytes = text.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(escape) = escape_of(b) {
            out.put(&bytes[run..i]);
            out.put(escape);
            run = i + 1;
        }
    }
    out.put(&bytes[run..]);
}

/// Length of the decimal digits of `n`.
pub(crate) fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(text: &str) -> String {
        let mut out = Vec::new();
        write_escaped(&mut out, text);
        assert_eq!(out.len(), escaped_len(text), "{text:?}");
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escaping() {
        assert_eq!(escaped(""), "");
        assert_eq!(escaped("plain_name.v2"), "plain_name.v2");
        assert_eq!(escaped("a\"b\\c/d"), "a\\\"b\\\\c/d");
        assert_eq!(escaped("\n\r\t\u{8}\u{c}"), "\\n\\r\\t\\b\\f");
        assert_eq!(escaped("\u{0}\u{1f}\u{7f}"), "\\u0000\\u001f\u{7f}");
        assert_eq!(escaped("caf\u{e9} \u{1F600}"), "caf\u{e9} \u{1F600}");
        // Every escape decodes back to its character.
        let all: String = (0u8..0x80).map(char::from).collect();
        let token = format!("\"{}\"", escaped(&all));
        assert_eq!(decode_string(token.as_bytes()).unwrap(), all);
    }

    #[test]
    fn decimal_lengths() {
        for n in [0, 9, 10, 99, 100, 12345, u64::MAX] {
            assert_eq!(decimal_len(n), n.to_string().len());
        }
    }

    #[test]
    fn slice_sink_fills_exactly() {
        let mut buf = [0u8; 5];
        let mut sink = SliceSink::new(&mut buf);
        sink.put(b"ab");
        sink.put(b"cde");
        assert_eq!(sink.written(), 5);
        assert_eq!(&buf, b"abcde");
    }

    #[test]
    #[should_panic]
    fn slice_sink_overflow_panics() {
        let mut buf = [0u8; 2];
        SliceSink::new(&mut buf).put(b"abc");
    }

    /// Collects the keys and raw values of an object, walking into nested objects named "in".
    fn walk(text: &str) -> Result<Vec<(String, String)>, ParseError> {
        let buf = text.as_bytes();
        let mut seen = Vec::new();
        let mut w = Walker::new(buf);
        if w.peek() != Some(b'{') {
            w.value()?;
            return Ok(seen);
        }
        fn members(
            w: &mut Walker<'_>,
            buf: &[u8],
            seen: &mut Vec<(String, String)>,
        ) -> Result<(), ParseError> {
            w.object(|w, key| {
                let name = string_value(buf, key).into_owned();
                if name == "in" && w.peek() == Some(b'{') {
                    seen.push((name, "{".into()));
                    return members(w, buf, seen);
                }
                if name == "list" && w.peek() == Some(b'[') {
                    w.array(|w| w.value().map(|_| ()))?;
                    seen.push((name, "[".into()));
                    return Ok(());
                }
                let v = w.value()?;
                seen.push((name, String::from_utf8_lossy(v.span.slice(buf)).into()));
                Ok(())
            })
            .map(|_| ())
        }
        members(&mut w, buf, &mut seen)?;
        w.end()?;
        Ok(seen)
    }

    #[test]
    fn walker_visits_members() {
        let seen =
            walk(r#" { "a" : 1 , "in":{"b":[2]} ,"list":[ 1 , {"x":2} ],"\u0063":"d"} "#).unwrap();
        let pairs: Vec<(&str, &str)> = seen.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("in", "{"),
                ("b", "[2]"),
                ("list", "["),
                ("c", "\"d\"")
            ]
        );
        assert_eq!(walk("{}").unwrap(), []);
        assert_eq!(walk(r#"{"list":[]}"#).unwrap().len(), 1);
    }

    #[test]
    fn walker_rejects_what_the_scanner_rejects() {
        for bad in [
            "{",
            "{,}",
            r#"{"a":1,}"#,
            r#"{"a" 1}"#,
            r#"{"a":}"#,
            r#"{"a":1 "b":2}"#,
            r#"{"in":{"a":1}"#,
            r#"{"list":[1,]}"#,
            r#"{"list":[1 2]}"#,
            r#"{"list":["#,
            r#"{"a":1} x"#,
            r#"{a:1}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"#,
        ] {
            let walked = walk(bad).map(|_| ());
            let scanned = crate::jsonrpc::validate(bad.as_bytes()).map(|_| ());
            assert!(walked.is_err(), "{bad}");
            assert!(scanned.is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_by_decoded_value() {
        let buf = br#"{"name":1,"n\u0061me":2,"Name":3}"#;
        let mut keys = Vec::new();
        Walker::new(buf)
            .object(|w, key| {
                keys.push(key);
                w.value().map(|_| ())
            })
            .unwrap();
        assert!(key_is(buf, keys[0], "name"));
        assert!(key_is(buf, keys[1], "name"));
        assert!(!key_is(buf, keys[2], "name"));
        assert!(!key_is(buf, keys[0], "nam"));
    }
}
