//! Merging the `*/list` results of several targets into the one result a federated MCP
//! server answers with.
//!
//! Each upstream result object is scanned once ([`ListResults::scan`]), recording where each
//! item is and the decoded name (or URI) that identifies it. The merge is then planned
//! ([`ListResults::plan`]: which items survive dedupe and the allow-list, which get a target
//! prefix, the exact output length) and written in one go into a buffer of that length.
//! Items are copied byte for byte; the only edit is the target prefix spliced inside the
//! name or URI string token, whose original text (escapes included) is kept.
//!
//! Cache hints (MCP 2026-07-28 `ttlMs`, `cacheScope`) are combined conservatively, as the
//! protocol asks of a gateway: the merged result may be cached no longer and no more widely
//! than any of its parts.
//! - `ttlMs`: omitted when no input carries it; otherwise the minimum, where an input without
//!   it counts as 0 (the spec's reading of an absent `ttlMs`) and a value that is not a
//!   non-negative integer also counts as 0 (a broken hint must not make a result cacheable).
//! - `cacheScope`: omitted when no input carries it; otherwise `"public"` only if every input
//!   says `"public"` and no allow-list filtered the items (a filtered list depends on who
//!   asked); anything else (`"private"`, absent, an unknown value) makes it `"private"`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use crate::jsonrpc::{ParseError, Span, Value, ValueKind};

use super::json::{Sink, Walker, decimal_len, escaped_len, key_is, string_value, write_escaped};
use super::names::has_scheme;

/// Which list a result holds; named after its array member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListKind {
    Tools,
    Prompts,
    Resources,
    ResourceTemplates,
}

impl ListKind {
    /// The kind whose array member is `member` (`"tools"`, `"prompts"`, `"resources"`,
    /// `"resourceTemplates"`).
    pub fn from_member(member: &str) -> Option<Self> {
        Some(match member {
            "tools" => ListKind::Tools,
            "prompts" => ListKind::Prompts,
            "resources" => ListKind::Resources,
            "resourceTemplates" => ListKind::ResourceTemplates,
            _ => return None,
        })
    }

    /// The array member of the result object.
    pub fn member(self) -> &'static str {
        match self {
            ListKind::Tools => "tools",
            ListKind::Prompts => "prompts",
            ListKind::Resources => "resources",
            ListKind::ResourceTemplates => "resourceTemplates",
        }
    }

    /// The item member that identifies an item and carries the target prefix.
    pub fn key(self) -> &'static str {
        match self {
            ListKind::Tools | ListKind::Prompts => "name",
            ListKind::Resources => "uri",
            ListKind::ResourceTemplates => "uriTemplate",
        }
    }

    /// The MCP method whose result this is, for messages.
    pub fn method(self) -> &'static str {
        match self {
            ListKind::Tools => "tools/list",
            ListKind::Prompts => "prompts/list",
            ListKind::Resources => "resources/list",
            ListKind::ResourceTemplates => "resources/templates/list",
        }
    }

    /// Whether items are keyed by URI (`<target>+<uri>`) rather than by name.
    fn keyed_by_uri(self) -> bool {
        matches!(self, ListKind::Resources | ListKind::ResourceTemplates)
    }
}

/// What is wrong with one upstream's result object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    Syntax(ParseError),
    NotAnObject(ValueKind),
    MissingList,
    ListNotArray(ValueKind),
    /// The array member appears twice: parsers disagree on which one counts.
    DuplicateList,
    ItemNotObject {
        index: usize,
        found: ValueKind,
    },
    MissingKey {
        index: usize,
    },
    KeyNotString {
        index: usize,
        found: ValueKind,
    },
    DuplicateKey {
        index: usize,
    },
}

impl From<ParseError> for Malformed {
    fn from(e: ParseError) -> Self {
        Malformed::Syntax(e)
    }
}

/// A malformed upstream result, naming the target so the caller can apply its failure mode
/// (skip the target when failing open, fail the request when failing closed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListError {
    pub kind: ListKind,
    /// Position of the target in the results given to [`ListResults::scan`].
    pub index: usize,
    pub target: String,
    pub reason: Malformed,
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = self.kind.member();
        let key = self.kind.key();
        write!(
            f,
            "target {:?}: malformed {} result: ",
            self.target,
            self.kind.method()
        )?;
        match self.reason {
            Malformed::Syntax(e) => write!(f, "not JSON: {e}"),
            Malformed::NotAnObject(found) => write!(f, "expected an object, found {found}"),
            Malformed::MissingList => write!(f, "no {list:?} member"),
            Malformed::ListNotArray(found) => write!(f, "{list:?} must be an array, found {found}"),
            Malformed::DuplicateList => write!(f, "{list:?} appears twice"),
            Malformed::ItemNotObject { index, found } => {
                write!(f, "{list}[{index}] must be an object, found {found}")
            }
            Malformed::MissingKey { index } => write!(f, "{list}[{index}] has no {key:?}"),
            Malformed::KeyNotString { index, found } => {
                write!(f, "{list}[{index}].{key} must be a string, found {found}")
            }
            Malformed::DuplicateKey { index } => write!(f, "{list}[{index}] has {key:?} twice"),
        }
    }
}

impl std::error::Error for ListError {}

/// One list item: where it is, and its identifying name or URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListItem<'a> {
    /// Position of its target in the scanned results.
    pub target: usize,
    /// The item object in its target's buffer.
    pub span: Span,
    /// The name or URI string token (quotes included) inside the item.
    pub key_span: Span,
    /// The decoded name or URI.
    pub key: Cow<'a, str>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    Absent,
    Public,
    Private,
}

/// The cache hints of one upstream result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Hints {
    ttl_ms: Option<u64>,
    scope: Scope,
}

/// The scanned results of one fan-out, ready to be merged (possibly several times, with
/// different allow-lists).
#[derive(Clone, Debug)]
pub struct ListResults<'a> {
    kind: ListKind,
    targets: Vec<&'a str>,
    bufs: Vec<&'a [u8]>,
    hints: Vec<Hints>,
    items: Vec<ListItem<'a>>,
}

/// How to merge.
#[derive(Clone, Copy, Debug)]
pub struct MergeOptions<'o> {
    /// Expose names as `<target><delimiter><name>` and URIs with a scheme as `<target>+<uri>`.
    pub prefix: bool,
    pub delimiter: &'o str,
    /// Drop every item whose exposed name (or URI) is served by more than one target
    /// (agentgateway's `prefixMode: never`). Decided on the full lists, before the allow-list:
    /// a name is ambiguous at call time whatever one client may see.
    pub dedupe: bool,
    /// The composite cursor built by the caller, written as `nextCursor`.
    pub next_cursor: Option<&'o str>,
}

impl Default for MergeOptions<'_> {
    fn default() -> Self {
        MergeOptions {
            prefix: false,
            delimiter: "_",
            dedupe: false,
            next_cursor: None,
        }
    }
}

impl<'a> ListResults<'a> {
    /// Scans each `(target, result object)`; fails on the first malformed result.
    pub fn scan(kind: ListKind, results: &[(&'a str, &'a [u8])]) -> Result<Self, ListError> {
        let mut scanned = ListResults {
            kind,
            targets: Vec::with_capacity(results.len()),
            bufs: Vec::with_capacity(results.len()),
            hints: Vec::with_capacity(results.len()),
            items: Vec::new(),
        };
        for (index, &(target, buf)) in results.iter().enumerate() {
            let hints =
                scan_result(kind, index, buf, &mut scanned.items).map_err(|reason| ListError {
                    kind,
                    index,
                    target: target.to_owned(),
                    reason,
                })?;
            scanned.targets.push(target);
            scanned.bufs.push(buf);
            scanned.hints.push(hints);
        }
        Ok(scanned)
    }

    pub fn kind(&self) -> ListKind {
        self.kind
    }

    pub fn targets(&self) -> &[&'a str] {
        &self.targets
    }

    /// Every item of every target, in target order then list order.
    pub fn items(&self) -> &[ListItem<'a>] {
        &self.items
    }

    /// Plans the merged result. `keep`, when given, has one flag per item of [`Self::items`]
    /// (the allow-list's verdict); items flagged false are left out and the result is
    /// private.
    ///
    /// # Panics
    /// If `keep` does not have one flag per item.
    pub fn plan<'p>(
        &'p self,
        options: &MergeOptions<'p>,
        keep: Option<&[bool]>,
    ) -> MergePlan<'p, 'a> {
        if let Some(keep) = keep {
            assert_eq!(keep.len(), self.items.len(), "one keep flag per item");
        }
        let prefixes = options.prefix.then(|| self.prefixes(options.delimiter));
        let rewritten = |item: &ListItem<'_>| {
            options.prefix && (!self.kind.keyed_by_uri() || has_scheme(&item.key))
        };
        let shared = options
            .dedupe
            .then(|| self.shared_keys(options.delimiter, &rewritten));

        let mut emit = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            let kept = keep.is_none_or(|keep| keep[i]);
            let unique = shared.as_ref().is_none_or(|shared| !shared[i]);
            if kept && unique {
                emit.push(Emit {
                    item: i,
                    rewritten: rewritten(item),
                });
            }
        }

        let ttl_ms = self.hints.iter().any(|h| h.ttl_ms.is_some()).then(|| {
            self.hints
                .iter()
                .map(|h| h.ttl_ms.unwrap_or(0))
                .min()
                .unwrap_or(0)
        });
        let any_scope = self.hints.iter().any(|h| h.scope != Scope::Absent);
        let all_public = self.hints.iter().all(|h| h.scope == Scope::Public);
        let cache_scope = any_scope.then_some(if all_public && keep.is_none() {
            "public"
        } else {
            "private"
        });

        let mut plan = MergePlan {
            results: self,
            emit,
            prefixes,
            next_cursor: options.next_cursor,
            ttl_ms,
            cache_scope,
            len: 0,
        };
        plan.len = plan.measure();
        plan
    }

    /// Merges into a new buffer of exactly the merged length.
    pub fn merge(&self, options: &MergeOptions<'_>, keep: Option<&[bool]>) -> Vec<u8> {
        let plan = self.plan(options, keep);
        let mut out = Vec::with_capacity(plan.len());
        plan.write(&mut out);
        debug_assert_eq!(out.len(), plan.len());
        out
    }

    /// The escaped text spliced in front of each target's names or URIs.
    fn prefixes(&self, delimiter: &str) -> Prefixes {
        let joint = if self.kind.keyed_by_uri() {
            "+"
        } else {
            delimiter
        };
        let joint_len = escaped_len(joint);
        let size = self
            .targets
            .iter()
            .map(|t| escaped_len(t) + joint_len)
            .sum();
        let mut bytes = Vec::with_capacity(size);
        let mut ends = Vec::with_capacity(self.targets.len());
        for target in &self.targets {
            write_escaped(&mut bytes, target);
            write_escaped(&mut bytes, joint);
            ends.push(bytes.len());
        }
        Prefixes { bytes, ends }
    }

    /// For each item, whether its exposed name is also exposed by another target.
    fn shared_keys(
        &self,
        delimiter: &str,
        rewritten: &impl Fn(&ListItem<'_>) -> bool,
    ) -> Vec<bool> {
        let joint = if self.kind.keyed_by_uri() {
            "+"
        } else {
            delimiter
        };
        let exposed: Vec<Cow<'_, str>> = self
            .items
            .iter()
            .map(|item| {
                if rewritten(item) {
                    Cow::Owned([self.targets[item.target], joint, &item.key].concat())
                } else {
                    Cow::Borrowed(&*item.key)
                }
            })
            .collect();
        // Exposed name -> (first target serving it, whether another target serves it too).
        let mut owners: HashMap<&str, (usize, bool)> = HashMap::with_capacity(exposed.len());
        for (item, name) in self.items.iter().zip(&exposed) {
            owners
                .entry(name.as_ref())
                .and_modify(|(first, shared)| *shared |= *first != item.target)
                .or_insert((item.target, false));
        }
        exposed.iter().map(|name| owners[&**name].1).collect()
    }
}

/// Per-target prefix text, back to back: target `i`'s is `bytes[ends[i-1]..ends[i]]`.
#[derive(Clone, Debug)]
struct Prefixes {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Prefixes {
    fn of(&self, target: usize) -> &[u8] {
        let start = if target == 0 {
            0
        } else {
            self.ends[target - 1]
        };
        &self.bytes[start..self.ends[target]]
    }
}

#[derive(Clone, Copy, Debug)]
struct Emit {
    item: usize,
    rewritten: bool,
}

/// A planned merge: the exact output length is known before anything is written, so the
/// caller can allocate the output (e.g. a Python bytes object) once.
#[derive(Clone, Debug)]
pub struct MergePlan<'p, 'a> {
    results: &'p ListResults<'a>,
    emit: Vec<Emit>,
    prefixes: Option<Prefixes>,
    next_cursor: Option<&'p str>,
    ttl_ms: Option<u64>,
    cache_scope: Option<&'static str>,
    len: usize,
}

impl MergePlan<'_, '_> {
    /// The exact length of the merged result.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many items the merged list holds.
    pub fn item_count(&self) -> usize {
        self.emit.len()
    }

    fn prefix(&self, target: usize) -> &[u8] {
        self.prefixes
            .as_ref()
            .expect("items are rewritten only with prefixes")
            .of(target)
    }

    fn measure(&self) -> usize {
        let member = self.results.kind.member();
        // {"<member>":[ ... ]}
        let mut len = member.len() + r#"{"":[]}"#.len();
        for (n, emit) in self.emit.iter().enumerate() {
            let item = &self.results.items[emit.item];
            len += usize::from(n > 0) + item.span.len();
            if emit.rewritten {
                len += self.prefix(item.target).len();
            }
        }
        if let Some(cursor) = self.next_cursor {
            len += r#","nextCursor":"""#.len() + escaped_len(cursor);
        }
        if let Some(ttl) = self.ttl_ms {
            len += r#","ttlMs":"#.len() + decimal_len(ttl);
        }
        if let Some(scope) = self.cache_scope {
            len += r#","cacheScope":"""#.len() + scope.len();
        }
        len
    }

    /// Writes the merged result object.
    pub fn write(&self, out: &mut impl Sink) {
        let results = self.results;
        out.put(b"{\"");
        out.put(results.kind.member().as_bytes());
        out.put(b"\":[");
        for (n, emit) in self.emit.iter().enumerate() {
            if n > 0 {
                out.put(b",");
            }
            let item = &results.items[emit.item];
            let buf = results.bufs[item.target];
            if emit.rewritten {
                // Up to and including the key's opening quote, the prefix, then the rest.
                let open = item.key_span.start + 1;
                out.put(&buf[item.span.start..open]);
                out.put(self.prefix(item.target));
                out.put(&buf[open..item.span.end]);
            } else {
                out.put(item.span.slice(buf));
            }
        }
        out.put(b"]");
        if let Some(cursor) = self.next_cursor {
            out.put(br#","nextCursor":""#);
            write_escaped(out, cursor);
            out.put(b"\"");
        }
        if let Some(ttl) = self.ttl_ms {
            out.put(br#","ttlMs":"#);
            let mut digits = [0u8; 20];
            let mut at = digits.len();
            let mut rest = ttl;
            loop {
                at -= 1;
                digits[at] = b'0' + (rest % 10) as u8;
                rest /= 10;
                if rest == 0 {
                    break;
                }
            }
            out.put(&digits[at..]);
        }
        if let Some(scope) = self.cache_scope {
            out.put(br#","cacheScope":""#);
            out.put(scope.as_bytes());
            out.put(b"\"");
        }
        out.put(b"}");
    }
}

/// Scans one upstream result object, appending its items; returns its cache hints.
fn scan_result<'a>(
    kind: ListKind,
    target: usize,
    buf: &'a [u8],
    items: &mut Vec<ListItem<'a>>,
) -> Result<Hints, Malformed> {
    let mut w = Walker::new(buf);
    if w.peek() != Some(b'{') {
        let value = w.value()?;
        w.end()?;
        return Err(Malformed::NotAnObject(value.kind));
    }
    let mut hints = Hints {
        ttl_ms: None,
        scope: Scope::Absent,
    };
    let mut listed = false;
    w.object(|w, key| {
        if key_is(buf, key, kind.member()) {
            if listed {
                return Err(Malformed::DuplicateList);
            }
            listed = true;
            if w.peek() != Some(b'[') {
                return Err(Malformed::ListNotArray(w.value()?.kind));
            }
            let mut index = 0;
            w.array(|w| {
                let item = scan_item(kind, target, index, w, buf)?;
                items.push(item);
                index += 1;
                Ok::<_, Malformed>(())
            })?;
        } else if key_is(buf, key, "ttlMs") {
            let ttl = ttl_ms(buf, w.value()?);
            hints.ttl_ms = Some(hints.ttl_ms.map_or(ttl, |seen| seen.min(ttl)));
        } else if key_is(buf, key, "cacheScope") {
            let value = w.value()?;
            let public = matches!(value.kind, ValueKind::String { .. })
                && string_value(buf, value) == "public";
            // A repeated member is read the strict way: public only if every copy says so.
            hints.scope = match (hints.scope, public) {
                (Scope::Absent | Scope::Public, true) => Scope::Public,
                _ => Scope::Private,
            };
        } else {
            w.value()?;
        }
        Ok(())
    })?;
    w.end()?;
    if !listed {
        return Err(Malformed::MissingList);
    }
    Ok(hints)
}

fn scan_item<'a>(
    kind: ListKind,
    target: usize,
    index: usize,
    w: &mut Walker<'a>,
    buf: &'a [u8],
) -> Result<ListItem<'a>, Malformed> {
    if w.peek() != Some(b'{') {
        let found = w.value()?.kind;
        return Err(Malformed::ItemNotObject { index, found });
    }
    let key_name = kind.key();
    let mut key: Option<Value> = None;
    let mut repeated = false;
    let span = w.object(|w, name| {
        let value = w.value()?;
        if key_is(buf, name, key_name) {
            repeated |= key.is_some();
            key = Some(value);
        }
        Ok::<_, Malformed>(())
    })?;
    if repeated {
        return Err(Malformed::DuplicateKey { index });
    }
    let key = key.ok_or(Malformed::MissingKey { index })?;
    if !matches!(key.kind, ValueKind::String { .. }) {
        return Err(Malformed::KeyNotString {
            index,
            found: key.kind,
        });
    }
    Ok(ListItem {
        target,
        span,
        key_span: key.span,
        key: string_value(buf, key),
    })
}

/// A `ttlMs` value: a non-negative integer (saturating at `u64::MAX`); anything else reads
/// as 0, the safe choice for a cache hint.
fn ttl_ms(buf: &[u8], value: Value) -> u64 {
    if value.kind != ValueKind::Integer {
        return 0;
    }
    let digits = value.span.slice(buf);
    if digits.first() == Some(&b'-') {
        return 0;
    }
    digits.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    })
}

/// The `(target, original name or URI)` of every item, in order: what an authorization layer
/// evaluates before merging with an allow-list.
pub fn list_item_keys<'a>(
    kind: ListKind,
    results: &[(&'a str, &'a [u8])],
) -> Result<Vec<(&'a str, Cow<'a, str>)>, ListError> {
    let scanned = ListResults::scan(kind, results)?;
    let targets = scanned.targets;
    Ok(scanned
        .items
        .into_iter()
        .map(|item| (targets[item.target], item.key))
        .collect())
}

/// Scans and merges in one call; see [`ListResults`] and [`MergeOptions`].
pub fn merge_list_results(
    kind: ListKind,
    results: &[(&str, &[u8])],
    options: &MergeOptions<'_>,
    keep: Option<&[bool]>,
) -> Result<Vec<u8>, ListError> {
    Ok(ListResults::scan(kind, results)?.merge(options, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merge(
        kind: ListKind,
        results: &[(&str, &str)],
        options: MergeOptions<'_>,
        keep: Option<&[bool]>,
    ) -> String {
        let results: Vec<(&str, &[u8])> = results.iter().map(|(t, r)| (*t, r.as_bytes())).collect();
        let scanned = ListResults::scan(kind, &results).unwrap();
        let plan = scanned.plan(&options, keep);
        let mut exact = vec![0u8; plan.len()];
        let mut sink = crate::mcp::SliceSink::new(&mut exact);
        plan.write(&mut sink);
        assert_eq!(sink.written(), plan.len());
        let merged = merge_list_results(kind, &results, &options, keep).unwrap();
        assert_eq!(merged, exact);
        let text = String::from_utf8(merged).unwrap();
        crate::jsonrpc::validate(text.as_bytes()).expect(&text);
        text
    }

    fn prefixed() -> MergeOptions<'static> {
        MergeOptions {
            prefix: true,
            ..MergeOptions::default()
        }
    }

    fn error(kind: ListKind, result: &str) -> ListError {
        let ok = r#"{"tools":[],"prompts":[],"resources":[],"resourceTemplates":[]}"#;
        let results = [("ok", ok.as_bytes()), ("bad", result.as_bytes())];
        let e = ListResults::scan(kind, &results).unwrap_err();
        assert_eq!((e.index, e.target.as_str(), e.kind), (1, "bad", kind));
        assert_eq!(list_item_keys(kind, &results).unwrap_err(), e);
        e
    }

    #[test]
    fn tools_are_prefixed_and_copied_byte_for_byte() {
        let math = r#"{ "tools" : [ {"name":"add", "description":"Adds.\n", "inputSchema":{"type":"object","properties":{"a":{"type":"number"}}}} , {"inputSchema":{},"name":"sub"} ], "nextCursor":"up-1", "_meta":{"x":1}}"#;
        let web = r#"{"tools":[{"name":"fetch","title":"F\u00e9tch","annotations":{"readOnlyHint":true}}]}"#;
        let out = merge(
            ListKind::Tools,
            &[("math", math), ("web", web)],
            prefixed(),
            None,
        );
        assert_eq!(
            out,
            r#"{"tools":[{"name":"math_add", "description":"Adds.\n", "inputSchema":{"type":"object","properties":{"a":{"type":"number"}}}},{"inputSchema":{},"name":"math_sub"},{"name":"web_fetch","title":"F\u00e9tch","annotations":{"readOnlyHint":true}}]}"#
        );
        let out = merge(
            ListKind::Tools,
            &[("math", math), ("web", web)],
            MergeOptions::default(),
            None,
        );
        assert!(out.starts_with(r#"{"tools":[{"name":"add", "description""#));
        assert!(out.contains(r#"{"name":"fetch","title""#));
    }

    #[test]
    fn escaped_names_keep_their_text_and_targets_are_escaped() {
        let r = r#"{"tools":[{"n\u0061me":"a\"b\u00e9"}]}"#;
        let out = merge(ListKind::Tools, &[("t\"1\n", r)], prefixed(), None);
        assert_eq!(out, r#"{"tools":[{"n\u0061me":"t\"1\n_a\"b\u00e9"}]}"#);
        let options = MergeOptions {
            prefix: true,
            delimiter: "__",
            ..MergeOptions::default()
        };
        let out = merge(
            ListKind::Prompts,
            &[("p", r#"{"prompts":[{"name":"x"}]}"#)],
            options,
            None,
        );
        assert_eq!(out, r#"{"prompts":[{"name":"p__x"}]}"#);
    }

    #[test]
    fn resources_prefix_only_uris_with_a_scheme() {
        let r = r#"{"resources":[{"uri":"memo:x","name":"memo"},{"uri":"relative/path","name":"r"},{"uri":"file:\/\/\/a"}]}"#;
        let out = merge(ListKind::Resources, &[("svc", r)], prefixed(), None);
        assert_eq!(
            out,
            r#"{"resources":[{"uri":"svc+memo:x","name":"memo"},{"uri":"relative/path","name":"r"},{"uri":"svc+file:\/\/\/a"}]}"#
        );
        let t = r#"{"resourceTemplates":[{"uriTemplate":"db://{table}","name":"rows"},{"uriTemplate":"{x}"}]}"#;
        let out = merge(ListKind::ResourceTemplates, &[("a_b", t)], prefixed(), None);
        assert_eq!(
            out,
            r#"{"resourceTemplates":[{"uriTemplate":"a_b+db://{table}","name":"rows"},{"uriTemplate":"{x}"}]}"#
        );
        // The `name` of a resource is not its key and is never prefixed.
        assert!(out.contains(r#""name":"rows""#));
    }

    #[test]
    fn empty_inputs() {
        assert_eq!(
            merge(ListKind::Tools, &[], prefixed(), None),
            r#"{"tools":[]}"#
        );
        assert_eq!(
            merge(
                ListKind::Tools,
                &[("a", r#"{"tools":[]}"#), ("b", r#" {"tools":[ ]} "#)],
                prefixed(),
                None
            ),
            r#"{"tools":[]}"#
        );
    }

    #[test]
    fn next_cursor_is_escaped() {
        let options = MergeOptions {
            next_cursor: Some("c\"\\\u{1}é"),
            ..MergeOptions::default()
        };
        let out = merge(
            ListKind::Tools,
            &[("a", r#"{"tools":[],"nextCursor":"up"}"#)],
            options,
            None,
        );
        assert_eq!(out, r#"{"tools":[],"nextCursor":"c\"\\\u0001é"}"#);
    }

    #[test]
    fn cache_hints() {
        let hints = |results: &[&str], keep: Option<&[bool]>| {
            let named: Vec<(&str, &str)> = results.iter().map(|r| ("t", *r)).collect();
            let out = merge(ListKind::Tools, &named, MergeOptions::default(), keep);
            out.strip_prefix(r#"{"tools":[]"#).unwrap().to_owned()
        };
        let all = |ttl: &str, scope: &str| {
            format!(r#"{{"tools":[],"ttlMs":{ttl},"cacheScope":"{scope}"}}"#)
        };
        assert_eq!(hints(&[r#"{"tools":[]}"#, r#"{"tools":[]}"#], None), "}");
        assert_eq!(
            hints(&[&all("5000", "public"), &all("300", "public")], None),
            r#","ttlMs":300,"cacheScope":"public"}"#
        );
        // An input without ttlMs counts as 0 once another carries one.
        assert_eq!(
            hints(
                &[
                    &all("5000", "public"),
                    r#"{"tools":[],"cacheScope":"public"}"#
                ],
                None
            ),
            r#","ttlMs":0,"cacheScope":"public"}"#
        );
        // Private wins; so does a missing or unknown scope next to a present one.
        assert_eq!(
            hints(&[&all("5", "public"), &all("9", "private")], None),
            r#","ttlMs":5,"cacheScope":"private"}"#
        );
        assert_eq!(
            hints(&[&all("5", "public"), r#"{"tools":[],"ttlMs":7}"#], None),
            r#","ttlMs":5,"cacheScope":"private"}"#
        );
        assert_eq!(
            hints(&[&all("5", "shared")], None),
            r#","ttlMs":5,"cacheScope":"private"}"#
        );
        assert_eq!(
            hints(&[r#"{"tools":[],"cacheScope":1}"#], None),
            r#","cacheScope":"private"}"#
        );
        assert_eq!(
            hints(
                &[r#"{"tools":[],"cacheScope":"public","cacheScope":"private"}"#],
                None
            ),
            r#","cacheScope":"private"}"#
        );
        assert_eq!(
            hints(&[r#"{"tools":[],"cacheScope":"p\u0075blic"}"#], None),
            r#","cacheScope":"public"}"#
        );
        // An allow-list makes the result depend on the client.
        assert_eq!(
            hints(&[&all("5", "public")], Some(&[])),
            r#","ttlMs":5,"cacheScope":"private"}"#
        );
        // ttlMs values that are not non-negative integers count as 0; huge ones saturate.
        for bad in ["-1", "1.5", "1e3", "\"10\"", "null", "-0"] {
            assert_eq!(
                hints(&[&format!(r#"{{"tools":[],"ttlMs":{bad}}}"#)], None),
                r#","ttlMs":0}"#,
                "{bad}"
            );
        }
        assert_eq!(
            hints(
                &[r#"{"tools":[],"ttlMs":123456789012345678901234567890}"#],
                None
            ),
            format!(r#","ttlMs":{}}}"#, u64::MAX)
        );
        assert_eq!(
            hints(
                &[
                    r#"{"tools":[],"ttlMs":9,"ttlMs":4}"#,
                    r#"{"tools":[],"ttlMs":6}"#
                ],
                None
            ),
            r#","ttlMs":4}"#
        );
        assert_eq!(
            hints(&[r#"{"tools":[],"ttlMs":0}"#], None),
            r#","ttlMs":0}"#
        );
    }

    #[test]
    fn dedupe_drops_names_served_by_several_targets() {
        let a = r#"{"tools":[{"name":"x"},{"name":"y"},{"name":"z"},{"name":"z"}]}"#;
        let b = r#"{"tools":[{"name":"y"},{"name":"w"}]}"#;
        let c = r#"{"tools":[{"name":"\u0078"}]}"#;
        let options = MergeOptions {
            dedupe: true,
            ..MergeOptions::default()
        };
        // `x` (escaped in c) and `y` are shared; `z` repeats within one target only.
        let out = merge(
            ListKind::Tools,
            &[("a", a), ("b", b), ("c", c)],
            options,
            None,
        );
        assert_eq!(out, r#"{"tools":[{"name":"z"},{"name":"z"},{"name":"w"}]}"#);
        // With prefixes, exposed names compare: `a_b` + `x` and `a` + `b_x` collide.
        let options = MergeOptions {
            prefix: true,
            dedupe: true,
            ..MergeOptions::default()
        };
        let out = merge(
            ListKind::Tools,
            &[
                ("a_b", r#"{"tools":[{"name":"x"}]}"#),
                ("a", r#"{"tools":[{"name":"b_x"},{"name":"q"}]}"#),
            ],
            options,
            None,
        );
        assert_eq!(out, r#"{"tools":[{"name":"a_q"}]}"#);
        // Dedupe is decided before the allow-list.
        let options = MergeOptions {
            dedupe: true,
            ..MergeOptions::default()
        };
        let out = merge(
            ListKind::Tools,
            &[
                ("a", r#"{"tools":[{"name":"x"}]}"#),
                ("b", r#"{"tools":[{"name":"x"},{"name":"v"}]}"#),
            ],
            options,
            Some(&[true, false, true]),
        );
        assert_eq!(out, r#"{"tools":[{"name":"v"}]}"#);
        // Resource URIs dedupe by exposed URI.
        let r = r#"{"resources":[{"uri":"plain"},{"uri":"f:x"}]}"#;
        let out = merge(
            ListKind::Resources,
            &[("a", r), ("b", r)],
            MergeOptions {
                prefix: true,
                dedupe: true,
                ..MergeOptions::default()
            },
            None,
        );
        assert_eq!(out, r#"{"resources":[{"uri":"a+f:x"},{"uri":"b+f:x"}]}"#);
    }

    #[test]
    fn allow_list_and_keys() {
        let a = r#"{"tools":[{"name":"x"},{"name":"y"}]}"#;
        let b = r#"{"tools":[{"name":"\u0078"}]}"#;
        let results = [("a", a.as_bytes()), ("b", b.as_bytes())];
        let keys = list_item_keys(ListKind::Tools, &results).unwrap();
        let keys: Vec<(&str, &str)> = keys.iter().map(|(t, k)| (*t, &**k)).collect();
        assert_eq!(keys, [("a", "x"), ("a", "y"), ("b", "x")]);
        let out = merge(
            ListKind::Tools,
            &[("a", a), ("b", b)],
            prefixed(),
            Some(&[false, true, true]),
        );
        assert_eq!(out, r#"{"tools":[{"name":"a_y"},{"name":"b_\u0078"}]}"#);
        let scanned = ListResults::scan(ListKind::Tools, &results).unwrap();
        assert_eq!(scanned.targets(), ["a", "b"]);
        assert_eq!(scanned.kind(), ListKind::Tools);
        let plan = scanned.plan(&prefixed(), Some(&[false, false, false]));
        assert_eq!(plan.item_count(), 0);
        assert!(!plan.is_empty());
        assert_eq!(
            scanned.items()[2].key_span.slice(b.as_bytes()),
            br#""\u0078""#
        );
    }

    #[test]
    #[should_panic(expected = "one keep flag per item")]
    fn keep_flags_must_match_items() {
        let results = [("a", br#"{"tools":[{"name":"x"}]}"#.as_slice())];
        let scanned = ListResults::scan(ListKind::Tools, &results).unwrap();
        let _ = scanned.plan(&MergeOptions::default(), Some(&[]));
    }

    #[test]
    fn malformed_results_name_the_target() {
        use Malformed::*;
        let e = error(ListKind::Tools, "[1]");
        assert_eq!(e.reason, NotAnObject(ValueKind::Array));
        assert_eq!(
            e.to_string(),
            r#"target "bad": malformed tools/list result: expected an object, found an array"#
        );
        assert!(matches!(error(ListKind::Tools, "{").reason, Syntax(_)));
        assert!(matches!(error(ListKind::Tools, "").reason, Syntax(_)));
        assert!(matches!(
            error(ListKind::Tools, r#"{"tools":[]} x"#).reason,
            Syntax(_)
        ));
        assert!(matches!(
            error(ListKind::Tools, r#"{"tools":[{"name":"a"},]}"#).reason,
            Syntax(_)
        ));
        assert!(matches!(
            error(ListKind::Tools, r#"{"tools":[],"x":[1,]}"#).reason,
            Syntax(_)
        ));
        assert!(matches!(
            error(ListKind::Tools, r#"{"tools":[{"name":"a","x":tru}]}"#).reason,
            Syntax(_)
        ));
        assert!(matches!(
            error(ListKind::Tools, "{\"tools\":[{\"name\":\"\\ud800\"}]}").reason,
            Syntax(_)
        ));
        assert!(matches!(error(ListKind::Tools, "1 2").reason, Syntax(_)));
        assert_eq!(
            error(ListKind::Tools, "null").reason,
            NotAnObject(ValueKind::Null)
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"prompts":[]}"#).reason,
            MissingList
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"Tools":[]}"#).reason,
            MissingList
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"tools":null}"#).reason,
            ListNotArray(ValueKind::Null)
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"tools":[],"tools":[]}"#).reason,
            DuplicateList
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"tools":[],"t\u006fols":[]}"#).reason,
            DuplicateList
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"tools":[{"name":"a"},"b"]}"#).reason,
            ItemNotObject {
                index: 1,
                found: ValueKind::String { escaped: false }
            }
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"tools":[{"title":"a"}]}"#).reason,
            MissingKey { index: 0 }
        );
        assert_eq!(
            error(
                ListKind::Prompts,
                r#"{"prompts":[{"name":"a"},{"name":5}]}"#
            )
            .reason,
            KeyNotString {
                index: 1,
                found: ValueKind::Integer
            }
        );
        assert_eq!(
            error(ListKind::Tools, r#"{"tools":[{"name":"a","name":"b"}]}"#).reason,
            DuplicateKey { index: 0 }
        );
        assert_eq!(
            error(ListKind::Resources, r#"{"resources":[{"name":"a"}]}"#).reason,
            MissingKey { index: 0 }
        );
        assert_eq!(
            error(
                ListKind::ResourceTemplates,
                r#"{"resourceTemplates":[{"uri":"a:b"}]}"#
            )
            .reason,
            MissingKey { index: 0 }
        );
        let messages = [
            (
                ListKind::Tools,
                r#"{"tools":{}}"#,
                r#""tools" must be an array, found an object"#,
            ),
            (ListKind::Prompts, r#"{}"#, r#"no "prompts" member"#),
            (
                ListKind::Tools,
                r#"{"tools":[],"tools":[]}"#,
                r#""tools" appears twice"#,
            ),
            (
                ListKind::Tools,
                r#"{"tools":[1]}"#,
                "tools[0] must be an object, found an integer",
            ),
            (
                ListKind::Resources,
                r#"{"resources":[{}]}"#,
                r#"resources[0] has no "uri""#,
            ),
            (
                ListKind::ResourceTemplates,
                r#"{"resourceTemplates":[{"uriTemplate":null}]}"#,
                "resourceTemplates[0].uriTemplate must be a string, found null",
            ),
            (
                ListKind::Tools,
                r#"{"tools":[{"name":"a","name":"a"}]}"#,
                r#"tools[0] has "name" twice"#,
            ),
            (
                ListKind::Tools,
                r#"{"tools":[}"#,
                "not JSON: expected a JSON value at byte 10, found '}'",
            ),
        ];
        for (kind, text, message) in messages {
            let e = error(kind, text);
            let expected = format!(
                r#"target "bad": malformed {} result: {message}"#,
                kind.method()
            );
            assert_eq!(e.to_string(), expected);
        }
    }

    #[test]
    fn kinds() {
        for kind in [
            ListKind::Tools,
            ListKind::Prompts,
            ListKind::Resources,
            ListKind::ResourceTemplates,
        ] {
            assert_eq!(ListKind::from_member(kind.member()), Some(kind));
        }
        assert_eq!(ListKind::from_member("tool"), None);
        assert_eq!(
            ListKind::ResourceTemplates.method(),
            "resources/templates/list"
        );
        assert_eq!(ListKind::ResourceTemplates.key(), "uriTemplate");
    }

    #[test]
    fn five_hundred_tools() {
        // 10 targets x 50 realistic tools: checks the output against a rebuilt expectation.
        let tool = |t: usize, i: usize| {
            format!(
                r#"{{"name":"tool_{i}","description":"Tool {i} of target {t}: does a thing with its inputs and returns a result.","inputSchema":{{"type":"object","properties":{{"query":{{"type":"string","description":"What to look for"}},"limit":{{"type":"integer","minimum":1,"maximum":100}}}},"required":["query"]}},"annotations":{{"readOnlyHint":true}}}}"#
            )
        };
        let targets: Vec<String> = (0..10).map(|t| format!("server{t}")).collect();
        let bodies: Vec<String> = (0..10)
            .map(|t| {
                let tools: Vec<String> = (0..50).map(|i| tool(t, i)).collect();
                format!(
                    r#"{{"tools":[{}],"ttlMs":60000,"cacheScope":"public"}}"#,
                    tools.join(",")
                )
            })
            .collect();
        let results: Vec<(&str, &str)> = targets
            .iter()
            .map(|t| &t[..])
            .zip(bodies.iter().map(|b| &b[..]))
            .collect();
        let out = merge(ListKind::Tools, &results, prefixed(), None);
        let expected: Vec<String> = (0..10)
            .flat_map(|t| {
                (0..50).map(move |i| tool(t, i).replacen("tool_", &format!("server{t}_tool_"), 1))
            })
            .collect();
        assert_eq!(
            out,
            format!(
                r#"{{"tools":[{}],"ttlMs":60000,"cacheScope":"public"}}"#,
                expected.join(",")
            )
        );
    }
}
