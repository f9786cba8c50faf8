//! The variables an expression may name, and the values bound to them for one evaluation.
//!
//! Values borrow the caller's data for `'v` (header bytes, claim strings): binding a request
//! copies only what must change (a header name with upper-case letters, repeated headers joined,
//! bytes that are not UTF-8, `uri`).

use cel::common::types::{CelInt, CelString};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;

use super::record::{Field, Record};

/// A top-level variable, agentgateway's names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Var {
    Request,
    Source,
    Jwt,
    ApiKey,
    BasicAuth,
    Mcp,
    A2a,
    Llm,
    Backend,
    Extauthz,
    Metadata,
    /// The LLM request body (`transformations`, `finalTransformations` of `policies.ai`).
    LlmRequest,
}

impl Var {
    pub const ALL: [Var; 12] = [
        Var::Request,
        Var::Source,
        Var::Jwt,
        Var::ApiKey,
        Var::BasicAuth,
        Var::Mcp,
        Var::A2a,
        Var::Llm,
        Var::Backend,
        Var::Extauthz,
        Var::Metadata,
        Var::LlmRequest,
    ];
    pub const COUNT: usize = Var::ALL.len();

    pub fn name(self) -> &'static str {
        match self {
            Var::Request => "request",
            Var::Source => "source",
            Var::Jwt => "jwt",
            Var::ApiKey => "apiKey",
            Var::BasicAuth => "basicAuth",
            Var::Mcp => "mcp",
            Var::A2a => "a2a",
            Var::Llm => "llm",
            Var::Backend => "backend",
            Var::Extauthz => "extauthz",
            Var::Metadata => "metadata",
            Var::LlmRequest => "llmRequest",
        }
    }

    pub fn from_name(name: &str) -> Option<Var> {
        Some(match name {
            "request" => Var::Request,
            "source" => Var::Source,
            "jwt" => Var::Jwt,
            "apiKey" => Var::ApiKey,
            "basicAuth" => Var::BasicAuth,
            "mcp" => Var::Mcp,
            "a2a" => Var::A2a,
            "llm" => Var::Llm,
            "backend" => Var::Backend,
            "extauthz" => Var::Extauthz,
            "metadata" => Var::Metadata,
            "llmRequest" => Var::LlmRequest,
            _ => return None,
        })
    }
}

/// A set of [`Var`]s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VarSet(u16);

impl VarSet {
    pub fn insert(&mut self, var: Var) {
        self.0 |= 1 << var as u8;
    }
    pub fn contains(self, var: Var) -> bool {
        self.0 & (1 << var as u8) != 0
    }
    pub fn union(self, other: VarSet) -> VarSet {
        VarSet(self.0 | other.0)
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn iter(self) -> impl Iterator<Item = Var> {
        Var::ALL.into_iter().filter(move |v| self.contains(*v))
    }
}

/// A field of `request`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestField {
    Method,
    Uri,
    Host,
    Scheme,
    Path,
    PathAndQuery,
    Version,
    Headers,
}

impl RequestField {
    pub const ALL: [RequestField; 8] = [
        RequestField::Method,
        RequestField::Uri,
        RequestField::Host,
        RequestField::Scheme,
        RequestField::Path,
        RequestField::PathAndQuery,
        RequestField::Version,
        RequestField::Headers,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RequestField::Method => "method",
            RequestField::Uri => "uri",
            RequestField::Host => "host",
            RequestField::Scheme => "scheme",
            RequestField::Path => "path",
            RequestField::PathAndQuery => "pathAndQuery",
            RequestField::Version => "version",
            RequestField::Headers => "headers",
        }
    }

    pub fn from_name(name: &str) -> Option<RequestField> {
        RequestField::ALL.into_iter().find(|f| f.name() == name)
    }
}

/// A set of [`RequestField`]s: the ones an expression reads, so a request is bound with those
/// alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RequestFields(u8);

impl RequestFields {
    pub const ALL: RequestFields = RequestFields(u8::MAX);

    pub fn insert(&mut self, field: RequestField) {
        self.0 |= 1 << field as u8;
    }
    pub fn contains(self, field: RequestField) -> bool {
        self.0 & (1 << field as u8) != 0
    }
    pub fn union(self, other: RequestFields) -> RequestFields {
        RequestFields(self.0 | other.0)
    }
}

/// The values bound for one evaluation, by variable. An unbound variable that an expression
/// reads is an evaluation error ("undeclared reference").
#[derive(Default)]
pub struct Bindings<'v> {
    slots: [Option<Box<dyn Val + 'v>>; Var::COUNT],
}

impl<'v> Bindings<'v> {
    pub fn set(&mut self, var: Var, value: Box<dyn Val + 'v>) {
        self.slots[var as usize] = Some(value);
    }

    pub fn is_set(&self, var: Var) -> bool {
        self.slots[var as usize].is_some()
    }
}

impl VariableResolver for Bindings<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let value = self.slots[Var::from_name(variable)? as usize].as_deref()?;
        Some(CowVal::Borrowed(value))
    }
}

/// Bytes as a CEL string: borrowed when they are UTF-8, else decoded with replacement
/// characters.
pub fn text(bytes: &[u8]) -> CelString<'_> {
    match std::str::from_utf8(bytes) {
        Ok(valid) => CelString::from(valid),
        Err(_) => CelString::from(String::from_utf8_lossy(bytes).into_owned()),
    }
}

/// The parts of an HTTP request head that `request` is made of.
pub struct RequestHead<'a, 'v> {
    pub method: &'v [u8],
    pub scheme: &'v [u8],
    /// The Host header or the authority of an absolute-form target; a port is dropped.
    pub host: &'v [u8],
    pub path: &'v [u8],
    /// Path and query, as sent upstream.
    pub path_and_query: &'v [u8],
    /// `HTTP/1.1`.
    pub version: &'v str,
    /// Names lower-case (upper-case letters are lowered, at a copy); a repeated header's
    /// values are joined with ",".
    pub headers: &'a [(&'v [u8], &'v [u8])],
}

/// The host without its port: `example.com:8080` → `example.com`, `[::1]:80` → `[::1]`.
fn host_name(host: &[u8]) -> &[u8] {
    if host.first() == Some(&b'[') {
        return match host.iter().position(|&b| b == b']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.iter().rposition(|&b| b == b':') {
        Some(colon) if host[colon + 1..].iter().all(u8::is_ascii_digit) => &host[..colon],
        _ => host,
    }
}

/// A cheap, approximate membership test for header names while a [`Record`] is built: most
/// names are new, and are added without scanning the entries before them.
fn name_bit(name: &[u8]) -> u64 {
    let first = name.first().copied().unwrap_or(0) as usize;
    let last = name.last().copied().unwrap_or(0) as usize;
    1 << ((name.len().wrapping_mul(31) + first * 7 + last) % 64)
}

/// `request.headers`: a map of lower-case name to value.
pub fn headers_value<'v>(headers: &[(&'v [u8], &'v [u8])]) -> Record<'v> {
    let mut record = Record::with_capacity(headers.len());
    let mut seen = 0u64;
    for &(name, value) in headers {
        let name: CelString<'v> = if name.iter().any(u8::is_ascii_uppercase) {
            CelString::from(String::from_utf8_lossy(&name.to_ascii_lowercase()).into_owned())
        } else {
            text(name)
        };
        let bit = name_bit(name.as_bytes());
        if seen & bit != 0
            && let Some(Field::Str(first)) = record.find_mut(name.inner())
        {
            let joined = format!("{},{}", first.inner(), String::from_utf8_lossy(value));
            *first = CelString::from(joined);
            continue;
        }
        seen |= bit;
        record.push(name, Field::Str(text(value)));
    }
    record
}

/// `request`, with the `fields` asked for.
pub fn request_value<'v>(head: &RequestHead<'_, 'v>, fields: RequestFields) -> Record<'v> {
    let mut record = Record::with_capacity(RequestField::ALL.len());
    for field in RequestField::ALL {
        if !fields.contains(field) {
            continue;
        }
        let value = match field {
            RequestField::Method => Field::Str(text(head.method)),
            RequestField::Scheme => Field::Str(text(head.scheme)),
            RequestField::Host => Field::Str(text(host_name(head.host))),
            RequestField::Path => Field::Str(text(head.path)),
            RequestField::PathAndQuery => Field::Str(text(head.path_and_query)),
            RequestField::Version => Field::Str(CelString::from(head.version)),
            RequestField::Uri => {
                let mut uri = Vec::with_capacity(
                    head.scheme.len() + 3 + head.host.len() + head.path_and_query.len(),
                );
                uri.extend_from_slice(head.scheme);
                uri.extend_from_slice(b"://");
                uri.extend_from_slice(head.host);
                uri.extend_from_slice(head.path_and_query);
                Field::Str(CelString::from(String::from_utf8_lossy(&uri).into_owned()))
            }
            RequestField::Headers => Field::Record(headers_value(head.headers)),
        };
        record.push(CelString::from(field.name()), value);
    }
    record
}

/// `source`: the peer's address and port.
pub fn source_value(address: &str, port: i64) -> Record<'_> {
    let mut record = Record::with_capacity(2);
    record.push(
        CelString::from("address"),
        Field::Str(CelString::from(address)),
    );
    record.push(CelString::from("port"), Field::Int(CelInt::from(port)));
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for var in Var::ALL {
            assert_eq!(Var::from_name(var.name()), Some(var));
        }
        for field in RequestField::ALL {
            assert_eq!(RequestField::from_name(field.name()), Some(field));
        }
        assert_eq!(Var::from_name("response"), None);
        assert_eq!(RequestField::from_name("body"), None);
    }

    #[test]
    fn sets() {
        let mut vars = VarSet::default();
        assert!(vars.is_empty());
        vars.insert(Var::Jwt);
        vars.insert(Var::Metadata);
        assert!(vars.contains(Var::Jwt) && !vars.contains(Var::Request));
        assert_eq!(vars.iter().collect::<Vec<_>>(), [Var::Jwt, Var::Metadata]);
        let mut fields = RequestFields::default();
        fields.insert(RequestField::Headers);
        assert!(fields.contains(RequestField::Headers) && !fields.contains(RequestField::Path));
        assert!(RequestFields::ALL.contains(RequestField::Version));
    }

    #[test]
    fn host_without_port() {
        assert_eq!(host_name(b"example.com:8080"), b"example.com");
        assert_eq!(host_name(b"example.com"), b"example.com");
        assert_eq!(host_name(b"[::1]:80"), b"[::1]");
        assert_eq!(host_name(b"[::1]"), b"[::1]");
        assert_eq!(host_name(b"a:b"), b"a:b");
    }

    #[test]
    fn text_is_lossy_and_borrows_when_it_can() {
        let valid = b"caf\xc3\xa9";
        assert_eq!(text(valid).inner(), "café");
        assert!(text(valid).as_borrowed().is_some());
        assert_eq!(text(b"a\xffb").inner(), "a\u{fffd}b");
    }
}
