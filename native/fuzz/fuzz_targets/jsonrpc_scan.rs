//! The JSON scanner and the JSON-RPC envelope, differentially: `validate` must agree with
//! `serde_json` on what is JSON, and `scan` / `scan_message` with the reference classifier
//! (`jsonrpc_ref`) on what kind of message it is, its id (byte for byte), method and error
//! code; `rewrite_id` must give a message that scans the same with the new id.

#![no_main]

use agentgateway_native::jsonrpc::{
    self, ErrorKind, Kind, Message, Syntax, ValueKind, decode_string, is_valid_id, rewrite_id,
    validate,
};
use agentgateway_native_fuzz::jsonrpc_ref::{self, Outcome};
use libfuzzer_sys::fuzz_target;

fn trim(buf: &[u8]) -> &[u8] {
    let json_space = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let start = buf.iter().position(|b| !json_space(b)).unwrap_or(buf.len());
    let end = buf
        .iter()
        .rposition(|b| !json_space(b))
        .map_or(start, |e| e + 1);
    &buf[start..end]
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("a scanned token is UTF-8")
}

/// `validate` against `serde_json`.
fn check_validate(buf: &[u8]) {
    let ours = validate(buf);
    let theirs = jsonrpc_ref::json_validity(buf);
    match (&ours, &theirs) {
        (Ok(value), Ok(json)) => {
            assert_eq!(
                value.span.slice(buf),
                trim(buf),
                "the span is the value's text"
            );
            let kind_agrees = match (value.kind, json) {
                (ValueKind::Object, serde_json::Value::Object(_))
                | (ValueKind::Array, serde_json::Value::Array(_))
                | (ValueKind::True, serde_json::Value::Bool(true))
                | (ValueKind::False, serde_json::Value::Bool(false))
                | (ValueKind::Null, serde_json::Value::Null) => true,
                (ValueKind::String { .. }, serde_json::Value::String(s)) => {
                    let decoded = decode_string(value.span.slice(buf)).expect("a valid string");
                    assert_eq!(&*decoded, s, "decoded string");
                    true
                }
                (ValueKind::Integer, serde_json::Value::Number(n)) => {
                    !n.to_string().contains(['.', 'e', 'E'])
                }
                (ValueKind::Float, serde_json::Value::Number(n)) => {
                    n.to_string().contains(['.', 'e', 'E'])
                }
                _ => false,
            };
            assert!(kind_agrees, "kind {:?} vs {json:?}", value.kind);
        }
        // serde_json stops at 128 levels, one before ours; the rest of the text is unread.
        (_, Err(Outcome::TooDeep)) => {}
        (Err(e), Err(_)) if e.syntax == Syntax::TooDeep => {}
        (Err(e), Err(Outcome::Parse)) => assert!(e.offset <= buf.len()),
        _ => panic!(
            "validate and serde_json disagree on {:?}: {ours:?} vs {theirs:?}",
            String::from_utf8_lossy(buf)
        ),
    }
}

/// One message (`scan`'s single case or `scan_message`) against the reference.
fn check_message(buf: &[u8], ours: Result<jsonrpc::Envelope, jsonrpc::Error>, reference: Outcome) {
    if reference == Outcome::TooDeep {
        return;
    }
    match ours {
        Err(e) => match e.kind {
            ErrorKind::Parse(p) => {
                assert!(e.id.is_none());
                if p.syntax != Syntax::TooDeep {
                    assert_eq!(reference, Outcome::Parse, "{p}");
                }
            }
            ErrorKind::Invalid(reason) => {
                let id = e.id.map(|span| text(span.slice(buf)));
                assert_eq!(reference, Outcome::Invalid { id }, "{reason}");
            }
        },
        Ok(envelope) => {
            let id = envelope.id.map(|span| text(span.slice(buf)));
            let method = envelope.method(buf).map(|m| m.into_owned());
            let mine = match envelope.kind {
                Kind::Request => Outcome::Request {
                    id: id.clone().expect("a request has an id"),
                    method: method.clone().expect("a request has a method"),
                },
                Kind::Notification => Outcome::Notification {
                    method: method.clone().expect("a notification has a method"),
                },
                Kind::Result => Outcome::Result {
                    id: id.clone().expect("a result has an id"),
                },
                Kind::Error => Outcome::Error {
                    id: id.clone(),
                    code: envelope.error_code.expect("an error has a code"),
                },
            };
            assert_eq!(mine, reference);
            for span in [envelope.params, envelope.result, envelope.error]
                .into_iter()
                .flatten()
            {
                validate(span.slice(buf)).expect("member spans are whole values");
            }
            if let Some(span) = envelope.id
                && envelope.kind != Kind::Error
            {
                assert!(is_valid_id(span.slice(buf)));
            }
        }
    }
}

fn check_scan(buf: &[u8]) {
    let reference = jsonrpc_ref::classify(buf);
    match jsonrpc::scan(buf) {
        Ok(Message::Batch(spans)) => {
            let texts: Vec<String> = spans.iter().map(|s| text(s.slice(buf))).collect();
            if reference != Outcome::TooDeep {
                assert_eq!(Outcome::Batch(texts), reference);
            }
            for span in spans {
                let element = span.slice(buf);
                check_message(
                    element,
                    jsonrpc::scan_message(element),
                    jsonrpc_ref::classify_message(element),
                );
            }
        }
        Ok(Message::Single(envelope)) => check_message(buf, Ok(envelope), reference),
        Err(e) => check_message(buf, Err(e), reference),
    }
    check_message(
        buf,
        jsonrpc::scan_message(buf),
        jsonrpc_ref::classify_message(buf),
    );
    // `split_batch` (the Python layer's batch entry point) splits exactly what `scan` reads as a
    // batch, and refuses the rest.
    match (jsonrpc::split_batch(buf), jsonrpc::scan(buf)) {
        (Ok(spans), Ok(Message::Batch(scanned))) => assert_eq!(spans, scanned),
        (Ok(spans), other) => panic!("split_batch gave {spans:?}, scan {other:?}"),
        (Err(e), Ok(Message::Batch(_))) => panic!("split_batch refused a batch: {e}"),
        (Err(_), _) => {}
    }
}

/// Replacing the id keeps everything else: the new message scans the same with the new id.
fn check_rewrite(buf: &[u8]) {
    const NEW_ID: &[u8] = br#""gw-\u00e9-1""#;
    let Ok(rewritten) = rewrite_id(buf, NEW_ID) else {
        return;
    };
    let before = jsonrpc::scan(buf).expect("rewrite_id scanned it");
    let after = jsonrpc::scan(&rewritten).expect("a rewritten message is valid");
    let (Message::Single(before), Message::Single(after)) = (before, after) else {
        panic!("rewrite_id of a batch");
    };
    assert_eq!(after.kind, before.kind);
    assert_eq!(after.id.map(|s| s.slice(&rewritten)), Some(NEW_ID));
    assert_eq!(after.method(&rewritten), before.method(buf));
    assert_eq!(after.error_code, before.error_code);
}

fuzz_target!(|data: &[u8]| {
    check_validate(data);
    check_scan(data);
    check_rewrite(data);
    let _ = is_valid_id(data);
    if let Ok(decoded) = decode_string(data) {
        assert_eq!(
            serde_json::from_slice::<String>(data).ok().as_deref(),
            Some(&*decoded)
        );
    }
});
