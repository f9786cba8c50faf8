//! Incremental `text/event-stream` decoder following the WHATWG HTML "event stream
//! interpretation" rules.
//!
//! Chunks arrive as the network delivers them, so a line, a CRLF pair or the UTF-8 BOM may
//! be split anywhere; the decoder keeps only the unfinished line and the event being built.
//! Event data is returned as raw bytes (the gateway forwards it), while the event type and
//! id are decoded as UTF-8 with replacement characters, as the standard says.

use std::fmt;
use std::mem;

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Smallest accepted `max_event_size`. Below it the limit could trip on the bytes held back
/// while deciding whether the stream starts with a BOM.
pub const MIN_EVENT_SIZE: usize = 16;

/// A dispatched event, borrowing the decoder's buffers until the callback returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// The `data` lines joined with `\n`.
    pub data: &'a [u8],
    /// The `event` field, or `"message"` when absent or empty.
    pub event: &'a str,
    /// The last event ID in effect when the event was dispatched (the standard's
    /// `lastEventId`): it persists across events until an `id` field changes it, so it is
    /// what a client would send as `Last-Event-ID` after this event. Empty means none.
    pub id: &'a str,
}

/// What [`Decoder::feed`] reports, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Event(Event<'a>),
    /// A comment line (`:` first), without the colon and one following space. Browsers drop
    /// these; a gateway may want to see keep-alives to forward or answer them.
    Comment(&'a [u8]),
}

/// The stream broke the decoder's size bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventTooLarge {
    pub limit: usize,
}

impl fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SSE event exceeds max_event_size ({} bytes of data plus the line being read)",
            self.limit
        )
    }
}

impl std::error::Error for EventTooLarge {}

/// Decodes one event stream at a time.
///
/// Memory is bounded by `max_event_size`: the data of the event being built plus the line
/// being read may not exceed it. The bound is checked as bytes arrive, so a peer that sends
/// an endless line fails fast instead of filling memory.
#[derive(Debug)]
pub struct Decoder {
    max_event_size: usize,
    /// An unterminated line carried over from earlier chunks.
    line: Vec<u8>,
    /// The standard's data buffer: each `data` value followed by `\n`.
    data: Vec<u8>,
    event_type: String,
    /// The standard's last event ID buffer, set by `id` fields.
    id_buffer: String,
    /// The last event ID string, copied from the buffer at each blank line.
    last_event_id: String,
    retry: Option<u64>,
    /// Nothing but possibly part of a BOM has been read from this stream.
    at_stream_start: bool,
    /// The previous chunk ended with CR, so a LF starting the next one ends no line.
    after_cr: bool,
    /// A field line was read since the last blank line.
    in_event: bool,
    failed: bool,
}

impl Decoder {
    /// `max_event_size` is clamped up to [`MIN_EVENT_SIZE`]. `last_event_id` seeds the last
    /// event ID, as when resuming a stream after `Last-Event-ID`.
    pub fn new(max_event_size: usize, last_event_id: &str) -> Self {
        Decoder {
            max_event_size: max_event_size.max(MIN_EVENT_SIZE),
            line: Vec::new(),
            data: Vec::new(),
            event_type: String::new(),
            id_buffer: last_event_id.to_owned(),
            last_event_id: last_event_id.to_owned(),
            retry: None,
            at_stream_start: true,
            after_cr: false,
            in_event: false,
            failed: false,
        }
    }

    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// The last event ID string (empty when none): updated at every blank line, including
    /// those that dispatch nothing because no data was sent.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time in milliseconds from the last valid `retry` field.
    pub fn retry(&self) -> Option<u64> {
        self.retry
    }

    /// Decodes `chunk`, calling `on_item` for each complete event and comment. After an
    /// error the stream is abandoned: every later call fails until [`Decoder::finish`].
    pub fn feed<F>(&mut self, chunk: &[u8], mut on_item: F) -> Result<(), EventTooLarge>
    where
        F: FnMut(Item<'_>),
    {
        if self.failed {
            return Err(self.too_large());
        }
        let result = self.feed_inner(chunk, &mut on_item);
        if result.is_err() {
            self.failed = true;
            self.line.clear();
            self.data.clear();
        }
        result
    }

    fn feed_inner<F>(&mut self, mut chunk: &[u8], on_item: &mut F) -> Result<(), EventTooLarge>
    where
        F: FnMut(Item<'_>),
    {
        if self.at_stream_start {
            match self.strip_bom(chunk) {
                Some(rest) => chunk = rest,
                None => return Ok(()),
            }
        }
        if self.after_cr && !chunk.is_empty() {
            self.after_cr = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(end) = chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, terminator) = (&chunk[..end], chunk[end]);
            chunk = &chunk[end + 1..];
            if self.line.is_empty() {
                self.process_line(head, on_item)?;
            } else {
                // Take the buffer so the line can be read while `self` is updated, then put it
                // back to keep its capacity for the next split line.
                let mut line = mem::take(&mut self.line);
                line.extend_from_slice(head);
                let processed = self.process_line(&line, on_item);
                line.clear();
                self.line = line;
                processed?;
            }
            if terminator == b'\r' {
                match chunk.first() {
                    Some(b'\n') => chunk = &chunk[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
        }
        if !chunk.is_empty() {
            self.check_size(self.line.len() + chunk.len())?;
            self.line.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Drops one leading BOM, holding back a chunk that is only the start of one. Returns the
    /// rest of the chunk to decode, or `None` while it is still undecided.
    fn strip_bom<'c>(&mut self, chunk: &'c [u8]) -> Option<&'c [u8]> {
        let held = self.line.len();
        let wanted = BOM.len() - held;
        let take = wanted.min(chunk.len());
        if chunk[..take] != BOM[held..held + take] {
            // Not a BOM: whatever was held back is the start of the first line.
            self.at_stream_start = false;
            return Some(chunk);
        }
        if take < wanted {
            self.line.extend_from_slice(chunk);
            return None;
        }
        self.line.clear();
        self.at_stream_start = false;
        Some(&chunk[take..])
    }

    fn too_large(&self) -> EventTooLarge {
        EventTooLarge {
            limit: self.max_event_size,
        }
    }

    fn check_size(&self, line_len: usize) -> Result<(), EventTooLarge> {
        if self.data.len() + line_len > self.max_event_size {
            return Err(self.too_large());
        }
        Ok(())
    }

    fn process_line<F>(&mut self, line: &[u8], on_item: &mut F) -> Result<(), EventTooLarge>
    where
        F: FnMut(Item<'_>),
    {
        self.check_size(line.len())?;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            None if line.is_empty() => {
                self.dispatch(on_item);
                return Ok(());
            }
            Some(0) => {
                on_item(Item::Comment(strip_space(&line[1..])));
                return Ok(());
            }
            Some(colon) => (&line[..colon], strip_space(&line[colon + 1..])),
            None => (line, &[][..]),
        };
        self.in_event = true;
        match field {
            b"data" => {
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
            }
            b"event" => {
                self.event_type.clear();
                self.event_type.push_str(&String::from_utf8_lossy(value));
            }
            b"id" if !value.contains(&0) => {
                self.id_buffer.clear();
                self.id_buffer.push_str(&String::from_utf8_lossy(value));
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // Digits only, so the sole failure is overflow; such a delay is ignored.
                if let Some(ms) = std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn dispatch<F>(&mut self, on_item: &mut F)
    where
        F: FnMut(Item<'_>),
    {
        self.in_event = false;
        self.last_event_id.clone_from(&self.id_buffer);
        if let Some((_, data)) = self.data.split_last() {
            let event = if self.event_type.is_empty() {
                "message"
            } else {
                &self.event_type
            };
            on_item(Item::Event(Event {
                data,
                event,
                id: &self.last_event_id,
            }));
        }
        self.data.clear();
        self.event_type.clear();
    }

    /// Ends the stream: an unfinished line or event is discarded, as the standard requires at
    /// end of file. Returns whether anything was discarded. The decoder is then ready for a
    /// new stream (a reconnection), keeping the last event ID and retry.
    pub fn finish(&mut self) -> bool {
        let discarded = self.in_event || !self.line.is_empty();
        self.line.clear();
        self.data.clear();
        self.event_type.clear();
        self.id_buffer.clone_from(&self.last_event_id);
        self.at_stream_start = true;
        self.after_cr = false;
        self.in_event = false;
        self.failed = false;
        discarded
    }
}

/// Removes the single optional space after a field's colon.
fn strip_space(value: &[u8]) -> &[u8] {
    value.strip_prefix(b" ").unwrap_or(value)
}

/// An owned event, for callers that keep events past the callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnedEvent {
    pub data: Vec<u8>,
    pub event: String,
    pub id: String,
}

impl Decoder {
    /// Decodes `chunk` and collects its events, dropping comments. Convenient where the
    /// copies do not matter, such as tests and tools.
    pub fn feed_events(&mut self, chunk: &[u8]) -> Result<Vec<OwnedEvent>, EventTooLarge> {
        let mut events = Vec::new();
        self.feed(chunk, |item| {
            if let Item::Event(e) = item {
                events.push(OwnedEvent {
                    data: e.data.to_vec(),
                    event: e.event.to_owned(),
                    id: e.id.to_owned(),
                });
            }
        })?;
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(data: &str, event: &str, id: &str) -> OwnedEvent {
        OwnedEvent {
            data: data.as_bytes().to_vec(),
            event: event.into(),
            id: id.into(),
        }
    }

    /// Feeds the stream whole, then byte by byte, then in every two-way split, and checks
    /// that all agree.
    fn decode(stream: &[u8]) -> Vec<OwnedEvent> {
        let mut whole = Decoder::new(1 << 20, "");
        let expected = whole.feed_events(stream).unwrap();
        let mut bytewise = Decoder::new(1 << 20, "");
        let mut events = Vec::new();
        for b in stream {
            events.extend(bytewise.feed_events(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(events, expected, "byte by byte");
        for split in 0..=stream.len() {
            let mut d = Decoder::new(1 << 20, "");
            let mut events = d.feed_events(&stream[..split]).unwrap();
            events.extend(d.feed_events(&stream[split..]).unwrap());
            assert_eq!(events, expected, "split at {split}");
        }
        expected
    }

    #[test]
    fn basic_fields() {
        let events =
            decode(b"event: add\ndata: 73857293\n\nevent: remove\ndata: 2153\n\ndata: 1\n\n");
        assert_eq!(
            events,
            [
                ev("73857293", "add", ""),
                ev("2153", "remove", ""),
                ev("1", "message", "")
            ]
        );
    }

    #[test]
    fn data_lines_join_and_space_stripping() {
        assert_eq!(
            decode(b"data: a\ndata:b\ndata:  c\ndata\n\n"),
            [ev("a\nb\n c\n", "message", "")]
        );
        // A line with no colon is a field name with an empty value.
        assert_eq!(decode(b"data\n\n"), [ev("", "message", "")]);
        assert_eq!(decode(b"data\ndata\n\n"), [ev("\n", "message", "")]);
        // Only the first colon separates; the value keeps later ones.
        assert_eq!(decode(b"data: a: b\n\n"), [ev("a: b", "message", "")]);
        // Field names are case-sensitive and exact.
        assert_eq!(decode(b"Data: x\ndata : y\n\n"), []);
    }

    #[test]
    fn line_endings() {
        let expected = [ev("a\nb", "message", "")];
        assert_eq!(decode(b"data: a\r\ndata: b\r\n\r\n"), expected);
        assert_eq!(decode(b"data: a\rdata: b\r\r"), expected);
        assert_eq!(decode(b"data: a\ndata: b\r\n\r"), expected);
        // CR LF is one terminator, LF CR is two.
        assert_eq!(
            decode(b"data: a\n\rdata: b\n\n"),
            [ev("a", "message", ""), ev("b", "message", "")]
        );
    }

    #[test]
    fn cr_at_chunk_end_then_lf() {
        let mut d = Decoder::new(1024, "");
        assert_eq!(d.feed_events(b"data: a\r").unwrap(), []);
        assert_eq!(d.feed_events(b"").unwrap(), []);
        // The LF completes the CRLF pair; it is not a blank line.
        assert_eq!(d.feed_events(b"\n").unwrap(), []);
        assert_eq!(d.feed_events(b"\r").unwrap(), [ev("a", "message", "")]);
    }

    #[test]
    fn bom_only_at_stream_start() {
        assert_eq!(decode(b"\xEF\xBB\xBFdata: a\n\n"), [ev("a", "message", "")]);
        // A second BOM is part of the first line, which then names no known field.
        assert_eq!(decode(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n"), []);
        assert_eq!(
            decode(b"data: \xEF\xBB\xBFa\n\n"),
            [ev("\u{feff}a", "message", "")]
        );
        // Bytes that only start like a BOM are kept.
        assert_eq!(decode(b"\xEF\xBBdata: a\n\n"), []);
        let mut d = Decoder::new(1024, "");
        assert_eq!(d.feed_events(b"\xEF").unwrap(), []);
        assert_eq!(d.feed_events(b"\xBB").unwrap(), []);
        assert_eq!(
            d.feed_events(b"\xBFdata: x\n\n").unwrap(),
            [ev("x", "message", "")]
        );
        // After finish(), a new stream may start with a BOM again.
        assert!(!d.finish());
        assert_eq!(
            d.feed_events(b"\xEF\xBB\xBFdata: y\n\n").unwrap(),
            [ev("y", "message", "")]
        );
    }

    #[test]
    fn ids_persist_and_nul_is_ignored() {
        let events = decode(b"id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: x\0y\ndata: d\n\n");
        assert_eq!(
            events,
            [
                ev("a", "message", "1"),
                ev("b", "message", "1"),
                ev("c", "message", ""),
                ev("d", "message", "")
            ]
        );
        let mut d = Decoder::new(1024, "");
        // An event without data is not dispatched, but its id still takes effect.
        assert_eq!(d.feed_events(b"id: 42\n\n").unwrap(), []);
        assert_eq!(d.last_event_id(), "42");
        // The id buffer only becomes the last event ID at a blank line.
        assert_eq!(d.feed_events(b"id: 43\n").unwrap(), []);
        assert_eq!(d.last_event_id(), "42");
        assert!(d.finish());
        assert_eq!(d.last_event_id(), "42");
        assert_eq!(
            d.feed_events(b"data: z\n\n").unwrap(),
            [ev("z", "message", "42")]
        );
    }

    #[test]
    fn seeded_last_event_id() {
        let mut d = Decoder::new(1024, "resume-7");
        assert_eq!(
            d.feed_events(b"data: a\n\n").unwrap(),
            [ev("a", "message", "resume-7")]
        );
    }

    #[test]
    fn event_type_resets_and_empty_means_message() {
        assert_eq!(
            decode(b"event: x\n\ndata: a\n\nevent:\ndata: b\n\n"),
            [ev("a", "message", ""), ev("b", "message", "")]
        );
    }

    #[test]
    fn retry_digits_only() {
        let mut d = Decoder::new(1024, "");
        d.feed_events(b"retry: 3000\n").unwrap();
        assert_eq!(d.retry(), Some(3000));
        for bad in [
            &b"retry: 30s\n"[..],
            b"retry: -1\n",
            b"retry:\n",
            b"retry: 1.5\n",
            b"retry:  5\n",
            b"retry: 99999999999999999999999\n",
            "retry: \u{661}\n".as_bytes(),
        ] {
            d.feed_events(bad).unwrap();
            assert_eq!(d.retry(), Some(3000), "{bad:?}");
        }
        d.feed_events(b"retry:0\n").unwrap();
        assert_eq!(d.retry(), Some(0));
    }

    #[test]
    fn comments() {
        let mut d = Decoder::new(1024, "");
        let mut items = Vec::new();
        d.feed(b": keep-alive\r\n:\n:: x\ndata: a\n: mid\n\n", |item| {
            items.push(match item {
                Item::Comment(c) => format!("comment {:?}", String::from_utf8_lossy(c)),
                Item::Event(e) => format!("event {:?}", String::from_utf8_lossy(e.data)),
            })
        })
        .unwrap();
        assert_eq!(
            items,
            [
                r#"comment "keep-alive""#,
                r#"comment """#,
                r#"comment ": x""#,
                r#"comment "mid""#,
                r#"event "a""#
            ]
        );
    }

    #[test]
    fn unknown_fields_ignored() {
        assert_eq!(decode(b"foo: bar\ndata: a\n\n"), [ev("a", "message", "")]);
    }

    #[test]
    fn invalid_utf8() {
        // Data is passed through raw; event and id are decoded with replacement.
        let mut d = Decoder::new(1024, "");
        let events = d
            .feed_events(b"event: a\xFFb\nid: \xC3\ndata: \xFF\n\n")
            .unwrap();
        assert_eq!(events[0].data, b"\xFF");
        assert_eq!(events[0].event, "a\u{FFFD}b");
        assert_eq!(events[0].id, "\u{FFFD}");
    }

    #[test]
    fn finish_discards_incomplete() {
        let mut d = Decoder::new(1024, "");
        assert_eq!(
            d.feed_events(b"data: a\n\ndata: b\n").unwrap(),
            [ev("a", "message", "")]
        );
        assert!(d.finish());
        assert!(!d.finish());
        assert_eq!(d.feed_events(b"data: partial").unwrap(), []);
        assert!(d.finish());
        // A dangling comment is no event, but an unfinished line is still discarded.
        assert_eq!(d.feed_events(b": x\n").unwrap(), []);
        assert!(!d.finish());
        // The next stream does not see the old half event.
        assert_eq!(
            d.feed_events(b"\ndata: c\n\n").unwrap(),
            [ev("c", "message", "")]
        );
    }

    #[test]
    fn size_limit() {
        let mut d = Decoder::new(16, "");
        // 16 bytes of line: fine. Data is "0123456789" plus a newline = 11 bytes.
        assert_eq!(d.feed_events(b"data:0123456789\n").unwrap(), []);
        // 11 held + a 6-byte line > 16.
        assert_eq!(d.feed_events(b"data:x\n"), Err(EventTooLarge { limit: 16 }));
        // The decoder stays failed until finish().
        assert_eq!(d.feed_events(b"\n"), Err(EventTooLarge { limit: 16 }));
        d.finish();
        assert_eq!(
            d.feed_events(b"data:abc\n\n").unwrap(),
            [ev("abc", "message", "")]
        );

        // An endless line fails as soon as it passes the limit, without a terminator.
        let mut d = Decoder::new(16, "");
        assert_eq!(d.feed_events(b": 0123456789").unwrap(), []);
        assert_eq!(d.feed_events(b"abcd").unwrap(), []);
        assert_eq!(d.feed_events(b"e"), Err(EventTooLarge { limit: 16 }));
        assert_eq!(
            EventTooLarge { limit: 16 }.to_string(),
            "SSE event exceeds max_event_size (16 bytes of data plus the line being read)"
        );
        assert_eq!(Decoder::new(0, "").max_event_size(), MIN_EVENT_SIZE);
    }
}
