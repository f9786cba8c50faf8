use std::collections::HashMap;

use cel::Value;
use cel::common::value::Val;

use super::*;

const HEADERS: &[(&[u8], &[u8])] = &[
    (b"host", b"api.example.com:8443"),
    (b"user-agent", b"curl/8.5"),
    (b"x-user", b"alice"),
    (b"accept", b"text/html"),
    (b"accept", b"application/json"),
    (b"X-Mixed", b"Case"),
    (b"x-raw", b"a\xffb"),
];

fn head() -> RequestHead<'static, 'static> {
    RequestHead {
        method: b"GET",
        scheme: b"https",
        host: b"api.example.com:8443",
        path: b"/api/v1/items",
        path_and_query: b"/api/v1/items?limit=5",
        version: "HTTP/1.1",
        headers: HEADERS,
    }
}

fn boxed(value: Value) -> Box<dyn Val> {
    value.try_into().unwrap()
}

fn claims() -> Value {
    let mut nested = HashMap::new();
    nested.insert("key".to_string(), Value::from("value"));
    let mut claims: HashMap<String, Value> = HashMap::new();
    claims.insert("sub".into(), "alice".into());
    claims.insert(
        "groups".into(),
        Value::List(vec![Value::from("dev"), Value::from("admin")].into()),
    );
    claims.insert("level".into(), 3i64.into());
    claims.insert("nested".into(), Value::from(nested));
    Value::from(claims)
}

/// Bindings for the sample request: every variable except `llm`, `extauthz` and `metadata`.
fn bindings() -> Bindings<'static> {
    let mut b = Bindings::default();
    b.set(
        Var::Request,
        Box::new(request_value(&head(), RequestFields::ALL)),
    );
    b.set(Var::Source, Box::new(source_value("10.1.2.3", 40000)));
    b.set(Var::Jwt, boxed(claims()));
    let mut tool = HashMap::new();
    tool.insert("target".to_string(), Value::from("github"));
    tool.insert("name".to_string(), Value::from("create_issue"));
    let mut mcp = HashMap::new();
    mcp.insert("methodName".to_string(), Value::from("tools/call"));
    mcp.insert("tool".to_string(), Value::from(tool));
    b.set(Var::Mcp, boxed(Value::from(mcp)));
    let mut a2a = HashMap::new();
    a2a.insert("method".to_string(), Value::from("SendMessage"));
    a2a.insert(
        "task".to_string(),
        Value::from(HashMap::from([("id".to_string(), Value::from("t-1"))])),
    );
    b.set(Var::A2a, boxed(Value::from(a2a)));
    b.set(
        Var::LlmRequest,
        boxed(Value::from(HashMap::from([
            ("model".to_string(), Value::from("anthropic/claude")),
            ("max_tokens".to_string(), Value::from(10i64)),
        ]))),
    );
    b.set(
        Var::ApiKey,
        boxed(Value::from(HashMap::from([(
            "team".to_string(),
            Value::from("blue"),
        )]))),
    );
    b.set(
        Var::BasicAuth,
        boxed(Value::from(HashMap::from([(
            "username".to_string(),
            Value::from("bob"),
        )]))),
    );
    b.set(
        Var::Backend,
        boxed(Value::from(HashMap::from([(
            "name".to_string(),
            Value::from("svc"),
        )]))),
    );
    b
}

fn eval(source: &str) -> Result<Value, String> {
    let program = Program::compile(source).map_err(|e| format!("compile: {e}"))?;
    let b = bindings();
    let ctx = context(&b);
    let value = program.evaluate(&ctx).map_err(|e| e.to_string())?;
    Value::try_from(value.as_ref()).map_err(|e| format!("{e:?}"))
}

fn holds(source: &str) -> bool {
    match eval(source) {
        Ok(Value::Bool(b)) => b,
        other => panic!("{source}: {other:?}"),
    }
}

fn compile_error(source: &str) -> CompileError {
    Program::compile(source).expect_err(source)
}

// --- compiling -------------------------------------------------------------------------------

#[test]
fn syntax_errors_carry_the_position() {
    let e = compile_error("request.path ==");
    assert_eq!(e.source, "request.path ==");
    assert_eq!((e.line, e.column), (1, 16));
    assert!(
        e.message
            .starts_with("Syntax error: mismatched input '<EOF>'"),
        "{e}"
    );
    assert_eq!(compile_error("1 +* 2").column, 4);
    assert!(e.to_string().contains("'request.path =='"), "{e}");
    let e = compile_error("true &&\n  (");
    assert_eq!(e.line, 2, "{e:?}");
    assert!(e.to_string().contains("line 2"), "{e}");
}

#[test]
fn unknown_variables_are_compile_errors() {
    let e = compile_error("requests.path == '/'");
    assert_eq!(e.message, "undeclared reference to 'requests'");
    assert_eq!(e.column, 1);
    let e = compile_error("jwt.sub == user");
    assert_eq!(
        (e.message.as_str(), e.column),
        ("undeclared reference to 'user'", 12)
    );
    assert!(
        compile_error("response.code == 200")
            .message
            .contains("'response'")
    );
}

#[test]
fn unknown_functions_are_compile_errors() {
    assert_eq!(
        compile_error("nope(1)").message,
        "undeclared function 'nope'"
    );
    let e = compile_error("request.path.startswith('/')");
    assert!(e.message.contains("'startswith'"), "{e}");
    assert_eq!(e.column, 24); // the call's parenthesis
    assert!(compile_error("base64.encode('x')").message == "undeclared function 'base64.encode'");
    // timestamps and durations are not built in
    assert!(
        compile_error("timestamp('2024-01-01T00:00:00Z')")
            .message
            .contains("'timestamp'")
    );
}

#[test]
fn unknown_request_fields_are_compile_errors() {
    let e = compile_error("request.body == ''");
    assert!(e.message.starts_with("request has no field 'body'"), "{e}");
    assert!(
        compile_error("request['bodyPrefix'] == ''")
            .message
            .contains("'bodyPrefix'")
    );
    assert!(
        compile_error("has(request.nope)")
            .message
            .contains("'nope'")
    );
}

#[test]
fn invalid_literal_patterns_are_compile_errors() {
    let e = compile_error("request.path.matches('[a-')");
    assert_eq!(
        e.message,
        "invalid regular expression: unclosed character class"
    );
    assert_eq!(e.column, 22);
    assert!(
        compile_error("matches(request.path, '(')")
            .message
            .starts_with("invalid regular expression")
    );
}

#[test]
fn message_construction_is_refused() {
    assert!(
        compile_error("google.protobuf.Duration{seconds: 1}")
            .message
            .contains("not supported")
    );
}

#[test]
fn comprehension_variables_are_local() {
    let p = Program::compile("jwt.groups.exists(g, g == 'admin') && [1, 2].all(x, x > 0)").unwrap();
    assert_eq!(
        p.references().variables.iter().collect::<Vec<_>>(),
        [Var::Jwt]
    );
    assert!(
        compile_error("jwt.groups.exists(g, g == 'admin') && g == 'x'")
            .message
            .contains("'g'")
    );
    // a local named like a variable shadows it
    let p = Program::compile("['a'].exists(request, request == 'a')").unwrap();
    assert!(p.references().variables.is_empty());
    let p = Program::compile(
        "jwt.groups.map(x, x.upperAscii()).filter(y, y.startsWith('A')).size() > 0",
    )
    .unwrap();
    assert_eq!(
        p.references().variables.iter().collect::<Vec<_>>(),
        [Var::Jwt]
    );
}

#[test]
fn references_name_variables_and_request_fields() {
    let p = Program::compile("request.method == 'GET' && source.port > 1 && mcp.tool.name == 'x'")
        .unwrap();
    let r = p.references();
    assert_eq!(
        r.variables.iter().collect::<Vec<_>>(),
        [Var::Request, Var::Source, Var::Mcp]
    );
    assert!(r.request.contains(RequestField::Method) && !r.request.contains(RequestField::Path));
    assert!(!r.needs_headers());
    for source in [
        "request.headers['x-user'] == 'a'",
        "has(request.headers.authorization)",
        "request['headers'].size() > 0",
        "'x' in request.headers",
        "size(request) > 0",
        "request[?'headers'].hasValue()",
    ] {
        assert!(
            Program::compile(source)
                .unwrap()
                .references()
                .needs_headers(),
            "{source}"
        );
    }
    let r = Program::compile("size(request) > 0")
        .unwrap()
        .references()
        .clone();
    assert_eq!(r.request, RequestFields::ALL);
    assert!(
        !Program::compile("jwt.sub == 'a'")
            .unwrap()
            .references()
            .needs_headers()
    );
    let r = Program::compile(
        "apiKey.team == basicAuth.username || llm.x == backend.name || extauthz.a == metadata.b",
    )
    .unwrap()
    .references()
    .clone();
    assert_eq!(
        r.variables.iter().collect::<Vec<_>>(),
        [
            Var::ApiKey,
            Var::BasicAuth,
            Var::Llm,
            Var::Backend,
            Var::Extauthz,
            Var::Metadata
        ]
    );
}

// --- the request and other variables --------------------------------------------------------

#[test]
fn request_fields() {
    assert_eq!(eval("request.method"), Ok(Value::from("GET")));
    assert_eq!(eval("request.scheme"), Ok(Value::from("https")));
    assert_eq!(eval("request.host"), Ok(Value::from("api.example.com")));
    assert_eq!(eval("request.path"), Ok(Value::from("/api/v1/items")));
    assert_eq!(
        eval("request.pathAndQuery"),
        Ok(Value::from("/api/v1/items?limit=5"))
    );
    assert_eq!(
        eval("request.uri"),
        Ok(Value::from(
            "https://api.example.com:8443/api/v1/items?limit=5"
        ))
    );
    assert_eq!(eval("request.version"), Ok(Value::from("HTTP/1.1")));
}

#[test]
fn request_headers() {
    assert_eq!(eval("request.headers['x-user']"), Ok(Value::from("alice")));
    assert_eq!(
        eval("request.headers.accept"),
        Ok(Value::from("text/html,application/json"))
    );
    assert_eq!(eval("request.headers['x-mixed']"), Ok(Value::from("Case")));
    assert_eq!(
        eval("request.headers['x-raw']"),
        Ok(Value::from("a\u{fffd}b"))
    );
    assert!(holds(
        "has(request.headers.host) && !has(request.headers.cookie)"
    ));
    assert!(holds(
        "'x-user' in request.headers && !('X-User' in request.headers)"
    ));
    assert!(holds("size(request.headers) == 6"));
    assert!(holds("request.headers.exists(h, h.startsWith('x-'))"));
    assert!(holds(
        "request.headers[?'cookie'].orValue('none') == 'none'"
    ));
    assert!(
        eval("request.headers['cookie']")
            .unwrap_err()
            .contains("No such key")
    );
}

#[test]
fn only_the_fields_asked_for_are_bound() {
    let mut fields = RequestFields::default();
    fields.insert(RequestField::Path);
    let request = request_value(&head(), fields);
    assert_eq!(request.len(), 1);
    let mut b = Bindings::default();
    b.set(Var::Request, Box::new(request));
    let ctx = context(&b);
    let p = Program::compile("request.path").unwrap();
    assert_eq!(
        Value::try_from(p.evaluate(&ctx).unwrap().as_ref()),
        Ok(Value::from("/api/v1/items"))
    );
}

#[test]
fn unbound_variables_fail_at_evaluation() {
    assert!(eval("metadata.a == 1").unwrap_err().contains("metadata"));
    assert!(!bindings().is_set(Var::Llm));
}

#[test]
fn source_and_other_variables() {
    assert!(holds(
        "source.address == '10.1.2.3' && source.port == 40000"
    ));
    assert!(holds(
        "jwt.sub == 'alice' && jwt.level >= 3 && jwt.nested.key == 'value'"
    ));
    assert!(holds(
        "mcp.tool.name == 'create_issue' && mcp.tool.target == 'github' && mcp.methodName == 'tools/call'"
    ));
    assert!(holds(
        "apiKey.team == 'blue' && basicAuth.username == 'bob' && backend.name == 'svc'"
    ));
    assert!(holds(
        "a2a.method == 'SendMessage' && a2a.task.id == 't-1' && !has(a2a.context)"
    ));
    assert!(holds(
        "llmRequest.model.startsWith('anthropic/') && llmRequest.max_tokens * 2 == 20"
    ));
}

// --- functions -----------------------------------------------------------------------------

#[test]
fn string_functions() {
    assert!(holds(
        "request.path.startsWith('/api/') && request.host.endsWith('.example.com')"
    ));
    assert!(holds("request.headers['user-agent'].contains('curl')"));
    assert!(holds(
        "request.path.matches('^/api/v[0-9]+/') && matches(request.method, 'GET|HEAD')"
    ));
    assert!(holds("!request.path.matches('^/admin')"));
    assert!(holds(
        "size(request.method) == 3 && request.method.size() == 3"
    ));
    assert!(holds(
        "request.method.lowerAscii() == 'get' && 'aBc'.upperAscii() == 'ABC'"
    ));
    assert!(holds(
        "'  x '.trim() == 'x' && 'a,b'.split(',') == ['a', 'b'] && ['a', 'b'].join('-') == 'a-b'"
    ));
    assert!(holds(
        "'abc'.replace('b', 'x') == 'axc' && 'abc'.substring(1) == 'bc' && 'abc'.indexOf('c') == 2"
    ));
    assert!(holds(
        "'abc'.charAt(0) == 'a' && 'abca'.lastIndexOf('a') == 3 && 'abc'.reverse() == 'cba'"
    ));
    assert!(holds(
        "'%s-%d'.format(['a', 1]) == 'a-1' && strings.quote('a') == '\"a\"'"
    ));
    assert!(holds(
        "string(1) == '1' && int('2') == 2 && double(1) == 1.0 && uint(1) == 1u && bool('true')"
    ));
    assert!(holds(
        "type(1) == int && type('') == string && type(null) == null_type && type(int) == type"
    ));
    assert!(compile_error("net.IPV6 == 1").message.contains("'net'"));
    assert!(holds(
        "dyn(1) == 1 && bytes('a') == b'a' && size(b'ab') == 2"
    ));
}

#[test]
fn dynamic_patterns_compile_on_use() {
    assert!(holds("request.path.matches('^' + '/api')"));
    let err = eval("request.path.matches('[' + '')").unwrap_err();
    assert!(err.contains("not a valid regex"), "{err}");
}

#[test]
fn run_time_patterns_are_bounded() {
    // Found while writing the cel_eval fuzz target: a pattern computed at run time, which can
    // come from request data, was compiled with the limits for the config's own patterns
    // (10 MiB each) and kept up to 4096 of them, gigabytes chosen by a client.
    assert!(Program::compile(r"request.path.matches(r'\w{100}')").is_ok());
    let err = eval(r"request.path.matches(r'\w{101}' + '')").unwrap_err();
    assert!(
        err.contains("not a valid regex") && err.contains("size limit"),
        "{err}"
    );
    assert!(holds(r"request.path.matches(r'/\w{2}/' + 'items$')"));
    for i in 0..env::MAX_RUN_TIME_PATTERNS + 8 {
        assert!(holds(&format!("!request.path.matches('^nope{i}' + '$')")));
    }
    assert!(env::run_time_patterns_kept() <= env::MAX_RUN_TIME_PATTERNS);
}

#[test]
fn lists_maps_and_macros() {
    assert!(holds("'admin' in jwt.groups && !('root' in jwt.groups)"));
    assert!(holds(
        "request.method in ['GET', 'HEAD'] && 'a' in {'a': 1}"
    ));
    assert!(holds(
        "{'a': 1, 'b': 2}['b'] == 2 && [1, 2, 3][1] == 2 && size([1, 2]) == 2 && size({'a': 1}) == 1"
    ));
    assert!(holds(
        "jwt.groups.exists(g, g == 'dev') && jwt.groups.all(g, size(g) > 2)"
    ));
    assert!(holds(
        "jwt.groups.exists_one(g, g == 'dev') && jwt.groups.existsOne(g, g == 'admin')"
    ));
    assert!(holds(
        "jwt.groups.map(g, g.upperAscii()) == ['DEV', 'ADMIN']"
    ));
    assert!(holds("jwt.groups.filter(g, g != 'dev') == ['admin']"));
    assert!(holds(
        "has(jwt.sub) && !has(jwt.email) && has(jwt.nested.key)"
    ));
    assert!(holds(
        "jwt.?email.orValue('none') == 'none' && jwt.?sub.hasValue() && jwt.?sub.value() == 'alice'"
    ));
    assert!(holds(
        "optional.of(1).hasValue() && !optional.none().hasValue() && optional.none().or(optional.of(2)).value() == 2"
    ));
    assert!(holds("optional.ofNonZeroValue('').orValue('z') == 'z'"));
    assert!(holds(
        "jwt.?nested.?key.optMap(k, k + '!').orValue('') == 'value!'"
    ));
    assert!(holds(
        "(jwt.level > 2 ? 'hi' : 'lo') == 'hi' && 1 + 2 * 3 - 4 / 2 % 3 == 5 && -(1) == -1"
    ));
}

#[test]
fn ip_and_cidr() {
    assert!(holds("cidr('10.0.0.0/8').containsIP(source.address)"));
    assert!(holds("cidr('10.0.0.0/8').containsIP(ip(source.address))"));
    assert!(holds("!cidr('192.168.0.0/16').containsIP(source.address)"));
    assert!(holds("cidr('10.0.0.0/8').containsIP('::ffff:10.0.0.1')"));
    assert!(holds(
        "cidr('10.0.0.0/8').containsCIDR('10.1.0.0/16') && cidr('10.0.0.0/8').containsCIDR(cidr('10.0.0.0/9'))"
    ));
    assert!(holds(
        "cidr('10.1.2.3/8').ip() == ip('10.1.2.3') && string(cidr('10.1.2.3/8').masked()) == '10.0.0.0/8'"
    ));
    assert!(holds(
        "cidr('2001:db8::/32').prefixLength() == 32 && string(ip('2001:db8::1')) == '2001:db8::1'"
    ));
    assert!(holds(
        "ip('10.0.0.1').family() == 4 && ip('::1').family() == 6 && ip('::1').isLoopback()"
    ));
    assert!(holds(
        "ip('0.0.0.0').isUnspecified() && ip('224.0.0.1').isLinkLocalMulticast() && ip('ff02::1').isLinkLocalMulticast()"
    ));
    assert!(holds(
        "ip('169.254.1.1').isLinkLocalUnicast() && ip('fe80::1').isLinkLocalUnicast()"
    ));
    assert!(holds(
        "ip('10.0.0.1').isGlobalUnicast() && !ip('127.0.0.1').isGlobalUnicast() && !ip('fe80::1').isGlobalUnicast()"
    ));
    assert!(holds(
        "isIP('1.2.3.4') && !isIP('1.2.3') && isCIDR('1.2.3.0/24') && !isCIDR('1.2.3.0/33')"
    ));
    assert!(holds(
        "ip('10.0.0.1') == ip('10.0.0.1') && cidr('10.0.0.0/8') != cidr('10.0.0.0/9') && type(ip('::1')) == net.IP"
    ));
    // Found by fuzzing (cel_eval): a range given as text with an IPv4-mapped address and a
    // prefix under 96 spans IPv6 addresses, so it is in no IPv4 range.
    assert!(holds(
        "!cidr('10.0.0.0/8').containsCIDR('::ffff:10.0.0.0/95') \
         && !cidr('0.0.0.0/0').containsCIDR(cidr('::ffff:0:0/1')) \
         && cidr('::/0').containsCIDR('::ffff:0:0/95') \
         && cidr('::ffff:0:0/95').containsCIDR('::ffff:0:0/95') \
         && cidr('10.0.0.0/8').containsCIDR('::ffff:10.0.0.0/104')"
    ));
    assert!(eval("ip('nope')").unwrap_err().contains("parse error"));
    assert!(
        eval("cidr('10.0.0.0/8').containsIP('nope')")
            .unwrap_err()
            .contains("parse error")
    );
    assert!(
        eval("cidr('10.0.0.0')")
            .unwrap_err()
            .contains("parse error")
    );
}

#[test]
fn every_declared_function_resolves() {
    // One call per name of env::GLOBAL_FUNCTIONS / MEMBER_FUNCTIONS: none may be undeclared.
    let samples = [
        "size('a')",
        "int(1)",
        "uint(1u)",
        "double(1.0)",
        "string('a')",
        "bytes('a')",
        "bool(true)",
        "type(1)",
        "dyn(1)",
        "matches('a', 'a')",
        "optional.of(1)",
        "optional.none()",
        "optional.ofNonZeroValue(1)",
        "strings.quote('a')",
        "ip('1.2.3.4')",
        "isIP('a')",
        "cidr('1.0.0.0/8')",
        "isCIDR('a')",
        "'a'.size()",
        "'a'.contains('a')",
        "'a'.startsWith('a')",
        "'a'.endsWith('a')",
        "'a'.matches('a')",
        "'a'.charAt(0)",
        "'a'.indexOf('a')",
        "'a'.lastIndexOf('a')",
        "['a'].join()",
        "'a'.lowerAscii()",
        "'a'.upperAscii()",
        "'a'.trim()",
        "'a'.replace('a', 'b')",
        "'a'.split('a')",
        "'a'.substring(0)",
        "'a'.format([])",
        "'a'.reverse()",
        "optional.of(1).value()",
        "optional.of(1).hasValue()",
        "optional.none().or(optional.of(1))",
        "optional.none().orValue(1)",
        "ip('::1').family()",
        "ip('::1').isUnspecified()",
        "ip('::1').isLoopback()",
        "ip('::1').isLinkLocalMulticast()",
        "ip('::1').isLinkLocalUnicast()",
        "ip('::1').isGlobalUnicast()",
        "cidr('::/0').containsIP('::1')",
        "cidr('::/0').containsCIDR('::/1')",
        "cidr('::/0').ip()",
        "cidr('::/0').masked()",
        "cidr('::/0').prefixLength()",
    ];
    let mut named: Vec<&str> = env::GLOBAL_FUNCTIONS
        .iter()
        .chain(env::MEMBER_FUNCTIONS)
        .copied()
        .collect();
    for sample in samples {
        let program = Program::compile(sample).unwrap_or_else(|e| panic!("{sample}: {e}"));
        let b = bindings();
        program
            .evaluate(&context(&b))
            .unwrap_or_else(|e| panic!("{sample}: {e}"));
        named.retain(|name| !sample.contains(&format!("{name}(")));
    }
    assert!(named.is_empty(), "no sample calls {named:?}");
}

#[test]
fn non_bool_rules_are_errors() {
    let b = bindings();
    let ctx = context(&b);
    let p = Program::compile("request.path").unwrap();
    let e = p.evaluate_bool(&ctx).unwrap_err();
    assert!(e.0.contains("expected a bool"), "{e}");
}

// --- rule sets -------------------------------------------------------------------------------

fn decide(rules: &[(RuleKind, &str)]) -> Decision {
    let set = RuleSet::compile(rules.iter().copied()).unwrap();
    let b = bindings();
    set.evaluate(&context(&b))
}

use RuleKind::{Allow, Deny, Require};

const TRUE: &str = "request.method == 'GET'";
const FALSE: &str = "request.method == 'POST'";
/// Fails: a header the request does not have.
const ERROR: &str = "request.headers['cookie'] == 'x'";

fn allowed(rule: Option<usize>) -> Decision {
    Decision {
        allowed: true,
        rule,
    }
}

fn denied(rule: Option<usize>) -> Decision {
    Decision {
        allowed: false,
        rule,
    }
}

#[test]
fn no_rules_allow() {
    assert_eq!(decide(&[]), allowed(None));
}

#[test]
fn allow_rules() {
    assert_eq!(decide(&[(Allow, FALSE), (Allow, TRUE)]), allowed(Some(1)));
    assert_eq!(decide(&[(Allow, FALSE)]), denied(None));
    // an error in an allow rule is false
    assert_eq!(decide(&[(Allow, ERROR)]), denied(None));
    assert_eq!(decide(&[(Allow, ERROR), (Allow, TRUE)]), allowed(Some(1)));
}

#[test]
fn deny_rules() {
    assert_eq!(decide(&[(Deny, TRUE)]), denied(Some(0)));
    assert_eq!(decide(&[(Deny, FALSE)]), allowed(None));
    // deny wins over an earlier allow
    assert_eq!(decide(&[(Allow, TRUE), (Deny, TRUE)]), denied(Some(1)));
    // an erroring deny rule does not match: the request goes through (unsafe by design)
    assert_eq!(decide(&[(Deny, ERROR)]), allowed(None));
    assert_eq!(decide(&[(Deny, ERROR), (Allow, TRUE)]), allowed(Some(1)));
}

#[test]
fn require_rules() {
    assert_eq!(decide(&[(Require, TRUE)]), allowed(None));
    assert_eq!(decide(&[(Require, FALSE)]), denied(Some(0)));
    // an erroring require rule fails
    assert_eq!(decide(&[(Require, ERROR)]), denied(Some(0)));
    // a non-bool require rule fails too
    assert_eq!(decide(&[(Require, "request.path")]), denied(Some(0)));
    assert_eq!(decide(&[(Allow, TRUE), (Require, TRUE)]), allowed(Some(0)));
    assert_eq!(decide(&[(Allow, TRUE), (Require, FALSE)]), denied(Some(1)));
    // with allow rules present, requirements alone do not allow
    assert_eq!(decide(&[(Require, TRUE), (Allow, FALSE)]), denied(None));
}

#[test]
fn deny_is_tried_before_require_before_allow() {
    let rules = [(Allow, TRUE), (Require, FALSE), (Deny, TRUE)];
    assert_eq!(decide(&rules), denied(Some(2)));
    let rules = [(Allow, TRUE), (Require, FALSE), (Deny, FALSE)];
    assert_eq!(decide(&rules), denied(Some(1)));
    let rules = [
        (Deny, FALSE),
        (Require, TRUE),
        (Allow, FALSE),
        (Allow, TRUE),
    ];
    assert_eq!(decide(&rules), allowed(Some(3)));
}

#[test]
fn rule_set_references_and_errors() {
    let set = RuleSet::compile([
        (Allow, "jwt.sub == 'a'"),
        (Deny, "request.headers['x'] == 'y'"),
    ])
    .unwrap();
    let r = set.references();
    assert_eq!(
        r.variables.iter().collect::<Vec<_>>(),
        [Var::Request, Var::Jwt]
    );
    assert!(r.needs_headers());
    assert_eq!(set.rules().len(), 2);
    assert_eq!(set.rules()[1].kind, Deny);
    let e = RuleSet::compile([(Allow, TRUE), (Deny, "nope == 1")]).unwrap_err();
    assert_eq!(e.index, 1);
    assert_eq!(e.error.message, "undeclared reference to 'nope'");
}

#[test]
fn explain_reports_each_rule() {
    let set = RuleSet::compile([(Allow, TRUE), (Deny, ERROR), (Require, FALSE)]).unwrap();
    let b = bindings();
    let results = set.explain(&context(&b));
    assert_eq!(results[0], Ok(true));
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .0
            .contains("No such key: cookie"),
        "{results:?}"
    );
    assert_eq!(results[2], Ok(false));
}

#[test]
fn records_behave_as_maps() {
    assert!(holds(
        "type(request.headers) == map && type(source) == map && type(request) == map"
    ));
    assert!(holds("source == {'address': '10.1.2.3', 'port': 40000}"));
    assert!(holds(
        "source != {'address': '10.1.2.3'} && source != {'address': '10.1.2.3', 'port': 1}"
    ));
    assert!(holds("source != ['address', 'port'] && source == source"));
    assert!(holds(
        "!(1 in source) && source.all(k, k in ['address', 'port'])"
    ));
    assert!(holds(
        "request.headers.filter(k, k.startsWith('x-')).size() == 3"
    ));
    assert!(holds(
        "[source][0].port == 40000 && {'s': source}.s.address == '10.1.2.3'"
    ));
    assert!(holds("source.map(k, k).size() == 2"));
    assert!(
        eval("source[1]")
            .unwrap_err()
            .contains("no matching overload")
    );
}

#[test]
fn repeated_headers_are_joined_in_order() {
    let headers: &[(&[u8], &[u8])] = &[
        (b"a", b"1"),
        (b"b", b"2"),
        (b"a", b"3"),
        (b"A", b"4"),
        (b"c", b"5"),
    ];
    let record = headers_value(headers);
    assert_eq!(record.len(), 3);
    match record.find("a") {
        Some(Field::Str(s)) => assert_eq!(s.inner(), "1,3,4"),
        other => panic!("{other:?}"),
    }
}

fn named_headers(source: &str) -> Option<Vec<String>> {
    match &Program::compile(source).unwrap().references().headers {
        HeaderNames::Named(names) => Some(names.clone()),
        HeaderNames::All => None,
    }
}

#[test]
fn headers_named_by_literal_keys_are_the_only_ones_bound() {
    let names = named_headers(
        "request.headers['x-user'] == 'a' && has(request.headers.cookie) && 'b' in request.headers \
         && request.headers.host == '' && request.headers['x-user'] != 'b'",
    );
    assert_eq!(names.unwrap(), ["b", "cookie", "host", "x-user"]);
    let names = named_headers("request['headers']['a'] == '' && request.headers[?'c'].hasValue()");
    assert_eq!(names.unwrap(), ["a", "c"]);
    assert_eq!(
        named_headers("request.path == ''").unwrap(),
        Vec::<String>::new()
    );
    for all in [
        "size(request.headers) > 0",
        "request.headers[jwt.sub] == ''",
        "request.headers.exists(h, h == 'a')",
        "request.size() > 0",
        "request[?'headers'].hasValue()",
        "request.headers == {}",
    ] {
        assert_eq!(named_headers(all), None, "{all}");
    }
    let p = Program::compile("request.headers.host == ''").unwrap();
    assert!(p.references().needs_headers());
    let wanted = HeaderNames::Named(vec!["x-user".into()]);
    assert!(wanted.wants(b"x-user") && wanted.wants(b"X-User"));
    assert!(!wanted.wants(b"x-use") && !wanted.wants(b"x-users"));
    assert!(HeaderNames::All.wants(b"anything"));
    // Found by fuzzing (cel_compile): a name that is not UTF-8 is bound with replacement
    // characters, and `wants` must compare it that way too, or binding only the named headers
    // would hide it from an expression that finds it among all of them.
    let p = Program::compile(r#"request.headers["x-\ufffdname"] == "v""#).unwrap();
    assert!(p.references().headers.wants(b"X-\xffName"));
    let headers: &[(&[u8], &[u8])] = &[(b"X-\xffName", b"v"), (b"other", b"o")];
    let wanted: Vec<_> = headers
        .iter()
        .copied()
        .filter(|(name, _)| p.references().headers.wants(name))
        .collect();
    let mut bindings = Bindings::default();
    let mut head = head();
    head.headers = &wanted;
    bindings.set(
        Var::Request,
        Box::new(request_value(&head, p.references().request)),
    );
    assert_eq!(p.evaluate_bool(&context(&bindings)), Ok(true));
    let set = RuleSet::compile([
        (Allow, "request.headers.a == ''"),
        (Deny, "request.headers.b == ''"),
    ])
    .unwrap();
    assert_eq!(
        set.references().headers,
        HeaderNames::Named(vec!["a".into(), "b".into()])
    );
    let set = RuleSet::compile([
        (Allow, "request.headers.a == ''"),
        (Deny, "size(request.headers) == 0"),
    ])
    .unwrap();
    assert_eq!(set.references().headers, HeaderNames::All);
}
