//! CEL on attacker data (the request side): a fixed set of rules, of the kinds a config
//! holds, evaluated against a request head, headers, peer address and JWT claims taken from
//! the input. No evaluation may crash; binding only what the rules reference gives the same
//! outcomes and decision as binding everything; `request.headers` holds each header under its
//! lower-cased name with repeated values joined by ",".
//!
//! Input: `\xFF`-separated fields: method, scheme, host, path, path and query, peer address,
//! then header names and values alternating; a last field starting with `{` is the claims.

#![no_main]

use std::sync::LazyLock;

use std::net::IpAddr;

use agentgateway_native::cel::net::{Cidr, parse_cidr, parse_ip};
use agentgateway_native::cel::{Field, Program, RuleKind, RuleSet, Var, context, headers_value};
use agentgateway_native_fuzz::cel_fixture::{Fixture, outcome, same};
use agentgateway_native_fuzz::fields;
use cel::Value;
use libfuzzer_sys::fuzz_target;

const RULES: &[(RuleKind, &str)] = &[
    (RuleKind::Allow, r#"request.headers["x-user"] == "alice""#),
    (RuleKind::Allow, r#""admin" in jwt.groups"#),
    (RuleKind::Require, r#"jwt.sub == request.headers["x-user"]"#),
    (
        RuleKind::Deny,
        r#"request.path.startsWith("/admin") && !("admin" in jwt.groups)"#,
    ),
    (
        RuleKind::Require,
        r#"request.headers["authorization"].split(" ")[1].size() > 10"#,
    ),
    (
        RuleKind::Allow,
        r#"cidr("10.0.0.0/8").containsIP(source.address)"#,
    ),
    (
        RuleKind::Deny,
        r#"isIP(request.headers["x-forwarded-for"].split(",")[0].trim()) && ip(request.headers["x-forwarded-for"].split(",")[0].trim()).isLoopback()"#,
    ),
    (
        RuleKind::Allow,
        r#"request.headers["x-forwarded-for"].split(",").exists(a, isCIDR(a.trim() + "/24") && cidr(a.trim() + "/24").masked().containsIP(ip("192.0.2.7")))"#,
    ),
    (
        RuleKind::Allow,
        r#"ip(source.address).family() == 6 || ip(source.address).isGlobalUnicast() || ip(source.address).isLinkLocalUnicast()"#,
    ),
    (
        RuleKind::Allow,
        r#"request.path.matches("^/api/v[0-9]+/") && request.pathAndQuery.contains("?")"#,
    ),
    (
        RuleKind::Deny,
        r#"request.headers["x-a"].matches(request.headers["x-b"])"#,
    ),
    (
        RuleKind::Allow,
        r#"request.headers["x-a"].substring(1, 3) == request.headers["x-b"].charAt(2)"#,
    ),
    (
        RuleKind::Allow,
        r#"request.headers["x-a"].indexOf(request.headers["x-b"]) > request.headers["x-a"].lastIndexOf("é", 2)"#,
    ),
    (
        RuleKind::Allow,
        r#"request.headers["x-a"].replace(request.headers["x-b"], "é", 2).upperAscii().lowerAscii().reverse().size() > 3"#,
    ),
    (
        RuleKind::Allow,
        r#"strings.quote(request.path) == "%s/%d".format([request.host, size(request.headers)])"#,
    ),
    (
        RuleKind::Require,
        r#"size(request.headers) > 3 || request.uri.endsWith(request.pathAndQuery)"#,
    ),
    (
        RuleKind::Allow,
        r#"int(request.headers["x-a"]) + int(request.headers["x-b"]) > 0"#,
    ),
    (
        RuleKind::Allow,
        r#"int(request.headers["x-a"]) * int(request.headers["x-b"]) - 1 < 0"#,
    ),
    (
        RuleKind::Allow,
        r#"int(request.headers["x-a"]) / int(request.headers["x-b"]) == -int(request.headers["x-a"]) % int(request.headers["x-b"])"#,
    ),
    (
        RuleKind::Allow,
        r#"uint(request.headers["x-a"]) - uint(request.headers["x-b"]) + 1u > 2u * uint(request.headers["x-b"])"#,
    ),
    (
        RuleKind::Allow,
        r#"double(request.headers["x-a"]) / double(request.headers["x-b"]) > 1.0"#,
    ),
    (
        RuleKind::Allow,
        r#"string(int(request.headers["x-a"])) == request.headers["x-a"] && bool(request.headers["x-b"])"#,
    ),
    (
        RuleKind::Allow,
        r#"int(double(request.headers["x-a"])) > 0 && uint(double(request.headers["x-b"])) > 0u"#,
    ),
    (
        RuleKind::Allow,
        r#"bytes(request.headers["x-raw"]).size() > 0 && string(bytes(request.path)) == request.path"#,
    ),
    (
        RuleKind::Allow,
        r#"jwt.level > 2 && jwt.nested.key == "value" && jwt.exp < 2e9"#,
    ),
    (
        RuleKind::Allow,
        r#"jwt.groups.filter(g, g.startsWith("a")).map(g, g + request.method).size() == 1"#,
    ),
    (
        RuleKind::Allow,
        r#"[jwt.sub, request.path, request.scheme].join("/") == request.headers[?"x-join"].orValue("")"#,
    ),
    (
        RuleKind::Allow,
        r#"has(request.headers.cookie) && request.headers.cookie.split(";").exists_one(c, c.trim().startsWith("session="))"#,
    ),
    (
        RuleKind::Allow,
        r#"mcp.tool.name in ["create_issue", request.headers["x-tool"]] && a2a.method == "SendMessage""#,
    ),
    (
        RuleKind::Allow,
        r#"request.headers.exists(k, k.startsWith("x-") && request.headers[k].size() > 100)"#,
    ),
    (
        RuleKind::Allow,
        r#"request.host.endsWith(".example.com") && request.method in ["GET", "POST"]"#,
    ),
    (
        RuleKind::Allow,
        r#"jwt.sub.size() + jwt.groups.size() + size(jwt) > 0 && type(jwt.level) == int"#,
    ),
];

/// Must hold for every request.
const INVARIANTS: &[&str] = &[
    // Header names are bound lower-cased.
    r#"request.headers.all(k, k == k.lowerAscii())"#,
    r#"!has(request.headers.Host) && !("X-User" in request.headers)"#,
];

static PROGRAMS: LazyLock<(Vec<Program>, RuleSet, Vec<Program>)> = LazyLock::new(|| {
    let programs = RULES
        .iter()
        .map(|(_, source)| Program::compile(source).unwrap_or_else(|e| panic!("{source}: {e}")))
        .collect();
    let set = RuleSet::compile(RULES.iter().copied()).expect("the rules compile");
    let invariants = INVARIANTS
        .iter()
        .map(|source| Program::compile(source).unwrap_or_else(|e| panic!("{source}: {e}")))
        .collect();
    (programs, set, invariants)
});

fn fixture(data: &[u8]) -> Option<Fixture> {
    let mut parts = fields(data);
    let mut fixture = Fixture::sample();
    if let Some(last) = parts.last()
        && last.first() == Some(&b'{')
    {
        let claims = serde_json::from_slice(last).ok()?;
        fixture.others.retain(|(var, _)| *var != Var::Jwt);
        fixture.others.push((Var::Jwt, claims));
        parts.pop();
    }
    if parts.len() < 6 {
        return None;
    }
    let rest = parts.split_off(6);
    fixture.method = parts[0].to_vec();
    fixture.scheme = parts[1].to_vec();
    fixture.host = parts[2].to_vec();
    fixture.path = parts[3].to_vec();
    fixture.path_and_query = parts[4].to_vec();
    fixture.address = String::from_utf8_lossy(parts[5]).into_owned();
    fixture.headers = rest
        .chunks(2)
        .map(|pair| {
            (
                pair[0].to_vec(),
                pair.get(1).copied().unwrap_or_default().to_vec(),
            )
        })
        .collect();
    Some(fixture)
}

/// `request.headers` against the rule: lower-cased names, repeats joined in order.
fn check_headers(fixture: &Fixture) {
    let pairs: Vec<(&[u8], &[u8])> = fixture
        .headers
        .iter()
        .map(|(n, v)| (n.as_slice(), v.as_slice()))
        .collect();
    let record = headers_value(&pairs);
    let mut expected: Vec<(String, String)> = Vec::new();
    for (name, value) in &pairs {
        let name = String::from_utf8_lossy(&name.to_ascii_lowercase()).into_owned();
        let value = String::from_utf8_lossy(value);
        match expected.iter_mut().find(|(n, _)| *n == name) {
            Some((_, joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            None => expected.push((name, value.into_owned())),
        }
    }
    assert_eq!(record.len(), expected.len());
    for (name, value) in &expected {
        match record.find(name) {
            Some(Field::Str(found)) => assert_eq!(found.inner(), value, "header {name:?}"),
            other => panic!("header {name:?}: {other:?}"),
        }
    }
}

/// Whether `addr` is in `net/prefix`, by comparing the leading `prefix` bits (IPv4-mapped IPv6
/// addresses are IPv4 ones; families never mix).
fn in_range(net: IpAddr, prefix: u8, addr: IpAddr) -> bool {
    let host_bits = |width: u32| width - u32::from(prefix);
    match (net, addr.to_canonical()) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let shift = host_bits(32);
            u32::from(n).checked_shr(shift).unwrap_or(0)
                == u32::from(a).checked_shr(shift).unwrap_or(0)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let shift = host_bits(128);
            u128::from(n).checked_shr(shift).unwrap_or(0)
                == u128::from(a).checked_shr(shift).unwrap_or(0)
        }
        _ => false,
    }
}

/// Whether range `inner` lies in range `outer`, both as parsed: same family, no shorter
/// prefix, and the same leading bits.
fn range_in_range(outer: &Cidr, inner: &Cidr) -> bool {
    let leading = |addr: IpAddr, width: u32| {
        let bits = match addr {
            IpAddr::V4(v4) => u128::from(u32::from(v4)),
            IpAddr::V6(v6) => u128::from(v6),
        };
        bits.checked_shr(width - u32::from(outer.prefix))
            .unwrap_or(0)
    };
    let width = if outer.addr.is_ipv4() { 32 } else { 128 };
    outer.addr.is_ipv4() == inner.addr.is_ipv4()
        && inner.prefix >= outer.prefix
        && leading(outer.addr, width) == leading(inner.addr, width)
}

/// The IP/CIDR library on request data: ranges hold what their leading bits say, masking
/// keeps the range, and the text form parses back to the same range.
fn check_net(texts: &[String]) {
    let addrs: Vec<IpAddr> = texts
        .iter()
        .filter_map(|t| parse_ip(t.trim()))
        .chain(
            ["10.1.2.3", "::1", "::ffff:10.1.2.3", "0.0.0.0", "ff02::1"]
                .map(|t| t.parse().unwrap()),
        )
        .collect();
    let cidrs: Vec<Cidr> = texts.iter().filter_map(|t| parse_cidr(t.trim())).collect();
    for cidr in &cidrs {
        assert!(cidr.prefix <= if cidr.addr.is_ipv4() { 32 } else { 128 });
        assert_eq!(parse_cidr(&cidr.to_string()), Some(*cidr));
        let masked = cidr.masked();
        assert_eq!(masked.masked(), masked);
        assert!(masked.contains_cidr(cidr) && cidr.contains_cidr(&masked));
        // A mapped address is an IPv4 one, never in an IPv6 range (`::ffff:0:0/95`).
        if cidr.addr == cidr.addr.to_canonical() {
            assert!(cidr.contains_ip(cidr.addr));
        }
        for &addr in &addrs {
            assert_eq!(
                cidr.contains_ip(addr),
                in_range(cidr.addr, cidr.prefix, addr),
                "{cidr} contains {addr}"
            );
        }
        for other in &cidrs {
            assert_eq!(
                cidr.contains_cidr(other),
                range_in_range(cidr, other),
                "{cidr} contains {other}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(fixture) = fixture(data) else {
        return;
    };
    check_headers(&fixture);
    let texts: Vec<String> = fixture
        .headers
        .iter()
        .flat_map(|(_, value)| {
            String::from_utf8_lossy(value)
                .split(',')
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .chain([fixture.address.clone()])
        .collect();
    check_net(&texts);
    let (programs, set, invariants) = &*PROGRAMS;

    let full_bindings = fixture.bind(None);
    let full = context(&full_bindings);
    for (program, (_, source)) in programs.iter().zip(RULES) {
        let everything = outcome(
            program
                .evaluate(&full)
                .map_err(|e| e.to_string())
                .and_then(|v| Value::try_from(v.as_ref()).map_err(|e| format!("{e:?}"))),
        );
        let bindings = fixture.bind(Some(program.references()));
        let ctx = context(&bindings);
        let referenced = outcome(
            program
                .evaluate(&ctx)
                .map_err(|e| e.to_string())
                .and_then(|v| Value::try_from(v.as_ref()).map_err(|e| format!("{e:?}"))),
        );
        assert!(
            same(&everything, &referenced),
            "{source}: all bound {everything:?}, referenced bound {referenced:?}"
        );
    }
    let bindings = fixture.bind(Some(set.references()));
    assert_eq!(set.evaluate(&full), set.evaluate(&context(&bindings)));
    for (program, source) in invariants.iter().zip(INVARIANTS) {
        assert_eq!(
            program.evaluate_bool(&full),
            Ok(true),
            "{source} for {:?}",
            fixture.headers
        );
    }
});
