//! CEL for the gateway's policies (authorization rules, rate-limit descriptors,
//! transformations), on the `cel` crate (cel-rust, which agentgateway also builds on).
//!
//! - [`Program::compile`] parses an expression once and checks it strictly: a variable that
//!   is not one of agentgateway's ([`Var`]), a `request` field that does not exist, a function
//!   that is not declared, or a literal `matches` pattern that is not a valid regular expression
//!   is a [`CompileError`] with its position. It also records what the expression reads
//!   ([`References`]), so a caller binds only those variables, only the `request` fields read,
//!   and of `request.headers` only the headers named by literal keys (all of them when the map
//!   is used otherwise). `request`, its headers and `source` are bound as [`Record`]s.
//! - Not supported (a compile error): timestamps and durations, message (struct) literals,
//!   agentgateway's own extensions (`json`, `default`, `with`, `base64.*`, `regexReplace`, ...)
//!   and variables other than [`Var`]'s (`response`, `destination`, `env`, ...).
//! - [`RuleSet`] evaluates a list of `allow` / `deny` / `require` rules against one set of
//!   [`Bindings`], built once per request; see [`rules`] for the semantics.
//! - Functions: the CEL standard library except timestamps and durations (`size`, `contains`,
//!   `startsWith`, `endsWith`, `matches`, conversions, `has`, `all`, `exists`, `exists_one`,
//!   `map`, `filter`, `in`, optional values `a.?b` / `m[?k]` with `orValue`), the strings
//!   extension (`lowerAscii`, `upperAscii`, `trim`, `split`, `join`, `replace`, `substring`,
//!   `indexOf`, ...; `indexOf`/`lastIndexOf` are our linear ones, [`search`]) and the
//!   Kubernetes IP/CIDR library ([`net`]).

mod env;
pub mod net;
mod program;
mod record;
pub mod rules;
mod search;
mod vars;

pub use program::{CompileError, EvalError, HeaderNames, Program, References, context};
pub use record::{Field, Record};
pub use rules::{Decision, RuleError, RuleKind, RuleSet};
pub use vars::{
    Bindings, RequestField, RequestFields, RequestHead, Var, VarSet, headers_value, request_value,
    source_value, text,
};

#[cfg(test)]
mod tests;
