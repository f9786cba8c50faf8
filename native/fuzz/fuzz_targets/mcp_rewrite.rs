//! The rewrite of a request routed to one target (`mcp::rewrite_request`): the planned length
//! is the written length, the output is a valid message of the same kind, and it equals the
//! input with exactly the id and the one `params` string replaced (compared as JSON values).
//!
//! Input: `<selector byte><new value>\xFF<message>`. The selector picks the param path and the
//! new id; the new value is the replacement string.

#![no_main]

use agentgateway_native::jsonrpc::{self, Message};
use agentgateway_native::mcp::{
    ParamEdit, RequestRewrite, SliceSink, has_scheme, rewrite_request, split_prefixed_name,
    split_prefixed_uri,
};
use agentgateway_native_fuzz::{fields, text};
use libfuzzer_sys::fuzz_target;

const PATHS: [&str; 8] = [
    "name",
    "uri",
    "ref.name",
    "ref.uri",
    "arguments.x",
    "",
    "a..b",
    "name.first.last",
];
const IDS: [&[u8]; 6] = [b"7", b"\"gw-1\"", b"-0", b"\"\\u00e9\"", b"1.5", b" 7"];

/// Target names that prefix each other, as configs may have.
const TARGETS: [&str; 5] = ["a", "a_b", "svc", "", "\u{e9}"];

/// Resolving an exposed name (what a client sends in `params.name` or `params.uri`) takes the
/// longest target whose prefix it carries, and gives back what follows the prefix.
fn check_split(exposed: &str) {
    for delimiter in ["_", "__", "-"] {
        let expected = TARGETS
            .iter()
            .enumerate()
            .filter_map(|(i, t)| Some((i, exposed.strip_prefix(t)?.strip_prefix(delimiter)?)))
            .max_by_key(|(i, _)| (TARGETS[*i].len(), std::cmp::Reverse(*i)));
        assert_eq!(split_prefixed_name(exposed, &TARGETS, delimiter), expected);
    }
    let expected = TARGETS
        .iter()
        .enumerate()
        .filter_map(|(i, t)| Some((i, exposed.strip_prefix(t)?.strip_prefix('+')?)))
        .filter(|(_, original)| has_scheme(original))
        .max_by_key(|(i, _)| (TARGETS[*i].len(), std::cmp::Reverse(*i)));
    assert_eq!(split_prefixed_uri(exposed, &TARGETS), expected);
}

fuzz_target!(|data: &[u8]| {
    let parts = fields(data);
    let [head, message] = parts[..] else {
        return;
    };
    let Some((&selector, value)) = head.split_first() else {
        return;
    };
    let value = text(value);
    check_split(&value);
    let path = PATHS[usize::from(selector & 7)];
    let new_id = (selector & 8 != 0).then(|| IDS[usize::from(selector >> 4) % IDS.len()]);
    let edit = (selector & 0x80 == 0).then_some(ParamEdit {
        path,
        value: &value,
    });

    let Ok(plan) = RequestRewrite::plan(message, new_id, edit) else {
        assert!(rewrite_request(message, new_id, edit).is_err());
        return;
    };
    let mut exact = vec![0u8; plan.len()];
    let mut sink = SliceSink::new(&mut exact);
    plan.write(&mut sink);
    assert_eq!(sink.written(), plan.len(), "planned length");
    let out = rewrite_request(message, new_id, edit).expect("planned above");
    assert_eq!(out, exact);

    let (Message::Single(before), Message::Single(after)) = (
        jsonrpc::scan(message).expect("planned"),
        jsonrpc::scan(&out).expect("a rewritten message is valid"),
    ) else {
        panic!("a batch was rewritten");
    };
    assert_eq!(before.kind, after.kind);
    if let Some(new_id) = new_id {
        assert_eq!(after.id.map(|s| s.slice(&out)), Some(new_id));
    }

    // Same JSON as the input with the two replacements made on decoded values. Duplicate
    // members elsewhere read the same in both (last wins on both sides).
    let mut expected: serde_json::Value = serde_json::from_slice(message).expect("valid JSON");
    let got: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    if let Some(new_id) = new_id {
        expected["id"] = serde_json::from_slice(new_id).expect("a valid id");
    }
    if let Some(edit) = edit {
        let mut at = &mut expected["params"];
        for part in edit.path.split('.') {
            at = &mut at[part];
        }
        assert!(at.is_string(), "the edited param was a string");
        *at = serde_json::Value::String(edit.value.to_owned());
    }
    assert_eq!(got, expected);
});
