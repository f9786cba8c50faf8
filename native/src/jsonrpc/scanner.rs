//! A validating JSON scanner that walks bytes and reports spans instead of building values.
//!
//! The gateway forwards JSON-RPC payloads (`params`, `result`) untouched, so all it needs from
//! a message is proof that it is well-formed JSON plus the location of a few members. This
//! scanner checks the full RFC 8259 grammar (strings, escapes, UTF-8, numbers, literals) and
//! allocates nothing unless a caller asks it to decode a string that contains escapes.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// Deepest nesting of arrays and objects accepted. The scanner recurses once per level, so the
/// limit bounds its stack use on hostile input such as ten thousand `[`.
pub const MAX_DEPTH: usize = 128;

/// A half-open byte range `start..end` into the buffer that was scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The bytes this span covers. Panics if `buf` is not the buffer the span came from and is
    /// too short.
    pub fn slice<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.start..self.end]
    }
}

/// The JSON type of a scanned value; numbers are split into integers and the rest because
/// JSON-RPC ids and error codes must be integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Object,
    Array,
    /// `escaped` tells whether the string holds a backslash escape, so decoding can borrow
    /// the raw bytes when it does not.
    String {
        escaped: bool,
    },
    /// A number written without fraction or exponent (`-12`, `0`).
    Integer,
    /// A number with a fraction or an exponent (`1.5`, `1e3`, `1.0`).
    Float,
    True,
    False,
    Null,
}

impl fmt::Display for ValueKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueKind::Object => "an object",
            ValueKind::Array => "an array",
            ValueKind::String { .. } => "a string",
            ValueKind::Integer => "an integer",
            ValueKind::Float => "a number with a fraction or exponent",
            ValueKind::True => "true",
            ValueKind::False => "false",
            ValueKind::Null => "null",
        })
    }
}

/// One scanned JSON value: its type and where its text is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

/// Why the bytes are not JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// Something else than `expected` was found; `found` is `None` at end of input.
    Expected {
        expected: &'static str,
        found: Option<u8>,
    },
    /// A raw byte below 0x20 inside a string; JSON requires these to be escaped.
    ControlCharacter(u8),
    /// A backslash followed by a byte that starts no JSON escape.
    InvalidEscape(u8),
    /// A `\uXXXX` escape of a UTF-16 surrogate that is not part of a valid pair. JSON's
    /// grammar allows it, but it encodes no Unicode scalar value, so no Rust string (and no
    /// strict peer) can hold it; we reject it rather than forward text peers may choke on.
    LoneSurrogate(u16),
    /// String contents that are not valid UTF-8.
    InvalidUtf8,
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

/// A syntax error and the byte offset where it was detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub syntax: Syntax,
}

/// Formats a byte for an error message: printable ASCII as itself, anything else in hex.
struct Found(Option<u8>);

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("end of input"),
            Some(b) if b.is_ascii_graphic() || b == b' ' => write!(f, "'{}'", b as char),
            Some(b) => write!(f, "byte 0x{b:02X}"),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = self.offset;
        match self.syntax {
            Syntax::Expected { expected, found } => {
                write!(
                    f,
                    "expected {expected} at byte {at}, found {}",
                    Found(found)
                )
            }
            Syntax::ControlCharacter(b) => {
                write!(
                    f,
                    "unescaped control character 0x{b:02X} in string at byte {at}"
                )
            }
            Syntax::InvalidEscape(b) => {
                write!(
                    f,
                    "invalid escape '\\' followed by {} at byte {at}",
                    Found(Some(b))
                )
            }
            Syntax::LoneSurrogate(u) => {
                write!(
                    f,
                    "unpaired UTF-16 surrogate escape \\u{u:04X} at byte {at}"
                )
            }
            Syntax::InvalidUtf8 => write!(f, "invalid UTF-8 in string at byte {at}"),
            Syntax::TooDeep => {
                write!(
                    f,
                    "arrays and objects nested deeper than {MAX_DEPTH} levels at byte {at}"
                )
            }
        }
    }
}

impl std::error::Error for ParseError {}

/// Receives the decoded pieces of a string; lets one string walker serve both validation
/// (which discards them) and decoding (which collects them).
trait Sink {
    /// Whether `text` uses its argument; when it does not, ASCII runs skip `str` conversion.
    const WANTS_TEXT: bool;
    fn text(&mut self, s: &str);
    fn char(&mut self, c: char);
}

struct Discard;

impl Sink for Discard {
    const WANTS_TEXT: bool = false;
    #[inline]
    fn text(&mut self, _: &str) {}
    #[inline]
    fn char(&mut self, _: char) {}
}

impl Sink for String {
    const WANTS_TEXT: bool = true;
    fn text(&mut self, s: &str) {
        self.push_str(s);
    }
    fn char(&mut self, c: char) {
        self.push(c);
    }
}

/// A cursor over a JSON text. Each method validates what it consumes and leaves the cursor
/// just past it.
pub struct Scanner<'a> {
    buf: &'a [u8],
    pos: usize,
    depth: usize,
}

impl<'a> Scanner<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Scanner {
            buf,
            pos: 0,
            depth: 0,
        }
    }

    /// A scanner that starts at `pos`, used to look inside a value scanned earlier.
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Scanner { buf, pos, depth: 0 }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    fn error(&self, expected: &'static str) -> ParseError {
        ParseError {
            offset: self.pos,
            syntax: Syntax::Expected {
                expected,
                found: self.peek(),
            },
        }
    }

    fn error_at(&self, offset: usize, syntax: Syntax) -> ParseError {
        ParseError { offset, syntax }
    }

    /// Skips the four JSON whitespace bytes.
    #[inline]
    pub fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// Requires that only whitespace is left, so `{} x` is rejected rather than half-read.
    pub fn end(&mut self) -> Result<(), ParseError> {
        self.skip_whitespace();
        match self.peek() {
            None => Ok(()),
            Some(_) => Err(self.error("end of input")),
        }
    }

    /// Scans one value after optional whitespace.
    pub fn value(&mut self) -> Result<Value, ParseError> {
        self.skip_whitespace();
        let start = self.pos;
        let kind = match self.peek() {
            Some(b'{') => return self.object(|_, _| {}),
            Some(b'[') => return self.array(|_| {}),
            Some(b'"') => return self.string(),
            Some(b'-' | b'0'..=b'9') => self.number()?,
            Some(b't') => self.literal(b"true", "'true'", ValueKind::True)?,
            Some(b'f') => self.literal(b"false", "'false'", ValueKind::False)?,
            Some(b'n') => self.literal(b"null", "'null'", ValueKind::Null)?,
            _ => return Err(self.error("a JSON value")),
        };
        Ok(Value {
            kind,
            span: Span {
                start,
                end: self.pos,
            },
        })
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        if self.depth == MAX_DEPTH {
            return Err(self.error_at(self.pos, Syntax::TooDeep));
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    /// Scans an object starting at `{`, handing each member's key (a string value) and value
    /// to `member`. Nested objects are scanned with a no-op callback, so one implementation
    /// serves both the envelope walk and plain validation.
    pub fn object<F>(&mut self, mut member: F) -> Result<Value, ParseError>
    where
        F: FnMut(Value, Value),
    {
        let start = self.pos;
        self.enter()?;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            let mut expected_key = "a string key or '}'";
            loop {
                self.skip_whitespace();
                if self.peek() != Some(b'"') {
                    return Err(self.error(expected_key));
                }
                let key = self.string()?;
                self.skip_whitespace();
                if self.peek() != Some(b':') {
                    return Err(self.error("':' after the object key"));
                }
                self.pos += 1;
                let value = self.value()?;
                member(key, value);
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error("',' or '}' after an object member")),
                }
                expected_key = "a string key";
            }
        }
        self.depth -= 1;
        Ok(Value {
            kind: ValueKind::Object,
            span: Span {
                start,
                end: self.pos,
            },
        })
    }

    /// Scans an array starting at `[`, handing each element to `element`.
    pub fn array<F>(&mut self, mut element: F) -> Result<Value, ParseError>
    where
        F: FnMut(Value),
    {
        let start = self.pos;
        self.enter()?;
        self.skip_whitespace();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                element(self.value()?);
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => self.pos += 1,
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error("',' or ']' after an array element")),
                }
            }
        }
        self.depth -= 1;
        Ok(Value {
            kind: ValueKind::Array,
            span: Span {
                start,
                end: self.pos,
            },
        })
    }

    fn literal(
        &mut self,
        word: &[u8],
        expected: &'static str,
        kind: ValueKind,
    ) -> Result<ValueKind, ParseError> {
        for &b in word {
            if self.peek() != Some(b) {
                return Err(self.error(expected));
            }
            self.pos += 1;
        }
        Ok(kind)
    }

    fn digits(&mut self, expected: &'static str) -> Result<(), ParseError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error(expected));
        }
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        Ok(())
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`; a leading zero ends the integer
    /// part, so `01` leaves `1` for the caller to reject.
    fn number(&mut self) -> Result<ValueKind, ParseError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            _ => self.digits("a digit")?,
        }
        let mut kind = ValueKind::Integer;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.digits("a digit after the decimal point")?;
            kind = ValueKind::Float;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.digits("a digit in the exponent")?;
            kind = ValueKind::Float;
        }
        Ok(kind)
    }

    /// Scans a string starting at `"` without decoding it.
    pub fn string(&mut self) -> Result<Value, ParseError> {
        self.string_into(&mut Discard)
    }

    fn string_into<S: Sink>(&mut self, sink: &mut S) -> Result<Value, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut escaped = false;
        loop {
            let run_start = self.pos;
            let non_ascii = self.skip_plain_run();
            // Runs end only at ASCII bytes, which never occur inside a multi-byte UTF-8
            // sequence, so validating run by run validates the whole string.
            if non_ascii || S::WANTS_TEXT {
                let run = &self.buf[run_start..self.pos];
                match std::str::from_utf8(run) {
                    Ok(text) => sink.text(text),
                    Err(e) => {
                        let offset = run_start + e.valid_up_to();
                        return Err(self.error_at(offset, Syntax::InvalidUtf8));
                    }
                }
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    let span = Span {
                        start,
                        end: self.pos,
                    };
                    return Ok(Value {
                        kind: ValueKind::String { escaped },
                        span,
                    });
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape(sink)?;
                }
                Some(b) => return Err(self.error_at(self.pos, Syntax::ControlCharacter(b))),
                None => return Err(self.error("'\"' to close the string")),
            }
        }
    }

    /// Advances to the next `"`, `\\` or control byte (or the end), eight bytes at a time
    /// while none is in sight. Returns whether the skipped bytes include non-ASCII ones, which
    /// then need UTF-8 validation.
    fn skip_plain_run(&mut self) -> bool {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
        // Nonzero iff some byte of `w` is below `n` (n <= 0x80); exact about existence,
        // which is all the fast path needs.
        let has_below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS != 0;
        let has_byte = |w: u64, b: u8| has_below(w ^ (ONES * u64::from(b)), 1);
        let mut seen = 0u64;
        while let Some(word) = self.buf[self.pos..].first_chunk::<8>() {
            let w = u64::from_ne_bytes(*word);
            if has_below(w, 0x20) || has_byte(w, b'"') || has_byte(w, b'\\') {
                break;
            }
            seen |= w;
            self.pos += 8;
        }
        while let Some(&b) = self.buf.get(self.pos) {
            if b == b'"' || b == b'\\' || b < 0x20 {
                break;
            }
            seen |= u64::from(b);
            self.pos += 1;
        }
        seen & HIGHS != 0
    }

    /// Consumes one escape starting at the backslash.
    fn escape<S: Sink>(&mut self, sink: &mut S) -> Result<(), ParseError> {
        let backslash = self.pos;
        self.pos += 1;
        let Some(b) = self.peek() else {
            return Err(self.error("an escape character after '\\'"));
        };
        self.pos += 1;
        let c = match b {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => self.unicode_escape(backslash)?,
            other => return Err(self.error_at(backslash, Syntax::InvalidEscape(other))),
        };
        sink.char(c);
        Ok(())
    }

    /// Decodes the `XXXX` of `\uXXXX` (cursor just past the `u`), joining a surrogate pair
    /// written as two escapes.
    fn unicode_escape(&mut self, backslash: usize) -> Result<char, ParseError> {
        let first = self.hex4()?;
        let lone = |s: &Self| s.error_at(backslash, Syntax::LoneSurrogate(first));
        match first {
            0xD800..=0xDBFF => {
                if !self.buf[self.pos..].starts_with(b"\\u") {
                    return Err(lone(self));
                }
                self.pos += 2;
                let second = self.hex4()?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err(lone(self));
                }
                let scalar =
                    0x10000 + ((u32::from(first) - 0xD800) << 10) + (u32::from(second) - 0xDC00);
                char::from_u32(scalar).ok_or_else(|| lone(self))
            }
            // A low surrogate with no high surrogate before it.
            0xDC00..=0xDFFF => Err(lone(self)),
            _ => char::from_u32(u32::from(first)).ok_or_else(|| lone(self)),
        }
    }

    fn hex4(&mut self) -> Result<u16, ParseError> {
        let mut value = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.error("4 hex digits after '\\u'")),
            };
            value = value << 4 | u16::from(digit);
            self.pos += 1;
        }
        Ok(value)
    }
}

/// Validates one complete JSON text (a value with optional surrounding whitespace).
pub fn validate(buf: &[u8]) -> Result<Value, ParseError> {
    let mut scanner = Scanner::new(buf);
    let value = scanner.value()?;
    scanner.end()?;
    Ok(value)
}

/// The first member name that the top-level object of `buf` repeats, decoded (so `"model"`
/// and `"mod\u0065l"` are one name); `Ok(None)` when no name repeats or `buf` is not a JSON
/// object. Peers disagree on a repeated name (most keep the last value, some the first, strict
/// ones refuse the text), so a body forwarded as it came must not have one. An object the scan
/// cannot finish (past [`MAX_DEPTH`], malformed) is an error, never "no name repeats": a body
/// nested deep anywhere would otherwise hide a repeated name at the top.
pub fn first_duplicate_member(buf: &[u8]) -> Result<Option<String>, ParseError> {
    let mut scanner = Scanner::new(buf);
    scanner.skip_whitespace();
    if scanner.peek() != Some(b'{') {
        return Ok(None);
    }
    let mut seen: HashSet<Cow<'_, str>> = HashSet::new();
    let mut duplicate: Option<String> = None;
    let scanned = scanner.object(|key, _| {
        if duplicate.is_some() {
            return;
        }
        let Ok(name) = decode_string(key.span.slice(buf)) else {
            return;
        };
        if seen.contains(&name) {
            duplicate = Some(name.into_owned());
        } else {
            seen.insert(name);
        }
    });
    scanned.map(|_| duplicate)
}

/// The first member name that any object in `buf` repeats (decoded), searched in one pass
/// over the whole text; `Ok(None)` when no object repeats a name. For bodies that are
/// forwarded as they came while the gateway read values nested in them. Text that is not JSON,
/// or nests past [`MAX_DEPTH`], is an error (the search could not see all of it).
pub fn first_nested_duplicate_member(buf: &[u8]) -> Result<Option<String>, ParseError> {
    let mut scanner = Scanner::new(buf);
    let found = scanner.duplicates_in_value(0)?;
    scanner.end()?;
    Ok(found)
}

impl Scanner<'_> {
    /// Scans one value like [`Scanner::value`], and returns the first member name an object in
    /// it repeats. Recursion is bounded by [`MAX_DEPTH`] as the plain scan is.
    fn duplicates_in_value(&mut self, depth: usize) -> Result<Option<String>, ParseError> {
        self.skip_whitespace();
        let object = match self.peek() {
            Some(b'{') => true,
            Some(b'[') => false,
            _ => return self.value().map(|_| None),
        };
        if depth == MAX_DEPTH {
            return Err(self.error_at(self.pos, Syntax::TooDeep));
        }
        let close = if object { b'}' } else { b']' };
        self.pos += 1;
        self.skip_whitespace();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(None);
        }
        let mut seen: HashSet<String> = HashSet::new();
        let mut found: Option<String> = None;
        loop {
            if object {
                self.skip_whitespace();
                if self.peek() != Some(b'"') {
                    return Err(self.error("a string key"));
                }
                let key = self.string()?;
                self.skip_whitespace();
                if self.peek() != Some(b':') {
                    return Err(self.error("':' after the object key"));
                }
                self.pos += 1;
                if found.is_none() {
                    let name = decode_string(key.span.slice(self.buf))?.into_owned();
                    if seen.contains(&name) {
                        found = Some(name);
                    } else {
                        seen.insert(name);
                    }
                }
            }
            let inner = self.duplicates_in_value(depth + 1)?;
            found = found.or(inner);
            self.skip_whitespace();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b) if b == close => {
                    self.pos += 1;
                    return Ok(found);
                }
                _ => return Err(self.error("',' or the end of the container")),
            }
        }
    }
}

/// Decodes a JSON string token (quotes included), borrowing the bytes when the string has no
/// escapes. Used for member names and `method`, which are short; payload strings are never
/// decoded here.
pub fn decode_string(token: &[u8]) -> Result<Cow<'_, str>, ParseError> {
    let mut scanner = Scanner::new(token);
    if scanner.peek() != Some(b'"') {
        return Err(scanner.error("'\"' to open a string"));
    }
    let value = if token.contains(&b'\\') {
        let mut decoded = String::with_capacity(token.len());
        scanner.string_into(&mut decoded)?;
        Cow::Owned(decoded)
    } else {
        scanner.string()?;
        // Validated above; an escape-free string's contents are its UTF-8 bytes.
        let inner = &token[1..scanner.pos() - 1];
        Cow::Borrowed(
            std::str::from_utf8(inner).map_err(|_| scanner.error_at(1, Syntax::InvalidUtf8))?,
        )
    };
    if scanner.pos() != token.len() {
        return Err(scanner.error("end of the string token"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(text: &str) -> ValueKind {
        validate(text.as_bytes()).expect(text).kind
    }

    fn syntax(text: &[u8]) -> (usize, Syntax) {
        let e = validate(text).expect_err(&String::from_utf8_lossy(text));
        (e.offset, e.syntax)
    }

    fn expected(text: &str) -> &'static str {
        match syntax(text.as_bytes()).1 {
            Syntax::Expected { expected, .. } => expected,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn scalars_and_containers() {
        assert_eq!(kind("0"), ValueKind::Integer);
        assert_eq!(kind("-0"), ValueKind::Integer);
        assert_eq!(
            kind("  123456789012345678901234567890 "),
            ValueKind::Integer
        );
        assert_eq!(kind("1.5"), ValueKind::Float);
        assert_eq!(kind("1e3"), ValueKind::Float);
        assert_eq!(kind("-1.0E+3"), ValueKind::Float);
        assert_eq!(kind("1e-0"), ValueKind::Float);
        assert_eq!(kind("true"), ValueKind::True);
        assert_eq!(kind("false"), ValueKind::False);
        assert_eq!(kind("\n\r\tnull\t"), ValueKind::Null);
        assert_eq!(kind(r#""a\"b""#), ValueKind::String { escaped: true });
        assert_eq!(kind(r#""ab""#), ValueKind::String { escaped: false });
        assert_eq!(kind(r#"{"a":[1,{"b":null}],"c":{}}"#), ValueKind::Object);
        assert_eq!(kind(r#"[ ]"#), ValueKind::Array);
        assert_eq!(kind(r#"{ }"#), ValueKind::Object);
    }

    #[test]
    fn spans_cover_exact_text() {
        let text = br#"  {"k" : [1, 2] }  "#;
        let v = validate(text).unwrap();
        assert_eq!(v.span.slice(text), br#"{"k" : [1, 2] }"#);
        let mut scanner = Scanner::new(text);
        scanner.skip_whitespace();
        let mut seen = Vec::new();
        scanner
            .object(|k, v| seen.push((k.span.slice(text), v.span.slice(text))))
            .unwrap();
        assert_eq!(seen, vec![(&br#""k""#[..], &b"[1, 2]"[..])]);
    }

    #[test]
    fn number_errors() {
        assert_eq!(expected("-"), "a digit");
        assert_eq!(expected("-a"), "a digit");
        assert_eq!(expected("1."), "a digit after the decimal point");
        assert_eq!(expected("1.e5"), "a digit after the decimal point");
        assert_eq!(expected("1e"), "a digit in the exponent");
        assert_eq!(expected("1e+"), "a digit in the exponent");
        assert_eq!(expected("01"), "end of input");
        assert_eq!(expected("+1"), "a JSON value");
        assert_eq!(expected(".5"), "a JSON value");
        assert_eq!(expected("NaN"), "a JSON value");
        assert_eq!(expected("Infinity"), "a JSON value");
        assert_eq!(expected("-Infinity"), "a digit");
    }

    #[test]
    fn literal_and_structure_errors() {
        assert_eq!(
            syntax(b"tru"),
            (
                3,
                Syntax::Expected {
                    expected: "'true'",
                    found: None
                }
            )
        );
        assert_eq!(
            syntax(b"nul1"),
            (
                3,
                Syntax::Expected {
                    expected: "'null'",
                    found: Some(b'1')
                }
            )
        );
        assert_eq!(expected("falsey"), "end of input");
        assert_eq!(expected(""), "a JSON value");
        assert_eq!(expected("   "), "a JSON value");
        assert_eq!(expected("{"), "a string key or '}'");
        assert_eq!(expected("{,}"), "a string key or '}'");
        assert_eq!(expected(r#"{"a":1,}"#), "a string key");
        assert_eq!(expected(r#"{"a" 1}"#), "':' after the object key");
        assert_eq!(expected(r#"{"a":}"#), "a JSON value");
        assert_eq!(
            expected(r#"{"a":1 "b":2}"#),
            "',' or '}' after an object member"
        );
        assert_eq!(expected(r#"{a:1}"#), "a string key or '}'");
        assert_eq!(expected("[1,]"), "a JSON value");
        assert_eq!(expected("[1 2]"), "',' or ']' after an array element");
        assert_eq!(expected("[1"), "',' or ']' after an array element");
        assert_eq!(expected("{} {}"), "end of input");
        assert_eq!(expected("\u{feff}{}"), "a JSON value");
        // Form feed and vertical tab are not JSON whitespace.
        assert_eq!(expected("\u{c}1"), "a JSON value");
    }

    #[test]
    fn string_errors() {
        assert_eq!(
            syntax(b"\"abc"),
            (
                4,
                Syntax::Expected {
                    expected: "'\"' to close the string",
                    found: None
                }
            )
        );
        assert_eq!(syntax(b"\"a\nb\""), (2, Syntax::ControlCharacter(b'\n')));
        assert_eq!(syntax(b"\"\x00\""), (1, Syntax::ControlCharacter(0)));
        assert_eq!(syntax(b"\"\\x\""), (1, Syntax::InvalidEscape(b'x')));
        assert_eq!(syntax(b"\"\\'\""), (1, Syntax::InvalidEscape(b'\'')));
        assert_eq!(
            syntax(b"\"\\"),
            (
                2,
                Syntax::Expected {
                    expected: "an escape character after '\\'",
                    found: None
                }
            )
        );
        assert_eq!(expected(r#""\u12""#), "4 hex digits after '\\u'");
        assert_eq!(expected(r#""\u+123""#), "4 hex digits after '\\u'");
        assert_eq!(expected(r#""\u 123""#), "4 hex digits after '\\u'");
        assert_eq!(syntax(b"\"\xff\""), (1, Syntax::InvalidUtf8));
        assert_eq!(syntax(b"\"ab\xc3\""), (3, Syntax::InvalidUtf8));
        // Overlong encoding of '/' and an encoded surrogate are not UTF-8.
        assert_eq!(syntax(b"\"\xc0\xaf\""), (1, Syntax::InvalidUtf8));
        assert_eq!(syntax(b"\"\xed\xa0\x80\""), (1, Syntax::InvalidUtf8));
        // Bytes outside strings are structural, so non-ASCII there is a plain syntax error.
        assert_eq!(expected("\u{e9}"), "a JSON value");
    }

    #[test]
    fn special_bytes_at_every_position_of_long_strings() {
        // Exercises both the eight-byte fast path and the byte loop of `skip_plain_run`.
        for at in 0..24 {
            let mut text = vec![b'"'];
            text.extend(std::iter::repeat_n(b'a', 24));
            text.push(b'"');
            let with = |bytes: &[u8]| {
                let mut t = text.clone();
                t.splice(1 + at..2 + at, bytes.iter().copied());
                t
            };
            assert_eq!(
                syntax(&with(b"\x1f")),
                (1 + at, Syntax::ControlCharacter(0x1f))
            );
            assert_eq!(syntax(&with(b"\xff")), (1 + at, Syntax::InvalidUtf8));
            assert_eq!(syntax(&with(b"\\q")), (1 + at, Syntax::InvalidEscape(b'q')));
            let newline = with(b"\\n");
            assert_eq!(decode_string(&newline).unwrap().find('\n'), Some(at));
            let accented = with("\u{e9}".as_bytes());
            assert_eq!(decode_string(&accented).unwrap().find('\u{e9}'), Some(at));
            // A quote ends the string early and leaves the rest as trailing garbage.
            let (offset, _) = syntax(&with(b"\""));
            assert_eq!(offset, 2 + at);
        }
    }

    #[test]
    fn surrogates() {
        assert_eq!(decode_string(br#""\ud83d\ude00""#).unwrap(), "\u{1F600}");
        assert_eq!(decode_string(br#""\uD83D\uDE00x""#).unwrap(), "\u{1F600}x");
        assert_eq!(syntax(br#""\ud83d""#), (1, Syntax::LoneSurrogate(0xD83D)));
        assert_eq!(syntax(br#""a\ude00""#), (2, Syntax::LoneSurrogate(0xDE00)));
        assert_eq!(
            syntax(br#""\ud83d\u0041""#),
            (1, Syntax::LoneSurrogate(0xD83D))
        );
        assert_eq!(
            syntax(br#""\ud83d\ud83d""#),
            (1, Syntax::LoneSurrogate(0xD83D))
        );
        assert_eq!(syntax(br#""\ud83dx""#), (1, Syntax::LoneSurrogate(0xD83D)));
    }

    #[test]
    fn decoding() {
        assert!(matches!(
            decode_string(br#""plain""#).unwrap(),
            Cow::Borrowed("plain")
        ));
        assert_eq!(
            decode_string(br#""a\"\\\/\b\f\n\r\t\u00e9\u20AC""#).unwrap(),
            "a\"\\/\u{8}\u{c}\n\r\t\u{e9}\u{20ac}"
        );
        assert_eq!(
            decode_string("\"caf\u{e9}\"".as_bytes()).unwrap(),
            "caf\u{e9}"
        );
        assert!(decode_string(b"plain").is_err());
        assert!(decode_string(br#""a" "#).is_err());
    }

    #[test]
    fn duplicate_members() {
        let find = |t: &[u8]| first_duplicate_member(t).unwrap();
        assert_eq!(find(br#"{"a":1,"b":2}"#), None);
        assert_eq!(find(br#" {"a":1,"a":2}"#).as_deref(), Some("a"));
        assert_eq!(
            find(br#"{"model":"x","mod\u0065l":"y"}"#).as_deref(),
            Some("model")
        );
        // Only the top level: a name repeated in a nested object is another object's.
        assert_eq!(find(br#"{"a":{"b":1},"c":{"b":2}}"#), None);
        assert_eq!(find(br#"{"a":{"b":1,"b":2}}"#), None);
        assert_eq!(find(br#"[{"a":1,"a":2}]"#), None);
        // A scan that cannot finish is an error, not "no name repeats".
        assert!(first_duplicate_member(br#"{"a":1,"a":"#).is_err());
        let deep = format!(
            r#"{{"m":"x","m":"y","pad":{}{}}}"#,
            "[".repeat(MAX_DEPTH + 1),
            "]".repeat(MAX_DEPTH + 1)
        );
        assert!(first_duplicate_member(deep.as_bytes()).is_err());
    }

    #[test]
    fn nested_duplicate_members() {
        let find = |t: &str| first_nested_duplicate_member(t.as_bytes()).unwrap();
        assert_eq!(
            find(r#"{"a":{"b":1,"c":[{"d":1,"e":2}]},"f":{"b":2}}"#),
            None
        );
        assert_eq!(find(r#"{"a":1,"a":2}"#).as_deref(), Some("a"));
        assert_eq!(
            find(r#"{"p":{"m":{"t":"x","\u0074":"y"}}}"#).as_deref(),
            Some("t")
        );
        assert_eq!(find(r#"[1,{"x":[{"k":1,"k":2}]}]"#).as_deref(), Some("k"));
        assert_eq!(find(r#" { } "#), None);
        let fails = |t: &str| first_nested_duplicate_member(t.as_bytes()).is_err();
        assert!(fails(r#"{"a":1,"a":2"#));
        assert!(fails(r#"{"a":1} x"#));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(fails(&deep));
        assert!(fails(&"[".repeat(1_000_000)));
    }

    #[test]
    fn depth_limit() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(kind(&ok), ValueKind::Array);
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(syntax(deep.as_bytes()), (MAX_DEPTH, Syntax::TooDeep));
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert_eq!(syntax(objects.as_bytes()).1, Syntax::TooDeep);
        // Far past the limit: must fail cleanly, not overflow the stack.
        let hostile = "[".repeat(1_000_000);
        assert_eq!(syntax(hostile.as_bytes()).1, Syntax::TooDeep);
        // Depth is released on the way out, so siblings do not accumulate.
        let siblings = format!("[{}]", vec!["[[]]"; 1000].join(","));
        assert_eq!(kind(&siblings), ValueKind::Array);
    }

    #[test]
    fn error_messages() {
        let e = validate(br#"{"a" 1}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected ':' after the object key at byte 5, found '1'"
        );
        let e = validate(b"[\x01]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected a JSON value at byte 1, found byte 0x01"
        );
        let e = validate(b"[").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected a JSON value at byte 1, found end of input"
        );
    }
}
