//! The SSE decoder: a stream fed in arbitrary chunks decodes exactly as when fed whole (items,
//! the size error, last event id, retry, what `finish` reports), agrees with the reference
//! decoder (`sse_ref`), and its events survive `encode_event` and a second decoding.
//!
//! Input: `<limit byte><count byte><count split bytes><stream>`.

#![no_main]

use agentgateway_native::sse::{Decoder, EventTooLarge, Item, MIN_EVENT_SIZE, encode_event};
use agentgateway_native_fuzz::sse_ref;
use libfuzzer_sys::fuzz_target;

/// Everything a decoder reported for a stream, comparable across decoders.
#[derive(Debug, PartialEq, Eq)]
struct Run {
    items: Vec<sse_ref::Item>,
    error: Option<EventTooLarge>,
    last_event_id: String,
    retry: Option<u64>,
    unfinished: bool,
}

fn run(limit: usize, chunks: &[&[u8]]) -> Run {
    let mut decoder = Decoder::new(limit, "");
    let mut items = Vec::new();
    let mut error = None;
    for chunk in chunks {
        let fed = decoder.feed(chunk, |item| {
            items.push(match item {
                Item::Event(e) => sse_ref::Item::Event {
                    data: e.data.to_vec(),
                    event: e.event.to_owned(),
                    id: e.id.to_owned(),
                },
                Item::Comment(c) => sse_ref::Item::Comment(c.to_vec()),
            })
        });
        if let Err(e) = fed {
            error = Some(e);
            // Once failed, the decoder refuses everything until `finish`.
            assert_eq!(
                decoder.feed(b"data: x\n\n", |_| panic!("item after an error")),
                Err(e)
            );
            break;
        }
    }
    let last_event_id = decoder.last_event_id().to_owned();
    let retry = decoder.retry();
    let unfinished = decoder.finish();
    Run {
        items,
        error,
        last_event_id,
        retry,
        unfinished: error.is_none() && unfinished,
    }
}

fuzz_target!(|data: &[u8]| {
    let [limit, count, rest @ ..] = data else {
        return;
    };
    let count = usize::from(*count % 16).min(rest.len());
    let (splits, stream) = rest.split_at(count);
    let limit = MIN_EVENT_SIZE + usize::from(*limit) * 2;

    let mut cuts: Vec<usize> = splits
        .iter()
        .map(|&s| usize::from(s) * stream.len() / 256)
        .collect();
    cuts.sort_unstable();
    let mut chunks = Vec::with_capacity(cuts.len() + 1);
    let mut at = 0;
    for cut in cuts {
        chunks.push(&stream[at..cut]);
        at = cut;
    }
    chunks.push(&stream[at..]);

    // Chunking does not matter, under a tight limit or none.
    assert_eq!(run(limit, &chunks), run(limit, &[stream]));
    let whole = run(usize::MAX, &[stream]);
    assert_eq!(run(usize::MAX, &chunks), whole);

    // The reference agrees.
    let reference = sse_ref::decode(stream);
    assert_eq!(whole.items, reference.items);
    assert_eq!(whole.last_event_id, reference.last_event_id);
    assert_eq!(whole.retry, reference.retry);
    assert_eq!(whole.unfinished, reference.unfinished);

    // Encoding the events and decoding them again gives the same events.
    let mut encoded = Vec::new();
    let mut events = Vec::new();
    for item in &whole.items {
        if let sse_ref::Item::Event { data, event, id } = item {
            encode_event(&mut encoded, data, Some(event), Some(id), None)
                .expect("decoded fields are encodable");
            events.push(item.clone());
        }
    }
    let again = run(usize::MAX, &[&encoded]);
    assert_eq!(again.items, events);
    assert!(!again.unfinished);
});
