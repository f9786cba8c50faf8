//! A reference classification of JSON-RPC 2.0 messages on top of `serde_json`, for the
//! differential `jsonrpc_scan` target. Objects are read as their list of members (duplicates
//! kept) with each value's raw text, so the id can be compared byte for byte.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// What the reference makes of one text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not JSON.
    Parse,
    /// JSON nested deeper than the parsers' limits; the two limits differ by one, so such
    /// texts are only checked for not crashing.
    TooDeep,
    /// JSON, but not a valid message; `id` is the raw id text that the error answer echoes.
    Invalid {
        id: Option<String>,
    },
    Request {
        id: String,
        method: String,
    },
    Notification {
        method: String,
    },
    Result {
        id: String,
    },
    /// `id` is `None` when absent, `Some("null")` when null.
    Error {
        id: Option<String>,
        code: i64,
    },
    /// The raw texts of the elements.
    Batch(Vec<String>),
}

/// The members of an object in order, duplicates included, with raw values.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    members.push((k, v));
                }
                Ok(Members(members))
            }
        }
        deserializer.deserialize_map(V)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    String,
    Integer,
    Float,
    Null,
    Other,
}

fn kind(raw: &str) -> Kind {
    match raw.as_bytes()[0] {
        b'"' => Kind::String,
        b'-' | b'0'..=b'9' => {
            if raw.contains(['.', 'e', 'E']) {
                Kind::Float
            } else {
                Kind::Integer
            }
        }
        b'n' => Kind::Null,
        _ => Kind::Other,
    }
}

fn is_id(raw: &str) -> bool {
    matches!(kind(raw), Kind::String | Kind::Integer)
}

fn string(raw: &str) -> Option<String> {
    serde_json::from_str::<String>(raw).ok()
}

/// Whether the whole text is JSON, as far as `serde_json` can tell.
pub fn json_validity(buf: &[u8]) -> Result<serde_json::Value, Outcome> {
    serde_json::from_slice::<serde_json::Value>(buf).map_err(|e| {
        if e.to_string().starts_with("recursion limit exceeded") {
            Outcome::TooDeep
        } else {
            Outcome::Parse
        }
    })
}

fn first_non_space(buf: &[u8]) -> Option<u8> {
    buf.iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
}

/// `scan`: a top-level array is a batch, anything else one message.
pub fn classify(buf: &[u8]) -> Outcome {
    if let Err(outcome) = json_validity(buf) {
        return outcome;
    }
    if first_non_space(buf) == Some(b'[') {
        let elements: Vec<Box<RawValue>> =
            serde_json::from_slice(buf).expect("validated as JSON above");
        if elements.is_empty() {
            return Outcome::Invalid { id: None };
        }
        return Outcome::Batch(elements.iter().map(|e| e.get().to_owned()).collect());
    }
    message(buf)
}

/// `scan_message`: one message; arrays included are not objects.
pub fn classify_message(buf: &[u8]) -> Outcome {
    if let Err(outcome) = json_validity(buf) {
        return outcome;
    }
    message(buf)
}

const ENVELOPE: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
const ERROR: [&str; 3] = ["code", "message", "data"];

/// The first value of each name of interest, and whether some name repeats.
fn pick<'m, const N: usize>(
    members: &'m Members,
    names: [&str; N],
) -> ([Option<&'m str>; N], [bool; N]) {
    let mut first = [None; N];
    let mut repeated = [false; N];
    for (name, value) in &members.0 {
        if let Some(i) = names.iter().position(|n| n == name) {
            if first[i].is_some() {
                repeated[i] = true;
            } else {
                first[i] = Some(value.get());
            }
        } else if let Some(i) = names.iter().position(|n| go_folded(name) == *n) {
            // Another spelling Go's encoding/json reads as this name: the name repeated.
            repeated[i] = true;
        }
    }
    (first, repeated)
}

/// `name` as Go's `encoding/json` compares names: ASCII lower-cased, `ſ` as `s`, `K` as `k`;
/// trailing U+0000 dropped, as segmentio/encoding before 0.5.4 (the Go SDK's first fix) did.
fn go_folded(name: &str) -> String {
    name.trim_end_matches('\0')
        .chars()
        .map(|c| match c {
            '\u{17F}' => 's',
            '\u{212A}' => 'k',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn message(buf: &[u8]) -> Outcome {
    if first_non_space(buf) != Some(b'{') {
        return Outcome::Invalid { id: None };
    }
    let members: Members = serde_json::from_slice(buf).expect("validated as JSON above");
    let ([jsonrpc, id, method, params, result, error], repeated) = pick(&members, ENVELOPE);
    let readable_id = id
        .filter(|raw| is_id(raw) && !repeated[1])
        .map(str::to_owned);
    let invalid = || Outcome::Invalid {
        id: readable_id.clone(),
    };
    if repeated.contains(&true) {
        return invalid();
    }
    if jsonrpc.and_then(string).as_deref() != Some("2.0") {
        return invalid();
    }
    let id_kind = id.map(kind);
    if matches!(id_kind, Some(Kind::Float | Kind::Other)) {
        return invalid();
    }
    if let Some(method) = method {
        if result.is_some() || error.is_some() {
            return invalid();
        }
        let Some(method) = string(method) else {
            return invalid();
        };
        if params.is_some_and(|p| !matches!(p.as_bytes()[0], b'{' | b'[')) {
            return invalid();
        }
        return match id {
            None => Outcome::Notification { method },
            Some(_) if id_kind == Some(Kind::Null) => invalid(),
            Some(id) => Outcome::Request {
                id: id.to_owned(),
                method,
            },
        };
    }
    match (result, error) {
        (Some(_), None) => match id {
            Some(id) if id_kind != Some(Kind::Null) => Outcome::Result { id: id.to_owned() },
            _ => invalid(),
        },
        (None, Some(error)) => {
            if !error.starts_with('{') {
                return invalid();
            }
            let members: Members = serde_json::from_str(error).expect("a valid object");
            let ([code, message, _], repeated) = pick(&members, ERROR);
            if repeated.contains(&true) {
                return invalid();
            }
            let code = code
                .filter(|raw| kind(raw) == Kind::Integer)
                .and_then(|raw| raw.parse::<i64>().ok());
            match (code, message.map(kind)) {
                (Some(code), Some(Kind::String)) => Outcome::Error {
                    id: id.map(str::to_owned),
                    code,
                },
                _ => invalid(),
            }
        }
        _ => invalid(),
    }
}

/// The members of a JSON object text in order, duplicates included: decoded names and raw
/// values. `None` if the text is not an object.
pub fn object_members(buf: &[u8]) -> Option<Vec<(String, String)>> {
    if first_non_space(buf) != Some(b'{') {
        return None;
    }
    let members: Members = serde_json::from_slice(buf).ok()?;
    Some(
        members
            .0
            .into_iter()
            .map(|(name, value)| (name, value.get().to_owned()))
            .collect(),
    )
}
