//! The merge of `*/list` results across targets: the planned length is the written length,
//! the output is JSON with the list and hints where they belong, and without dedupe or an
//! allow-list every item comes out in order with only its name (or URI) prefixed.
//!
//! Input: `<options byte><delimiter byte>` then `\xFF`-separated pairs `<target>\xFF<result>`.

#![no_main]

use agentgateway_native::mcp::{
    ListKind, ListResults, MergeOptions, SliceSink, has_scheme, list_item_keys, merge_list_results,
    split_prefixed_name, split_prefixed_uri,
};
use agentgateway_native_fuzz::jsonrpc_ref::object_members;
use agentgateway_native_fuzz::{fields, text};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const KINDS: [ListKind; 4] = [
    ListKind::Tools,
    ListKind::Prompts,
    ListKind::Resources,
    ListKind::ResourceTemplates,
];
const DELIMITERS: [&str; 6] = ["_", "__", "-", "::", "\"", "\u{e9}\n"];

/// The reference reading of one input's hints: `ttlMs` is a non-negative integer
/// (saturating), anything else 0, the smallest of repeated members; `cacheScope` is public
/// only if every copy is the string "public".
fn hints(result: &[u8]) -> (Option<u64>, Option<bool>) {
    let members = object_members(result).expect("scanned as an object");
    let ttl = members
        .iter()
        .filter(|(name, _)| name == "ttlMs")
        .map(|(_, raw)| {
            if raw.bytes().all(|b| b.is_ascii_digit()) {
                raw.parse::<u64>().unwrap_or(u64::MAX)
            } else {
                0
            }
        })
        .min();
    let scopes: Vec<bool> = members
        .iter()
        .filter(|(name, _)| name == "cacheScope")
        .map(|(_, raw)| serde_json::from_str::<String>(raw).is_ok_and(|s| s == "public"))
        .collect();
    let public = (!scopes.is_empty()).then(|| scopes.iter().all(|&p| p));
    (ttl, public)
}

fuzz_target!(|data: &[u8]| {
    let parts = fields(data);
    let Some((options, pairs)) = parts.split_first() else {
        return;
    };
    let [flags, delimiter, ..] = options[..] else {
        return;
    };
    let kind = KINDS[usize::from(flags & 3)];
    let delimiter = DELIMITERS[usize::from(delimiter) % DELIMITERS.len()];
    let names: Vec<String> = pairs.iter().step_by(2).map(|t| text(t)).collect();
    let results: Vec<(&str, &[u8])> = names
        .iter()
        .zip(pairs.iter().skip(1).step_by(2))
        .map(|(name, result)| (name.as_str(), *result))
        .collect();
    let options = MergeOptions {
        prefix: flags & 4 != 0,
        delimiter,
        dedupe: flags & 8 != 0,
        next_cursor: (flags & 16 != 0).then_some("c\"ursor\u{1}"),
    };

    let scanned = match ListResults::scan(kind, &results) {
        Ok(scanned) => scanned,
        Err(e) => {
            assert_eq!(list_item_keys(kind, &results), Err(e));
            return;
        }
    };
    let keys = list_item_keys(kind, &results).expect("scanned above");
    assert_eq!(keys.len(), scanned.items().len());
    let keep: Option<Vec<bool>> = (flags & 32 != 0).then(|| {
        (0..scanned.items().len())
            .map(|i| (i as u8 ^ flags) & 64 == 0)
            .collect()
    });

    let plan = scanned.plan(&options, keep.as_deref());
    let mut exact = vec![0u8; plan.len()];
    let mut sink = SliceSink::new(&mut exact);
    plan.write(&mut sink);
    assert_eq!(sink.written(), plan.len(), "planned length");
    let merged = merge_list_results(kind, &results, &options, keep.as_deref()).expect("scanned");
    assert_eq!(merged, exact);

    let merged: Value = serde_json::from_slice(&merged).unwrap_or_else(|e| {
        panic!(
            "merged result is not JSON ({e}): {}",
            String::from_utf8_lossy(&merged)
        )
    });
    let list = merged[kind.member()]
        .as_array()
        .expect("the list is an array");
    assert_eq!(list.len(), plan.item_count());
    assert_eq!(
        merged.get("nextCursor").and_then(Value::as_str),
        options.next_cursor
    );
    let inputs: Vec<Value> = results
        .iter()
        .map(|(_, r)| serde_json::from_slice(r).expect("scanned as JSON"))
        .collect();
    let hints: Vec<(Option<u64>, Option<bool>)> = results.iter().map(|(_, r)| hints(r)).collect();
    let expected_ttl = hints
        .iter()
        .any(|h| h.0.is_some())
        .then(|| hints.iter().map(|h| h.0.unwrap_or(0)).min().unwrap_or(0));
    assert_eq!(merged.get("ttlMs").and_then(Value::as_u64), expected_ttl);
    let expected_scope = hints.iter().any(|h| h.1.is_some()).then(|| {
        if keep.is_none() && hints.iter().all(|h| h.1 == Some(true)) {
            "public"
        } else {
            "private"
        }
    });
    assert_eq!(
        merged.get("cacheScope").and_then(Value::as_str),
        expected_scope
    );

    // Every exposed name resolves back to a target that could have served it.
    let targets: Vec<&str> = scanned.targets().to_vec();
    for item in list {
        let Some(exposed) = item[kind.key()].as_str() else {
            panic!("merged item without a string key: {item}");
        };
        if options.prefix {
            let split = match kind {
                ListKind::Tools | ListKind::Prompts => {
                    split_prefixed_name(exposed, &targets, delimiter)
                }
                _ => split_prefixed_uri(exposed, &targets),
            };
            if let Some((target, original)) = split {
                assert!(exposed.starts_with(targets[target]));
                assert!(exposed.ends_with(original));
            } else {
                assert!(
                    matches!(kind, ListKind::Resources | ListKind::ResourceTemplates)
                        && !targets.iter().any(|t| exposed
                            .strip_prefix(t)
                            .is_some_and(|r| r.starts_with('+'))
                            && has_scheme(&exposed[t.len() + 1..])),
                    "{exposed:?} does not resolve to a target"
                );
            }
        }
    }

    // The output is the input items in order, each with only its key exposed, less those the
    // allow-list drops and (with dedupe) those whose exposed name more than one target serves.
    let originals: Vec<&Value> = inputs
        .iter()
        .flat_map(|input| {
            input[kind.member()]
                .as_array()
                .expect("scanned as a list")
                .iter()
        })
        .collect();
    assert_eq!(originals.len(), keys.len());
    let by_name = matches!(kind, ListKind::Tools | ListKind::Prompts);
    let joint = if by_name { delimiter } else { "+" };
    let exposed: Vec<String> = keys
        .iter()
        .map(|(target, key)| {
            if options.prefix && (by_name || has_scheme(key)) {
                format!("{target}{joint}{key}")
            } else {
                key.to_string()
            }
        })
        .collect();
    let target_index: Vec<usize> = scanned.items().iter().map(|item| item.target).collect();
    let shared = |i: usize| {
        options.dedupe
            && (0..keys.len())
                .any(|j| exposed[j] == exposed[i] && target_index[j] != target_index[i])
    };
    let expected: Vec<Value> = (0..keys.len())
        .filter(|&i| keep.as_ref().is_none_or(|keep| keep[i]) && !shared(i))
        .map(|i| {
            let mut item = originals[i].clone();
            item[kind.key()] = Value::String(exposed[i].clone());
            item
        })
        .collect();
    assert_eq!(list, &expected);
});
