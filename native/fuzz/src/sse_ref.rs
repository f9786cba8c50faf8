//! A reference event-stream decoder for the `sse_decode` target: the WHATWG HTML "event
//! stream interpretation" steps applied to a whole stream at once, line by line.

/// What a decoder reported, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    Event {
        data: Vec<u8>,
        event: String,
        id: String,
    },
    Comment(Vec<u8>),
}

/// The reference's view of a whole stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub items: Vec<Item>,
    pub last_event_id: String,
    pub retry: Option<u64>,
    /// Whether the stream ended inside a line or an event (what `finish` reports).
    pub unfinished: bool,
}

/// Splits at CRLF, CR or LF; the text after the last terminator is the unfinished line.
fn lines(stream: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(end) = rest.iter().position(|&b| b == b'\r' || b == b'\n') {
        lines.push(&rest[..end]);
        let skip = if rest[end..].starts_with(b"\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
    }
    (lines, rest)
}

pub fn decode(stream: &[u8]) -> Decoded {
    let stream = stream.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(stream);
    let (lines, unfinished_line) = lines(stream);
    let mut items = Vec::new();
    let mut data: Vec<u8> = Vec::new();
    let mut event_type = String::new();
    let mut id_buffer = String::new();
    let mut last_event_id = String::new();
    let mut retry = None;
    let mut in_event = false;
    for line in lines {
        if line.is_empty() {
            in_event = false;
            last_event_id = id_buffer.clone();
            if !data.is_empty() {
                data.pop();
                let event = if event_type.is_empty() {
                    "message".to_owned()
                } else {
                    event_type.clone()
                };
                items.push(Item::Event {
                    data: std::mem::take(&mut data),
                    event,
                    id: last_event_id.clone(),
                });
            }
            data.clear();
            event_type.clear();
            continue;
        }
        if line[0] == b':' {
            let comment = &line[1..];
            items.push(Item::Comment(
                comment.strip_prefix(b" ").unwrap_or(comment).to_vec(),
            ));
            continue;
        }
        in_event = true;
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                data.extend_from_slice(value);
                data.push(b'\n');
            }
            b"event" => event_type = String::from_utf8_lossy(value).into_owned(),
            b"id" if !value.contains(&0) => {
                id_buffer = String::from_utf8_lossy(value).into_owned();
            }
            // A delay too large for the decoder's integer is ignored.
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                if let Ok(ms) = std::str::from_utf8(value).unwrap().parse::<u64>() {
                    retry = Some(ms);
                }
            }
            _ => {}
        }
    }
    Decoded {
        items,
        last_event_id,
        retry,
        unfinished: in_event || !unfinished_line.is_empty(),
    }
}
