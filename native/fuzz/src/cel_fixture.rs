//! Values to evaluate CEL programs against, the way the Python layer binds them: `request`
//! from a request head, `source` from the peer, and the other variables (JWT claims, MCP and
//! A2A attributes, ...) from JSON-like values. [`Fixture::bind`] binds everything, or only what
//! a program's [`References`] name, which must not change any result.

use std::collections::HashMap;

use agentgateway_native::cel::{
    Bindings, References, RequestFields, RequestHead, Var, request_value, source_value,
};
use cel::Value;
use cel::common::types::{CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull};
use cel::common::types::{CelString, CelUInt};
use cel::common::value::Val;

/// The data of one evaluation, owned; bindings borrow it.
pub struct Fixture {
    pub method: Vec<u8>,
    pub scheme: Vec<u8>,
    pub host: Vec<u8>,
    pub path: Vec<u8>,
    pub path_and_query: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub address: String,
    pub port: i64,
    /// Values of the other variables, as JSON (how claims and attributes arrive).
    pub others: Vec<(Var, serde_json::Value)>,
}

/// Deepest JSON value converted, as the Python layer's bound.
const MAX_DEPTH: usize = 64;

/// A JSON value as the Python layer converts the same Python value: objects become maps with
/// string keys, integers `int` (or `uint` past `i64`), other numbers `double`.
pub fn json_to_cel(value: &serde_json::Value, depth: usize) -> Option<Box<dyn Val + 'static>> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match value {
        serde_json::Value::Null => Box::new(CelNull),
        serde_json::Value::Bool(b) => Box::new(CelBool::from(*b)),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        serde_json::Value::String(s) => Box::new(CelString::from(s.clone())),
        serde_json::Value::Array(items) => Box::new(CelList::from(
            items
                .iter()
                .map(|item| json_to_cel(item, depth + 1))
                .collect::<Option<Vec<_>>>()?,
        )),
        serde_json::Value::Object(members) => {
            let mut map = HashMap::with_capacity(members.len());
            for (k, v) in members {
                map.insert(CelMapKey::from(k.clone()), json_to_cel(v, depth + 1)?);
            }
            Box::new(CelMap::from(map))
        }
    })
}

impl Fixture {
    /// A plausible request, with headers that exercise the binding rules: upper-case names,
    /// a repeated header, a value that is not UTF-8.
    pub fn sample() -> Fixture {
        let json = |text: &str| serde_json::from_str(text).expect("sample JSON");
        Fixture {
            method: b"POST".to_vec(),
            scheme: b"https".to_vec(),
            host: b"api.example.com:8443".to_vec(),
            path: b"/mcp".to_vec(),
            path_and_query: b"/mcp?x=1".to_vec(),
            headers: [
                (&b"host"[..], &b"api.example.com:8443"[..]),
                (b"X-User", b"alice"),
                (b"accept", b"text/event-stream"),
                (b"Accept", b"application/json"),
                (b"x-forwarded-for", b"10.1.2.3, 192.0.2.7"),
                (b"x-raw", b"a\xffb"),
                (b"x-\xffname", b"not UTF-8"),
                (b"authorization", b"Bearer abc.def.ghi"),
            ]
            .iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect(),
            address: "10.1.2.3".to_owned(),
            port: 40000,
            others: vec![
                (
                    Var::Jwt,
                    json(
                        r#"{"sub":"alice","groups":["dev","admin"],"level":3,"exp":1.5e9,
                            "nested":{"key":"value"},"big":18446744073709551615,"none":null}"#,
                    ),
                ),
                (
                    Var::Mcp,
                    json(
                        r#"{"methodName":"tools/call","tool":{"target":"github","name":"create_issue"}}"#,
                    ),
                ),
                (
                    Var::A2a,
                    json(r#"{"method":"SendMessage","task":{"id":"t-1"}}"#),
                ),
                (Var::ApiKey, json(r#"{"key":"k-1","team":"blue"}"#)),
                (Var::BasicAuth, json(r#"{"username":"bob"}"#)),
                (Var::Backend, json(r#"{"name":"svc","type":"mcp"}"#)),
                (
                    Var::Llm,
                    json(r#"{"requestModel":"gpt-4o","inputTokens":12}"#),
                ),
                (Var::Extauthz, json(r#"{"allowed":true}"#)),
                (Var::Metadata, json(r#"{"tier":"gold"}"#)),
            ],
        }
    }

    /// Binds every variable (`references` is `None`), or only those `references` names, with
    /// only the request fields and headers it names: what the gateway binds per request.
    pub fn bind<'v>(&'v self, references: Option<&References>) -> Bindings<'v> {
        let wanted = |var: Var| references.is_none_or(|r| r.variables.contains(var));
        let mut bindings = Bindings::default();
        if wanted(Var::Request) {
            let fields = references.map_or(RequestFields::ALL, |r| r.request);
            let headers: Vec<(&[u8], &[u8])> = self
                .headers
                .iter()
                .filter(|(name, _)| references.is_none_or(|r| r.headers.wants(name)))
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .collect();
            let head = RequestHead {
                method: &self.method,
                scheme: &self.scheme,
                host: &self.host,
                path: &self.path,
                path_and_query: &self.path_and_query,
                version: "HTTP/1.1",
                headers: &headers,
            };
            bindings.set(Var::Request, Box::new(request_value(&head, fields)));
        }
        if wanted(Var::Source) {
            bindings.set(
                Var::Source,
                Box::new(source_value(&self.address, self.port)),
            );
        }
        for (var, value) in &self.others {
            if wanted(*var)
                && let Some(value) = json_to_cel(value, 0)
            {
                bindings.set(*var, value);
            }
        }
        bindings
    }
}

/// An evaluation's outcome in a form two evaluations can be compared by: the value, or `None`
/// when it failed (messages may differ: a missing key and a missing variable fail alike).
pub fn outcome(result: Result<Value, String>) -> Option<Value> {
    result.ok()
}

/// Whether two outcomes agree; NaN, which equals nothing, is taken to agree with itself.
pub fn same(a: &Option<Value>, b: &Option<Value>) -> bool {
    a == b || format!("{a:?}") == format!("{b:?}") && format!("{a:?}").contains("NaN")
}
