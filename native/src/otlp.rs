//! OTLP spans in the protobuf wire format, written directly.
//!
//! The exporter thread encodes every sampled span; in Python that was the largest part of the
//! tracing cost per request (about 9 µs for a server span and its upstream span), and it held
//! the GIL the event loop needs. Here a span is a plain value, written as the
//! `ScopeSpans.spans` field (field numbers of opentelemetry/proto/{common,trace}/v1); the
//! Python side frames the export request around the spans it batches.

use std::borrow::Cow;

/// An attribute value (`AnyValue`): string 1, bool 2, int 3, double 4, array 5, kvlist 6.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<Value<'a>>),
    KvList(Vec<(Cow<'a, str>, Value<'a>)>),
}

/// A finished span with the trace it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Span<'a> {
    pub trace_id: u128,
    pub span_id: u64,
    pub parent_id: u64,
    /// The client's tracestate, already checked against the W3C grammar.
    pub state: Option<&'a [u8]>,
    pub name: Cow<'a, str>,
    pub kind: u64,
    pub start_ns: u64,
    /// 0: the span did not end; it is written as ending when it started.
    pub end_ns: u64,
    pub attributes: Vec<(Cow<'a, str>, Value<'a>)>,
    /// OTLP status code (0 unset, 2 error) and its message.
    pub status: u64,
    pub message: Cow<'a, str>,
}

const SPAN_KIND_SERVER: u64 = 2;
const FLAG_SAMPLED: u32 = 0x01;
const FLAG_CONTEXT_HAS_IS_REMOTE: u32 = 0x100;
const FLAG_CONTEXT_IS_REMOTE: u32 = 0x200;

// Every message's length is computed before it is written (the length precedes the payload),
// so a span is written straight into one buffer of the right size: no buffer per nested
// message, which was most of the cost in a first version.

fn varint(out: &mut Vec<u8>, mut n: u64) {
    while n > 0x7F {
        out.push((n as u8 & 0x7F) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(n: u64) -> usize {
    // 1 byte per 7 bits, at least one.
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The size of a length-delimited field (one-byte tag) with a payload of `len` bytes.
fn field_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn bytes_field(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

fn header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    varint(out, len as u64);
}

/// The size of an `AnyValue` message.
fn any_value_len(value: &Value<'_>) -> usize {
    match value {
        Value::Str(s) => field_len(s.len()),
        Value::Bool(_) => 2,
        Value::Int(i) => 1 + varint_len(*i as u64),
        Value::Double(_) => 9,
        Value::Array(items) => field_len(array_len(items)),
        Value::KvList(pairs) => field_len(kv_list_len(pairs)),
    }
}

fn array_len(items: &[Value<'_>]) -> usize {
    items
        .iter()
        .map(|item| field_len(any_value_len(item)))
        .sum()
}

fn kv_list_len(pairs: &[(Cow<'_, str>, Value<'_>)]) -> usize {
    pairs
        .iter()
        .map(|(key, item)| field_len(key_value_len(key, item)))
        .sum()
}

/// The size of a `KeyValue` message.
fn key_value_len(key: &str, value: &Value<'_>) -> usize {
    field_len(key.len()) + field_len(any_value_len(value))
}

fn any_value(out: &mut Vec<u8>, value: &Value<'_>) {
    match value {
        Value::Str(s) => bytes_field(out, 0x0a, s.as_bytes()),
        Value::Bool(b) => out.extend_from_slice(&[0x10, u8::from(*b)]),
        Value::Int(i) => {
            out.push(0x18);
            varint(out, *i as u64); // int64: two's complement, ten bytes when negative
        }
        Value::Double(d) => {
            out.push(0x21);
            out.extend_from_slice(&d.to_le_bytes());
        }
        Value::Array(items) => {
            header(out, 0x2a, array_len(items));
            for item in items {
                header(out, 0x0a, any_value_len(item));
                any_value(out, item);
            }
        }
        Value::KvList(pairs) => {
            header(out, 0x32, kv_list_len(pairs));
            for (key, item) in pairs {
                key_value(out, 0x0a, key, item);
            }
        }
    }
}

/// A `KeyValue` message as the field `tag`.
fn key_value(out: &mut Vec<u8>, tag: u8, key: &str, value: &Value<'_>) {
    header(out, tag, key_value_len(key, value));
    bytes_field(out, 0x0a, key.as_bytes());
    header(out, 0x12, any_value_len(value));
    any_value(out, value);
}

fn status_len(span: &Span<'_>) -> usize {
    let message = if span.message.is_empty() {
        0
    } else {
        field_len(span.message.len())
    };
    message + 1 + varint_len(span.status)
}

/// The size of the `Span` message.
fn span_len(span: &Span<'_>) -> usize {
    let mut len = field_len(16) + field_len(8); // trace id, span id
    if let Some(state) = span.state.filter(|state| !state.is_empty()) {
        len += field_len(state.len());
    }
    if span.parent_id != 0 {
        len += field_len(8);
    }
    len += field_len(span.name.len()) + 1 + varint_len(span.kind) + 9 + 9; // name, kind, times
    len += span
        .attributes
        .iter()
        .map(|(key, value)| field_len(key_value_len(key, value)))
        .sum::<usize>();
    len += 2 + 4; // flags
    if span.status != 0 {
        len += field_len(status_len(span));
    }
    len
}

/// Appends `span` as a `ScopeSpans.spans` field (tag, length, `Span` message).
pub fn encode_span(out: &mut Vec<u8>, span: &Span<'_>) {
    let len = span_len(span);
    out.reserve(field_len(len));
    header(out, 0x12, len);
    bytes_field(out, 0x0a, &span.trace_id.to_be_bytes());
    bytes_field(out, 0x12, &span.span_id.to_be_bytes());
    if let Some(state) = span.state.filter(|state| !state.is_empty()) {
        bytes_field(out, 0x1a, state);
    }
    if span.parent_id != 0 {
        bytes_field(out, 0x22, &span.parent_id.to_be_bytes());
    }
    bytes_field(out, 0x2a, span.name.as_bytes());
    out.push(0x30);
    varint(out, span.kind);
    out.push(0x39);
    out.extend_from_slice(&span.start_ns.to_le_bytes());
    out.push(0x41);
    let end = if span.end_ns != 0 {
        span.end_ns
    } else {
        span.start_ns
    };
    out.extend_from_slice(&end.to_le_bytes());
    for (key, value) in &span.attributes {
        key_value(out, 0x4a, key, value);
    }
    // Span.flags (field 16, fixed32): sampled, and whether the parent is remote: a server
    // span's parent is the client's span.
    let remote = span.parent_id != 0 && span.kind == SPAN_KIND_SERVER;
    let flags =
        FLAG_SAMPLED | FLAG_CONTEXT_HAS_IS_REMOTE | if remote { FLAG_CONTEXT_IS_REMOTE } else { 0 };
    out.extend_from_slice(&[0x85, 0x01]);
    out.extend_from_slice(&flags.to_le_bytes());
    if span.status != 0 {
        header(out, 0x7a, status_len(span));
        if !span.message.is_empty() {
            bytes_field(out, 0x12, span.message.as_bytes());
        }
        out.push(0x18);
        varint(out, span.status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal protobuf reader for the assertions: (field number, wire type, payload).
    fn fields(mut data: &[u8]) -> Vec<(u64, u8, Vec<u8>)> {
        fn read_varint(data: &mut &[u8]) -> u64 {
            let mut n = 0u64;
            let mut shift = 0;
            loop {
                let b = data[0];
                *data = &data[1..];
                n |= u64::from(b & 0x7F) << shift;
                if b < 0x80 {
                    return n;
                }
                shift += 7;
            }
        }
        let mut out = Vec::new();
        while !data.is_empty() {
            let key = read_varint(&mut data);
            let wire = (key & 7) as u8;
            let payload = match wire {
                0 => {
                    let before = data;
                    read_varint(&mut data);
                    before[..before.len() - data.len()].to_vec()
                }
                1 => {
                    let (head, rest) = data.split_at(8);
                    data = rest;
                    head.to_vec()
                }
                5 => {
                    let (head, rest) = data.split_at(4);
                    data = rest;
                    head.to_vec()
                }
                2 => {
                    let len = read_varint(&mut data) as usize;
                    let (head, rest) = data.split_at(len);
                    data = rest;
                    head.to_vec()
                }
                other => panic!("wire type {other}"),
            };
            out.push((key >> 3, wire, payload));
        }
        out
    }

    fn span() -> Span<'static> {
        Span {
            trace_id: 0x4BF9_2F35_77B3_4DA6_A3CE_929D_0E0E_4736,
            span_id: 0x1122_3344_5566_7788,
            parent_id: 0xAABB_CCDD_EEFF_0011,
            state: Some(b"vendor=a"),
            name: "GET /api".into(),
            kind: 2,
            start_ns: 1_000,
            end_ns: 0,
            attributes: vec![
                ("s".into(), Value::Str("é".into())),
                ("neg".into(), Value::Int(-5)),
                (
                    "l".into(),
                    Value::Array(vec![Value::Bool(true), Value::Double(0.5)]),
                ),
                (
                    "m".into(),
                    Value::KvList(vec![("k".into(), Value::Int(300))]),
                ),
            ],
            status: 2,
            message: "boom".into(),
        }
    }

    #[test]
    fn span_fields_in_order_with_their_wire_types() {
        let mut out = Vec::new();
        encode_span(&mut out, &span());
        let outer = fields(&out);
        assert_eq!(outer.len(), 1);
        assert_eq!((outer[0].0, outer[0].1), (2, 2));
        let inner = fields(&outer[0].2);
        let numbers: Vec<u64> = inner.iter().map(|f| f.0).collect();
        assert_eq!(numbers, vec![1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 9, 16, 15]);
        assert_eq!(
            inner[0].2,
            0x4BF9_2F35_77B3_4DA6_A3CE_929D_0E0E_4736u128.to_be_bytes()
        );
        assert_eq!(inner[2].2, b"vendor=a");
        assert_eq!(inner[4].2, b"GET /api");
        // No end: ends when it started.
        assert_eq!(inner[6].2, 1_000u64.to_le_bytes());
        assert_eq!(inner[7].2, 1_000u64.to_le_bytes());
        // Server span with a parent: sampled, has-is-remote, is-remote.
        assert_eq!(inner[12].2, 0x301u32.to_le_bytes());
        let status = fields(&inner[13].2);
        assert_eq!(status[0], (2, 2, b"boom".to_vec()));
        assert_eq!(status[1], (3, 0, vec![2]));
    }

    #[test]
    fn computed_lengths_match_what_is_written() {
        for n in [0u64, 1, 127, 128, 16_383, 16_384, u64::MAX] {
            let mut out = Vec::new();
            varint(&mut out, n);
            assert_eq!(out.len(), varint_len(n), "{n}");
        }
        let mut long = span();
        long.name = "n".repeat(300).into();
        long.attributes
            .push(("big".into(), Value::Str("x".repeat(20_000).into())));
        let mut out = Vec::new();
        encode_span(&mut out, &long);
        assert_eq!(out.len(), field_len(span_len(&long)));
        assert_eq!(fields(&out).len(), 1);
    }

    #[test]
    fn negative_ints_are_ten_byte_varints() {
        let mut out = Vec::new();
        any_value(&mut out, &Value::Int(-5));
        assert_eq!(out.len(), 11);
        assert_eq!(out[0], 0x18);
        assert_eq!(*out.last().unwrap(), 0x01);
    }

    #[test]
    fn nested_values() {
        let mut out = Vec::new();
        let value = Value::KvList(vec![(
            "k".into(),
            Value::Array(vec![Value::Str("v".into())]),
        )]);
        any_value(&mut out, &value);
        let list = fields(&out);
        assert_eq!((list[0].0, list[0].1), (6, 2));
        let kv = fields(&fields(&list[0].2)[0].2);
        assert_eq!(kv[0].2, b"k");
        let array = fields(&fields(&kv[1].2)[0].2);
        assert_eq!(array[0].0, 1);
        assert_eq!(fields(&array[0].2)[0].2, b"v");
    }

    #[test]
    fn root_span_without_state_or_status() {
        let mut root = span();
        root.parent_id = 0;
        root.state = None;
        root.status = 0;
        root.kind = 3;
        root.attributes.clear();
        root.end_ns = 2_000;
        let mut out = Vec::new();
        encode_span(&mut out, &root);
        let inner = fields(&fields(&out)[0].2);
        let numbers: Vec<u64> = inner.iter().map(|f| f.0).collect();
        assert_eq!(numbers, vec![1, 2, 5, 6, 7, 8, 16]);
        assert_eq!(inner[5].2, 2_000u64.to_le_bytes());
        assert_eq!(inner[6].2, 0x101u32.to_le_bytes());
    }
}
