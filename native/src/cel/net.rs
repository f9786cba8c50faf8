//! The Kubernetes IP and CIDR libraries (`ip()`, `cidr()`, `isIP()`, `isCIDR()` and their
//! members), as agentgateway exposes them: `cidr("10.0.0.0/8").containsIP(source.address)`.
//!
//! An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is taken as the IPv4 address it carries,
//! so a dual-stack listener's peer addresses still match IPv4 ranges. Zones (`fe80::1%eth0`)
//! are rejected.

use std::any::Any;
use std::net::IpAddr;

use cel::common::types::{CelBool, CelInt, CelString, STRING_TYPE, Type};
use cel::common::value::{CowVal, StaticVal, Val};
use cel::{DeclarationError, Env, ExecutionError};

/// `net.IP`, the type `ip()` returns.
pub static IP_TYPE: Type = Type::new_unspecified_type("net.IP");
/// `net.CIDR`, the type `cidr()` returns.
pub static CIDR_TYPE: Type = Type::new_unspecified_type("net.CIDR");

/// An IP address value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ip(pub IpAddr);

/// A CIDR range value: an address (host bits kept, as written) and a prefix length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// Parses an address; IPv4-mapped IPv6 addresses become IPv4.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>().ok().map(|addr| addr.to_canonical())
}

/// Parses `addr/prefix`; the prefix must fit the address family.
pub fn parse_cidr(text: &str) -> Option<Cidr> {
    let (addr, prefix) = text.split_once('/')?;
    // Digits only: `u8::from_str` would also take a leading `+`.
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let prefix: u8 = prefix.parse().ok()?;
    let parsed: IpAddr = addr.parse().ok()?;
    // A mapped address with a prefix over the mapped part becomes the IPv4 range it covers.
    let (addr, prefix) = match parsed {
        IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() && prefix >= 96 => {
            (IpAddr::V4(v6.to_ipv4_mapped()?), prefix - 96)
        }
        other => (other, prefix),
    };
    (prefix <= max_prefix(addr)).then_some(Cidr { addr, prefix })
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn mask(addr: IpAddr, prefix: u8) -> u128 {
    let width = u32::from(max_prefix(addr));
    let host_bits = width - u32::from(prefix);
    let all = if width == 32 {
        u128::from(u32::MAX)
    } else {
        u128::MAX
    };
    if host_bits >= 128 {
        0
    } else {
        all & !((1u128 << host_bits) - 1)
    }
}

impl Cidr {
    pub fn contains_ip(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.addr.is_ipv4() && {
            let m = mask(self.addr, self.prefix);
            bits(addr) & m == bits(self.addr) & m
        }
    }

    /// Whether every address of `other` is in this range. Ranges are compared in the family
    /// they were parsed into: an IPv6 range written with an IPv4-mapped address and a prefix
    /// under 96 (`::ffff:10.0.0.0/95`) spans IPv6 addresses too, so it is in no IPv4 range, and
    /// it is in the IPv6 ranges that cover it.
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.addr.is_ipv4() == self.addr.is_ipv4() && other.prefix >= self.prefix && {
            let m = mask(self.addr, self.prefix);
            bits(other.addr) & m == bits(self.addr) & m
        }
    }

    /// The range with its host bits cleared.
    pub fn masked(&self) -> Cidr {
        let m = mask(self.addr, self.prefix);
        let addr = match self.addr {
            IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) & m as u32).into()),
            IpAddr::V6(v6) => IpAddr::V6((u128::from(v6) & m).into()),
        };
        Cidr {
            addr,
            prefix: self.prefix,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Val for Ip {
    fn get_type(&self) -> &Type {
        &IP_TYPE
    }
    fn cel_type() -> &'static Type {
        &IP_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Ip>().is_some_and(|o| o == self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Ip {}

impl Val for Cidr {
    fn get_type(&self) -> &Type {
        &CIDR_TYPE
    }
    fn cel_type() -> &'static Type {
        &CIDR_TYPE
    }
    fn equals(&self, other: &dyn Val) -> bool {
        other.downcast_ref::<Cidr>().is_some_and(|o| o == self)
    }
    fn clone_as_boxed<'v>(&self) -> Box<dyn Val + 'v> {
        Box::new(*self)
    }
    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }
}
impl StaticVal for Cidr {}

type Args<'b, 'v> = Vec<CowVal<'b, 'v>>;
type Out<'b, 'v> = Result<CowVal<'b, 'v>, ExecutionError>;

/// Argument `i`, already checked to be a `T` by overload resolution.
fn arg<'a, 'b, 'v, T: Val + 'static>(
    args: &'a Args<'b, 'v>,
    i: usize,
    function: &str,
) -> Result<&'a T, ExecutionError> {
    args.get(i)
        .and_then(|v| v.as_any())
        .and_then(|v| v.downcast_ref::<T>())
        .ok_or_else(|| ExecutionError::function_error(function, "unexpected argument type"))
}

fn text<'a>(args: &'a Args<'_, '_>, i: usize, function: &str) -> Result<&'a str, ExecutionError> {
    args.get(i)
        .and_then(|v| v.downcast_ref::<CelString>())
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::function_error(function, "expected a string"))
}

fn boolean<'b, 'v>(value: bool) -> Out<'b, 'v> {
    Ok(CowVal::owned(CelBool::from(value)))
}

fn ip_of_string<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let s = text(&args, 0, "ip")?;
    let addr = parse_ip(s).ok_or_else(|| {
        ExecutionError::function_error("ip", format!("IP address '{s}' parse error"))
    })?;
    Ok(CowVal::owned(Ip(addr)))
}

fn is_ip<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(parse_ip(text(&args, 0, "isIP")?).is_some())
}

fn cidr_of_string<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let s = text(&args, 0, "cidr")?;
    let cidr = parse_cidr(s).ok_or_else(|| {
        ExecutionError::function_error("cidr", format!("network address '{s}' parse error"))
    })?;
    Ok(CowVal::owned(cidr))
}

fn is_cidr<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(parse_cidr(text(&args, 0, "isCIDR")?).is_some())
}

fn ip_to_string<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let ip = arg::<Ip>(&args, 0, "string")?;
    Ok(CowVal::owned(CelString::from(ip.0.to_string())))
}

fn cidr_to_string<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let cidr = arg::<Cidr>(&args, 0, "string")?;
    Ok(CowVal::owned(CelString::from(cidr.to_string())))
}

fn ip_family<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let ip = arg::<Ip>(&args, 0, "family")?;
    Ok(CowVal::owned(CelInt::from(if ip.0.is_ipv4() {
        4
    } else {
        6
    })))
}

fn ip_is_unspecified<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(arg::<Ip>(&args, 0, "isUnspecified")?.0.is_unspecified())
}

fn ip_is_loopback<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(arg::<Ip>(&args, 0, "isLoopback")?.0.is_loopback())
}

fn ip_is_link_local_multicast<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(match arg::<Ip>(&args, 0, "isLinkLocalMulticast")?.0 {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    })
}

fn ip_is_link_local_unicast<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(match arg::<Ip>(&args, 0, "isLinkLocalUnicast")?.0 {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    })
}

/// Go's `net.IP.IsGlobalUnicast`: not unspecified, loopback, link-local, multicast or
/// (IPv4) broadcast. Private ranges count as global unicast, as in Go.
fn ip_is_global_unicast<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    boolean(match arg::<Ip>(&args, 0, "isGlobalUnicast")?.0 {
        IpAddr::V4(v4) => {
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || v6.segments()[0] & 0xffc0 == 0xfe80)
        }
    })
}

fn cidr_contains_ip<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let cidr = arg::<Cidr>(&args, 0, "containsIP")?;
    let addr = match args.get(1).and_then(|v| v.downcast_ref::<CelString>()) {
        Some(s) => parse_ip(s.inner()).ok_or_else(|| {
            ExecutionError::function_error(
                "containsIP",
                format!("IP address '{}' parse error", s.inner()),
            )
        })?,
        None => arg::<Ip>(&args, 1, "containsIP")?.0,
    };
    boolean(cidr.contains_ip(addr))
}

fn cidr_contains_cidr<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    let cidr = arg::<Cidr>(&args, 0, "containsCIDR")?;
    let other = match args.get(1).and_then(|v| v.downcast_ref::<CelString>()) {
        Some(s) => parse_cidr(s.inner()).ok_or_else(|| {
            ExecutionError::function_error(
                "containsCIDR",
                format!("network address '{}' parse error", s.inner()),
            )
        })?,
        None => *arg::<Cidr>(&args, 1, "containsCIDR")?,
    };
    boolean(cidr.contains_cidr(&other))
}

fn cidr_ip<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    Ok(CowVal::owned(Ip(arg::<Cidr>(&args, 0, "ip")?.addr)))
}

fn cidr_masked<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    Ok(CowVal::owned(arg::<Cidr>(&args, 0, "masked")?.masked()))
}

fn cidr_prefix_length<'b, 'v>(args: Args<'b, 'v>) -> Out<'b, 'v> {
    Ok(CowVal::owned(CelInt::from(i64::from(
        arg::<Cidr>(&args, 0, "prefixLength")?.prefix,
    ))))
}

/// Registers the library's types and overloads.
pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_type(IP_TYPE.to_owned())?;
    env.add_type(CIDR_TYPE.to_owned())?;
    let ip = || IP_TYPE.to_owned();
    let cidr = || CIDR_TYPE.to_owned();
    env.add_overload("ip", "string_to_ip", vec![STRING_TYPE], ip_of_string)?;
    env.add_overload("isIP", "is_ip_string", vec![STRING_TYPE], is_ip)?;
    env.add_overload("cidr", "string_to_cidr", vec![STRING_TYPE], cidr_of_string)?;
    env.add_overload("isCIDR", "is_cidr_string", vec![STRING_TYPE], is_cidr)?;
    env.add_overload("string", "ip_to_string", vec![ip()], ip_to_string)?;
    env.add_overload("string", "cidr_to_string", vec![cidr()], cidr_to_string)?;
    env.add_member_overload("family", "ip_family", ip(), vec![], ip_family)?;
    env.add_member_overload(
        "isUnspecified",
        "ip_is_unspecified",
        ip(),
        vec![],
        ip_is_unspecified,
    )?;
    env.add_member_overload("isLoopback", "ip_is_loopback", ip(), vec![], ip_is_loopback)?;
    env.add_member_overload(
        "isLinkLocalMulticast",
        "ip_is_link_local_multicast",
        ip(),
        vec![],
        ip_is_link_local_multicast,
    )?;
    env.add_member_overload(
        "isLinkLocalUnicast",
        "ip_is_link_local_unicast",
        ip(),
        vec![],
        ip_is_link_local_unicast,
    )?;
    env.add_member_overload(
        "isGlobalUnicast",
        "ip_is_global_unicast",
        ip(),
        vec![],
        ip_is_global_unicast,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_string",
        cidr(),
        vec![STRING_TYPE],
        cidr_contains_ip,
    )?;
    env.add_member_overload(
        "containsIP",
        "cidr_contains_ip_ip",
        cidr(),
        vec![ip()],
        cidr_contains_ip,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_string",
        cidr(),
        vec![STRING_TYPE],
        cidr_contains_cidr,
    )?;
    env.add_member_overload(
        "containsCIDR",
        "cidr_contains_cidr_cidr",
        cidr(),
        vec![cidr()],
        cidr_contains_cidr,
    )?;
    env.add_member_overload("ip", "cidr_ip", cidr(), vec![], cidr_ip)?;
    env.add_member_overload("masked", "cidr_masked", cidr(), vec![], cidr_masked)?;
    env.add_member_overload(
        "prefixLength",
        "cidr_prefix_length",
        cidr(),
        vec![],
        cidr_prefix_length,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_canonically() {
        assert_eq!(parse_ip("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(
            parse_ip("::ffff:10.1.2.3"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(
            parse_ip("2001:db8::1"),
            Some("2001:db8::1".parse().unwrap())
        );
        for bad in [
            "",
            "10.1.2",
            "10.1.2.256",
            "fe80::1%eth0",
            " 10.1.2.3",
            "10.1.2.3/8",
        ] {
            assert_eq!(parse_ip(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_ranges() {
        let c = parse_cidr("10.0.0.0/8").unwrap();
        assert_eq!((c.addr, c.prefix), ("10.0.0.0".parse().unwrap(), 8));
        assert_eq!(
            parse_cidr("::ffff:10.0.0.0/104").unwrap(),
            parse_cidr("10.0.0.0/8").unwrap()
        );
        assert!(parse_cidr("::/0").is_some());
        for bad in [
            "10.0.0.0",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/+8",
            "10.0.0.0/",
            "/8",
            "x/8",
            "10.0.0.0/0008",
        ] {
            assert!(parse_cidr(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn containment() {
        let c = parse_cidr("10.0.0.0/8").unwrap();
        assert!(c.contains_ip("10.255.0.1".parse().unwrap()));
        assert!(c.contains_ip("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!c.contains_ip("11.0.0.1".parse().unwrap()));
        assert!(!c.contains_ip("::a00:1".parse().unwrap()));
        let all4 = parse_cidr("0.0.0.0/0").unwrap();
        assert!(all4.contains_ip("255.255.255.255".parse().unwrap()));
        assert!(!all4.contains_ip("::1".parse().unwrap()));
        let host = parse_cidr("192.168.1.7/32").unwrap();
        assert!(host.contains_ip("192.168.1.7".parse().unwrap()));
        assert!(!host.contains_ip("192.168.1.8".parse().unwrap()));
        let v6 = parse_cidr("2001:db8::/32").unwrap();
        assert!(v6.contains_ip("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains_ip("2001:db9::1".parse().unwrap()));
        assert!(
            parse_cidr("::/0")
                .unwrap()
                .contains_ip("::1".parse().unwrap())
        );
        assert!(c.contains_cidr(&parse_cidr("10.1.0.0/16").unwrap()));
        assert!(!parse_cidr("10.1.0.0/16").unwrap().contains_cidr(&c));
        // Found by fuzzing (cel_eval): the other range's address was taken as IPv4 when it is
        // IPv4-mapped, even with a prefix under 96, and its IPv6 prefix length compared with an
        // IPv4 one, so a range spanning half of IPv6 was "in" 10.0.0.0/8, and such a range was
        // not in itself nor in ::/0.
        let straddling = parse_cidr("::ffff:10.0.0.0/95").unwrap();
        assert!(!c.contains_cidr(&straddling));
        assert!(
            !parse_cidr("0.0.0.0/0")
                .unwrap()
                .contains_cidr(&parse_cidr("::ffff:0:0/1").unwrap())
        );
        assert!(straddling.contains_cidr(&straddling));
        assert!(parse_cidr("::/0").unwrap().contains_cidr(&straddling));
        assert!(!straddling.contains_cidr(&c));
        assert!(!parse_cidr("::/0").unwrap().contains_cidr(&c));
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().masked(), c);
        assert_eq!(
            parse_cidr("2001:db8::1/32").unwrap().masked().to_string(),
            "2001:db8::/32"
        );
    }
}
