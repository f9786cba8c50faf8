//! The one CEL environment every expression is compiled and evaluated with: the standard
//! library (without timestamps and durations), optional values, the strings extension,
//! `matches` with compiled patterns kept, and the IP/CIDR library.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use cel::common::ast::operators;
use cel::common::types::{CelBool, CelString, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{Env, ExecutionError};
use regex::Regex;

use super::net;

static ENV: LazyLock<Arc<Env>> = LazyLock::new(|| {
    let mut env = Env::stdlib();
    // Ahead of the extension, whose own `indexOf`/`lastIndexOf` are quadratic (search.rs).
    super::search::register(&mut env).expect("linear string search");
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    env.add_overload(
        "matches",
        "matches_string",
        vec![STRING_TYPE, STRING_TYPE],
        matches,
    )
    .expect("matches");
    env.add_member_overload(
        "matches",
        "string_matches",
        STRING_TYPE,
        vec![STRING_TYPE],
        matches,
    )
    .expect("matches");
    net::register(&mut env).expect("net library");
    Arc::new(env)
});

pub fn env() -> &'static Arc<Env> {
    &ENV
}

/// Whether a call may name `function`: `member` for `x.f(..)`, else `f(..)`. What the
/// environment above declares, and the operators the parser produces; the macros (`has`,
/// `all`, `exists`, `exists_one`, `map`, `filter`, `optMap`, `optFlatMap`) are expanded by
/// the parser and never reach a call. Keep in step with `ENV` (a test calls every name).
pub fn is_known_function(function: &str, member: bool) -> bool {
    if member {
        MEMBER_FUNCTIONS.contains(&function)
    } else {
        GLOBAL_FUNCTIONS.contains(&function) || OPERATORS.contains(&function)
    }
}

pub(crate) const GLOBAL_FUNCTIONS: &[&str] = &[
    "size",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "matches",
    "optional.of",
    "optional.none",
    "optional.ofNonZeroValue",
    "strings.quote",
    "ip",
    "isIP",
    "cidr",
    "isCIDR",
];

pub(crate) const MEMBER_FUNCTIONS: &[&str] = &[
    "size",
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "charAt",
    "indexOf",
    "lastIndexOf",
    "join",
    "lowerAscii",
    "upperAscii",
    "trim",
    "replace",
    "split",
    "substring",
    "format",
    "reverse",
    "value",
    "hasValue",
    "or",
    "orValue",
    "family",
    "isUnspecified",
    "isLoopback",
    "isLinkLocalMulticast",
    "isLinkLocalUnicast",
    "isGlobalUnicast",
    "containsIP",
    "containsCIDR",
    "ip",
    "masked",
    "prefixLength",
];

const OPERATORS: &[&str] = &[
    operators::CONDITIONAL,
    operators::LOGICAL_AND,
    operators::LOGICAL_OR,
    operators::LOGICAL_NOT,
    operators::SUBSTRACT,
    operators::ADD,
    operators::MULTIPLY,
    operators::DIVIDE,
    operators::MODULO,
    operators::EQUALS,
    operators::NOT_EQUALS,
    operators::GREATER_EQUALS,
    operators::LESS_EQUALS,
    operators::GREATER,
    operators::LESS,
    operators::NEGATE,
    operators::INDEX,
    operators::OPT_INDEX,
    operators::OPT_SELECT,
    operators::NOT_STRICTLY_FALSE,
    operators::IN,
];

/// Patterns compiled once. Expressions put their literal patterns here when they are
/// compiled (the config is trusted, so they get the `regex` crate's default size limits).
static PATTERNS: LazyLock<RwLock<HashMap<String, Arc<Regex>>>> = LazyLock::new(Default::default);
const MAX_PATTERNS: usize = 4096;

/// Patterns computed at run time, which may come from request data. One compiled pattern can
/// take megabytes (`\w{100}` does), so each is compiled within [`RUN_TIME_LIMIT`]
/// bytes of program and of lazy DFA cache, and only [`MAX_RUN_TIME_PATTERNS`] are kept: the
/// ones compiled past that are dropped after use. Counting entries alone let a client that
/// chose the patterns fill gigabytes.
static RUN_TIME_PATTERNS: LazyLock<RwLock<HashMap<String, Arc<Regex>>>> =
    LazyLock::new(Default::default);
pub(crate) const MAX_RUN_TIME_PATTERNS: usize = 64;
pub(crate) const RUN_TIME_LIMIT: usize = 1 << 20;

fn cached(cache: &RwLock<HashMap<String, Arc<Regex>>>, pattern: &str) -> Option<Arc<Regex>> {
    cache
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(pattern)
        .map(Arc::clone)
}

fn keep(
    cache: &RwLock<HashMap<String, Arc<Regex>>>,
    limit: usize,
    pattern: &str,
    compiled: &Arc<Regex>,
) {
    let mut cache = cache.write().unwrap_or_else(|e| e.into_inner());
    if cache.len() < limit {
        cache.insert(pattern.to_owned(), Arc::clone(compiled));
    }
}

/// The compiled literal `pattern` of an expression, from the cache when it is there.
pub fn pattern(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    if let Some(found) = cached(&PATTERNS, pattern) {
        return Ok(found);
    }
    let compiled = Arc::new(Regex::new(pattern)?);
    keep(&PATTERNS, MAX_PATTERNS, pattern, &compiled);
    Ok(compiled)
}

/// The compiled `pattern` that `matches` was given at run time: a literal one compiled with
/// its expression, else one compiled within the run-time limits.
pub fn run_time_pattern(pattern: &str) -> Result<Arc<Regex>, regex::Error> {
    if let Some(found) = cached(&PATTERNS, pattern).or_else(|| cached(&RUN_TIME_PATTERNS, pattern))
    {
        return Ok(found);
    }
    let compiled = Arc::new(
        regex::RegexBuilder::new(pattern)
            .size_limit(RUN_TIME_LIMIT)
            .dfa_size_limit(RUN_TIME_LIMIT)
            .build()?,
    );
    keep(
        &RUN_TIME_PATTERNS,
        MAX_RUN_TIME_PATTERNS,
        pattern,
        &compiled,
    );
    Ok(compiled)
}

/// How many run-time patterns are kept (for tests).
#[cfg(test)]
pub(crate) fn run_time_patterns_kept() -> usize {
    RUN_TIME_PATTERNS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .len()
}

fn matches<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let text = |i: usize| {
        args.get(i)
            .and_then(|v| v.downcast_ref::<CelString>())
            .map(|s| s.inner())
            .ok_or_else(|| ExecutionError::function_error("matches", "expected strings"))
    };
    let (subject, re) = (text(0)?, text(1)?);
    let compiled = run_time_pattern(re).map_err(|err| {
        ExecutionError::function_error(
            "matches",
            format!(
                "'{re}' not a valid regex: {}",
                super::program::regex_reason(&err)
            ),
        )
    })?;
    Ok(CowVal::owned(CelBool::from(compiled.is_match(subject))))
}
