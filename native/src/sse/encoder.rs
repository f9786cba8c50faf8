//! `text/event-stream` encoder: the inverse of the decoder for what the gateway emits.

use std::fmt;

/// A field value that would change the meaning of the stream if written as is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeError {
    /// A CR or LF in the event type would end the field line early.
    NewlineInEvent,
    /// A CR or LF in the id would end the field line early.
    NewlineInId,
    /// Decoders ignore an `id` containing NUL, so it would silently not take effect.
    NulInId,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::NewlineInEvent => "SSE event type must not contain CR or LF",
            EncodeError::NewlineInId => "SSE id must not contain CR or LF",
            EncodeError::NulInId => "SSE id must not contain NUL (decoders ignore such ids)",
        })
    }
}

impl std::error::Error for EncodeError {}

/// Appends one event to `out`: `event`, `id` and `retry` fields when given, then one `data`
/// line per line of `data` (split on CRLF, CR and LF, so decoding joins them back with LF),
/// then the blank line that dispatches it. Nothing is written if a field is rejected.
pub fn encode_event(
    out: &mut Vec<u8>,
    data: &[u8],
    event: Option<&str>,
    id: Option<&str>,
    retry: Option<u64>,
) -> Result<(), EncodeError> {
    let has_newline = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
    if event.is_some_and(has_newline) {
        return Err(EncodeError::NewlineInEvent);
    }
    if let Some(id) = id {
        if has_newline(id) {
            return Err(EncodeError::NewlineInId);
        }
        if id.contains('\0') {
            return Err(EncodeError::NulInId);
        }
    }
    out.reserve(data.len() + event.map_or(0, str::len) + id.map_or(0, str::len) + 48);
    if let Some(event) = event {
        field(out, b"event", event.as_bytes());
    }
    if let Some(id) = id {
        field(out, b"id", id.as_bytes());
    }
    if let Some(retry) = retry {
        field(out, b"retry", retry.to_string().as_bytes());
    }
    for line in Lines(Some(data)) {
        field(out, b"data", line);
    }
    out.push(b'\n');
    Ok(())
}

/// Appends a comment, one `:` line per line of `text`. Decoders ignore comments, which makes
/// them the keep-alive of long-lived streams (`encode_comment(out, b"")` writes `:\n`).
pub fn encode_comment(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 3);
    for line in Lines(Some(text)) {
        field(out, b"", line);
    }
}

/// Writes `name: value\n`, leaving out the space when the value is empty.
fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.push(b':');
    if !value.is_empty() {
        out.push(b' ');
        out.extend_from_slice(value);
    }
    out.push(b'\n');
}

/// Splits on CRLF, CR and LF; yields at least one (possibly empty) line, and an empty last
/// line after a trailing terminator, so `"a\n"` round-trips as two data lines.
struct Lines<'a>(Option<&'a [u8]>);

impl<'a> Iterator for Lines<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.0?;
        match rest.iter().position(|&b| b == b'\r' || b == b'\n') {
            None => {
                self.0 = None;
                Some(rest)
            }
            Some(end) => {
                let skip = if rest[end..].starts_with(b"\r\n") {
                    2
                } else {
                    1
                };
                self.0 = Some(&rest[end + skip..]);
                Some(&rest[..end])
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Decoder;

    fn event(
        data: &[u8],
        event_type: Option<&str>,
        id: Option<&str>,
        retry: Option<u64>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        encode_event(&mut out, data, event_type, id, retry).unwrap();
        out
    }

    #[test]
    fn fields_and_lines() {
        assert_eq!(
            event(b"{\"a\":1}", None, None, None),
            b"data: {\"a\":1}\n\n"
        );
        assert_eq!(
            event(b"a\r\nb\rc\nd", Some("message"), Some("7"), Some(3000)),
            b"event: message\nid: 7\nretry: 3000\ndata: a\ndata: b\ndata: c\ndata: d\n\n"
        );
        assert_eq!(event(b"", None, Some(""), None), b"id:\ndata:\n\n");
        assert_eq!(event(b"x\n", None, None, None), b"data: x\ndata:\n\n");
        assert_eq!(event(b" lead", None, None, None), b"data:  lead\n\n");
    }

    #[test]
    fn rejects_line_breaks_in_fields() {
        let mut out = b"keep".to_vec();
        assert_eq!(
            encode_event(&mut out, b"", Some("a\nb"), None, None),
            Err(EncodeError::NewlineInEvent)
        );
        assert_eq!(
            encode_event(&mut out, b"", None, Some("a\rb"), None),
            Err(EncodeError::NewlineInId)
        );
        assert_eq!(
            encode_event(&mut out, b"", None, Some("a\0b"), None),
            Err(EncodeError::NulInId)
        );
        assert_eq!(out, b"keep");
    }

    #[test]
    fn comments() {
        let mut out = Vec::new();
        encode_comment(&mut out, b"");
        encode_comment(&mut out, b"ping");
        encode_comment(&mut out, b"a\r\nb");
        assert_eq!(out, b":\n: ping\n: a\n: b\n");
    }

    #[test]
    fn round_trip() {
        let data: &[&[u8]] = &[
            b"",
            b"\n",
            b"\r\n\r",
            b"a\r\r\nb",
            b" x ",
            b":",
            b"\xFF\x00",
        ];
        for &d in data {
            let encoded = event(d, Some("e v"), Some(" i d "), Some(5));
            let mut decoder = Decoder::new(1024, "");
            let events = decoder.feed_events(&encoded).unwrap();
            assert_eq!(events.len(), 1);
            let normalized = String::from_utf8_lossy(d)
                .replace("\r\n", "\n")
                .replace('\r', "\n");
            assert_eq!(String::from_utf8_lossy(&events[0].data), normalized);
            assert_eq!(
                (events[0].event.as_str(), events[0].id.as_str()),
                ("e v", " i d ")
            );
            assert_eq!(decoder.retry(), Some(5));
        }
    }
}
