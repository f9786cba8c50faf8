//! One compiled expression: parsed once, checked strictly (every variable and function it names
//! must exist), with the variables and request fields it reads worked out for the caller.

use std::fmt;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr, LiteralValue, SourceInfo, operators};
use cel::common::types::{CelBool, CelString};
use cel::common::value::CowVal;
use cel::{Context, ExecutionError, Value};

use super::env;
use super::vars::{Bindings, RequestField, RequestFields, Var, VarSet};

/// What an expression reads: its top-level variables and, of `request`, which fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct References {
    pub variables: VarSet,
    pub request: RequestFields,
    /// Of `request.headers`, which ones (meaningful when `request.headers` is read at all).
    pub headers: HeaderNames,
}

impl References {
    pub fn union(&self, other: &References) -> References {
        References {
            variables: self.variables.union(other.variables),
            request: self.request.union(other.request),
            headers: self.headers.union(&other.headers),
        }
    }

    pub fn needs_headers(&self) -> bool {
        self.variables.contains(Var::Request) && self.request.contains(RequestField::Headers)
    }
}

/// The request headers an expression can observe: those it names as literal keys
/// (`request.headers["x-user"]`, `request.headers.host`, `has(request.headers.cookie)`,
/// `"x" in request.headers`), or all of them when it uses the map any other way (its size, a
/// comprehension, a computed key). Binding only the named ones keeps a request's other headers
/// out of the conversion.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeaderNames {
    /// Sorted, without repeats.
    Named(Vec<String>),
    All,
}

impl Default for HeaderNames {
    fn default() -> Self {
        HeaderNames::Named(Vec::new())
    }
}

impl HeaderNames {
    fn add(&mut self, name: &str) {
        if let HeaderNames::Named(names) = self
            && let Err(at) = names.binary_search_by(|n| n.as_str().cmp(name))
        {
            names.insert(at, name.to_owned());
        }
    }

    pub fn union(&self, other: &HeaderNames) -> HeaderNames {
        match (self, other) {
            (HeaderNames::Named(a), HeaderNames::Named(b)) => {
                let mut union = self.clone();
                b.iter().for_each(|name| union.add(name));
                debug_assert!(a.len() <= union.len_named());
                union
            }
            _ => HeaderNames::All,
        }
    }

    fn len_named(&self) -> usize {
        match self {
            HeaderNames::Named(names) => names.len(),
            HeaderNames::All => usize::MAX,
        }
    }

    /// Whether a header named `name` (as received: its case does not matter) is to be bound.
    /// The name is compared as `request.headers` holds it (see `headers_value`): ASCII letters
    /// lower-cased and bytes that are not UTF-8 replaced, so binding only the named headers
    /// never hides one that the expression would find among all of them.
    pub fn wants(&self, name: &[u8]) -> bool {
        match self {
            HeaderNames::All => true,
            HeaderNames::Named(names) => {
                let bound = match std::str::from_utf8(name) {
                    Ok(_) => std::borrow::Cow::Borrowed(name),
                    Err(_) => std::borrow::Cow::Owned(
                        String::from_utf8_lossy(name).into_owned().into_bytes(),
                    ),
                };
                names.iter().any(|n| {
                    n.len() == bound.len()
                        && n.bytes()
                            .zip(bound.iter())
                            .all(|(a, b)| a == b.to_ascii_lowercase())
                })
            }
        }
    }
}

/// An expression that cannot be compiled: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileError {
    pub source: String,
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source.contains('\n') {
            write!(
                f,
                "{} (line {}, column {} of the expression)",
                self.message, self.line, self.column
            )
        } else {
            write!(
                f,
                "{} (column {} of '{}')",
                self.message, self.column, self.source
            )
        }
    }
}

impl std::error::Error for CompileError {}

/// An evaluation that failed, or a rule whose value is not a bool.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalError(pub String);

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EvalError {}

impl From<ExecutionError> for EvalError {
    fn from(error: ExecutionError) -> Self {
        EvalError(error.to_string())
    }
}

#[derive(Debug)]
pub struct Program {
    source: String,
    expr: IdedExpr,
    references: References,
}

impl Program {
    pub fn compile(source: &str) -> Result<Program, CompileError> {
        let parsed = env::env().parser().parse_with_source_info(source);
        let (expr, info) = parsed.map_err(|errors| {
            let first = errors.errors.first();
            let (line, column) = first.map(|e| e.pos).unwrap_or((1, 0));
            CompileError {
                source: source.to_owned(),
                line: line.max(1) as usize,
                column: column.max(1) as usize,
                message: first
                    .map(|e| e.msg.clone())
                    .unwrap_or_else(|| "invalid expression".to_owned()),
            }
        })?;
        let mut check = Check {
            info: &info,
            scope: Vec::new(),
            references: References::default(),
        };
        check.walk(&expr)?;
        let references = check.references;
        let mut expr = expr;
        index_fields(&mut expr);
        Ok(Program {
            source: source.to_owned(),
            expr,
            references,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn references(&self) -> &References {
        &self.references
    }

    /// The value of the expression; it may borrow the bindings.
    pub fn evaluate<'a, 'v>(
        &'a self,
        context: &'a Context<'_, 'v>,
    ) -> Result<CowVal<'a, 'v>, ExecutionError> {
        Value::resolve_val(&self.expr, context)
    }

    /// The value, which must be a bool (a rule's).
    pub fn evaluate_bool(&self, context: &Context<'_, '_>) -> Result<bool, EvalError> {
        let value = self.evaluate(context)?;
        match value.downcast_ref::<CelBool>() {
            Some(b) => Ok(*b.inner()),
            None => Err(EvalError(format!(
                "expected a bool, the expression gave a {}",
                value.get_type().name()
            ))),
        }
    }
}

/// A context over `bindings`, for evaluating any number of programs.
pub fn context<'v>(bindings: &'v Bindings<'v>) -> Context<'v, 'v> {
    let mut context = Context::with_env(env::env().clone());
    context.set_variable_resolver(bindings);
    context
}

/// Rewrites `v.f` as `v["f"]` when `v` is an identifier naming a value (a variable or a
/// comprehension's): the same lookup, but the interpreter resolves a select chain as a
/// qualified name first (`v.f` could be a variable named "v.f"), which allocates and searches
/// on every evaluation. Names that are no value (`net.IP`) are left alone, as are presence
/// tests (`has(v.f)`), whose operand is evaluated the cheap way already.
fn index_fields(e: &mut IdedExpr) {
    let rewrite = match &mut e.expr {
        Expr::Select(select) if !select.test => match &select.operand.expr {
            Expr::Ident(name) if name != "net" && !TYPE_NAMES.contains(&name.as_str()) => true,
            _ => {
                index_fields(&mut select.operand);
                false
            }
        },
        Expr::Select(select) => {
            index_fields(&mut select.operand);
            false
        }
        Expr::Call(call) => {
            if let Some(target) = &mut call.target {
                index_fields(target);
            }
            call.args.iter_mut().for_each(index_fields);
            false
        }
        Expr::Comprehension(c) => {
            for part in [
                &mut c.iter_range,
                &mut c.accu_init,
                &mut c.loop_cond,
                &mut c.loop_step,
                &mut c.result,
            ] {
                index_fields(part);
            }
            false
        }
        Expr::List(list) => {
            list.elements.iter_mut().for_each(index_fields);
            false
        }
        Expr::Map(map) => {
            for entry in &mut map.entries {
                match &mut entry.expr {
                    EntryExpr::MapEntry(entry) => {
                        index_fields(&mut entry.key);
                        index_fields(&mut entry.value);
                    }
                    EntryExpr::StructField(field) => index_fields(&mut field.value),
                }
            }
            false
        }
        Expr::Unspecified | Expr::Literal(_) | Expr::Ident(_) | Expr::Struct(_) => false,
    };
    if rewrite && let Expr::Select(select) = std::mem::take(&mut e.expr) {
        let key = IdedExpr {
            id: e.id,
            expr: Expr::Literal(LiteralValue::String(CelString::from(select.field))),
        };
        e.expr = Expr::Call(CallExpr {
            func_name: operators::INDEX.to_owned(),
            target: None,
            args: vec![*select.operand, key],
        });
    }
}

/// The reason of a pattern error on one line (a syntax error's text draws a caret under the
/// pattern over several lines).
pub(super) fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    let last = text.lines().last().unwrap_or_default();
    last.strip_prefix("error: ").unwrap_or(last).to_owned()
}

/// Identifiers that name types (`type(x) == string`); `net.IP` and `net.CIDR` are handled apart.
const TYPE_NAMES: &[&str] = &[
    "bool",
    "bytes",
    "double",
    "int",
    "list",
    "map",
    "null_type",
    "string",
    "type",
    "uint",
];

/// The strict check: a walk of the expression that tracks the names comprehensions bind.
struct Check<'a> {
    info: &'a SourceInfo,
    scope: Vec<&'a str>,
    references: References,
}

impl<'a> Check<'a> {
    fn error(&self, at: &IdedExpr, message: String) -> CompileError {
        let source = &self.info.source;
        let offset = self
            .info
            .offset_for(at.id)
            .map(|(start, _)| start as usize)
            .unwrap_or(0);
        let (mut line, mut column) = (1, 1);
        for c in source.chars().take(offset) {
            if c == '\n' {
                line += 1;
                column = 1;
            } else {
                column += 1;
            }
        }
        CompileError {
            source: source.clone(),
            line,
            column,
            message,
        }
    }

    fn is_local(&self, name: &str) -> bool {
        self.scope.iter().rev().any(|bound| *bound == name)
    }

    fn variable(&mut self, at: &IdedExpr, name: &str) -> Result<Option<Var>, CompileError> {
        if self.is_local(name) {
            return Ok(None);
        }
        let var = Var::from_name(name)
            .ok_or_else(|| self.error(at, format!("undeclared reference to '{name}'")))?;
        self.references.variables.insert(var);
        Ok(Some(var))
    }

    /// `request.<field>` or `request["<field>"]`.
    fn request_field(&mut self, at: &IdedExpr, field: &str) -> Result<(), CompileError> {
        let field = RequestField::from_name(field).ok_or_else(|| {
            let known: Vec<&str> = RequestField::ALL.iter().map(|f| f.name()).collect();
            self.error(
                at,
                format!(
                    "request has no field '{field}' (it has {})",
                    known.join(", ")
                ),
            )
        })?;
        if field == RequestField::Headers {
            // `request.headers` used other than with a literal key: every header may be seen.
            self.references.headers = HeaderNames::All;
        }
        self.references.request.insert(field);
        Ok(())
    }

    /// The root variable of `operand` when it is `request` itself (not a local of that name).
    fn is_request(&self, operand: &IdedExpr) -> bool {
        matches!(&operand.expr, Expr::Ident(name) if name == "request" && !self.is_local(name))
    }

    /// Whether `e` is `request.headers` (or `request["headers"]`).
    fn is_headers(&self, e: &IdedExpr) -> bool {
        match &e.expr {
            Expr::Select(select) => {
                !select.test && select.field == "headers" && self.is_request(&select.operand)
            }
            Expr::Call(call) if call.func_name == operators::INDEX => matches!(
                call.args.as_slice(),
                [operand, IdedExpr { expr: Expr::Literal(LiteralValue::String(field)), .. }]
                    if field.inner() == "headers" && self.is_request(operand)
            ),
            _ => false,
        }
    }

    /// A header read by a literal name.
    fn named_header(&mut self, name: &str) {
        self.references.variables.insert(Var::Request);
        self.references.request.insert(RequestField::Headers);
        self.references.headers.add(name);
    }

    fn walk(&mut self, e: &'a IdedExpr) -> Result<(), CompileError> {
        match &e.expr {
            Expr::Unspecified | Expr::Literal(_) => Ok(()),
            Expr::Ident(name) if TYPE_NAMES.contains(&name.as_str()) && !self.is_local(name) => {
                Ok(())
            }
            Expr::Ident(name) => {
                if self.variable(e, name)? == Some(Var::Request) {
                    // The whole of `request`: bind every field.
                    self.references.request = RequestFields::ALL;
                    self.references.headers = HeaderNames::All;
                }
                Ok(())
            }
            Expr::Select(select) => {
                if self.is_headers(&select.operand) {
                    self.named_header(&select.field);
                    return Ok(());
                }
                if self.is_request(&select.operand) {
                    self.references.variables.insert(Var::Request);
                    return self.request_field(e, &select.field);
                }
                if let Expr::Ident(namespace) = &select.operand.expr
                    && namespace == "net"
                    && !self.is_local(namespace)
                    && ["IP", "CIDR"].contains(&select.field.as_str())
                {
                    return Ok(());
                }
                self.walk(&select.operand)
            }
            Expr::Call(call) => {
                let indexes =
                    call.func_name == operators::INDEX || call.func_name == operators::OPT_INDEX;
                // request.headers["name"], "name" in request.headers
                if let [first, second] = call.args.as_slice() {
                    let literal = |e: &'a IdedExpr| match &e.expr {
                        Expr::Literal(LiteralValue::String(s)) => Some(s.inner()),
                        _ => None,
                    };
                    let named = if indexes && self.is_headers(first) {
                        literal(second)
                    } else if call.func_name == operators::IN && self.is_headers(second) {
                        literal(first)
                    } else {
                        None
                    };
                    if let Some(name) = named {
                        self.named_header(name);
                        return Ok(());
                    }
                }
                if indexes
                    && let [
                        operand,
                        IdedExpr {
                            expr: Expr::Literal(LiteralValue::String(field)),
                            ..
                        },
                    ] = call.args.as_slice()
                    && self.is_request(operand)
                {
                    self.references.variables.insert(Var::Request);
                    return self.request_field(e, field.inner());
                }
                match &call.target {
                    Some(target) => {
                        // `optional.none()`, `strings.quote(s)`: a qualified function name.
                        if let Some(name) = self.qualified_name(target) {
                            let function = format!("{name}.{}", call.func_name);
                            if env::is_known_function(&function, false) {
                                return self.walk_all(&call.args);
                            }
                            return Err(self.error(e, format!("undeclared function '{function}'")));
                        }
                        if !env::is_known_function(&call.func_name, true) {
                            return Err(self.error(
                                e,
                                format!(
                                    "undeclared function '{}' (called on a value)",
                                    call.func_name
                                ),
                            ));
                        }
                        if call.func_name == "matches" {
                            self.check_pattern(call.args.first())?;
                        }
                        self.walk(target)?;
                    }
                    None => {
                        if !env::is_known_function(&call.func_name, false) {
                            return Err(
                                self.error(e, format!("undeclared function '{}'", call.func_name))
                            );
                        }
                        if call.func_name == "matches" {
                            self.check_pattern(call.args.get(1))?;
                        }
                    }
                }
                self.walk_all(&call.args)
            }
            Expr::Comprehension(c) => {
                self.walk(&c.iter_range)?;
                self.walk(&c.accu_init)?;
                let depth = self.scope.len();
                self.scope.push(&c.iter_var);
                if let Some(second) = &c.iter_var2 {
                    self.scope.push(second);
                }
                self.scope.push(&c.accu_var);
                let inner = self
                    .walk(&c.loop_cond)
                    .and_then(|()| self.walk(&c.loop_step))
                    .and_then(|()| self.walk(&c.result));
                self.scope.truncate(depth);
                inner
            }
            Expr::List(list) => self.walk_all(&list.elements),
            Expr::Map(map) => {
                for entry in &map.entries {
                    match &entry.expr {
                        EntryExpr::MapEntry(entry) => {
                            self.walk(&entry.key)?;
                            self.walk(&entry.value)?;
                        }
                        EntryExpr::StructField(field) => self.walk(&field.value)?,
                    }
                }
                Ok(())
            }
            Expr::Struct(s) => Err(self.error(
                e,
                format!("message construction is not supported ('{}')", s.type_name),
            )),
        }
    }

    fn walk_all(&mut self, exprs: &'a [IdedExpr]) -> Result<(), CompileError> {
        exprs.iter().try_for_each(|e| self.walk(e))
    }

    /// `a.b` of a call `a.b.f()` when `a` is no variable: a function namespace.
    fn qualified_name(&self, target: &IdedExpr) -> Option<String> {
        match &target.expr {
            Expr::Ident(name) if !self.is_local(name) && Var::from_name(name).is_none() => {
                Some(name.clone())
            }
            Expr::Select(select) if !select.test => self
                .qualified_name(&select.operand)
                .map(|prefix| format!("{prefix}.{}", select.field)),
            _ => None,
        }
    }

    /// A literal pattern is compiled now (and kept), so a bad one is a compile error.
    fn check_pattern(&self, pattern: Option<&IdedExpr>) -> Result<(), CompileError> {
        if let Some(
            at @ IdedExpr {
                expr: Expr::Literal(LiteralValue::String(pattern)),
                ..
            },
        ) = pattern
        {
            let pattern: &CelString = pattern;
            if let Err(err) = env::pattern(pattern.inner()) {
                return Err(self.error(
                    at,
                    format!("invalid regular expression: {}", regex_reason(&err)),
                ));
            }
        }
        Ok(())
    }
}
