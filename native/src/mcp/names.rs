//! Federated names: how a target's tools, prompts and resources are exposed, and how an
//! exposed name is traced back to its target.
//!
//! As in agentgateway, a tool or prompt `add` of target `math` is exposed as `math_add`
//! (`<target><delimiter><name>`), and a resource `memo://x` of target `svc` as `svc+memo://x`.
//! Target names may contain the delimiter, so resolution takes the longest target name that
//! matches rather than splitting at the first delimiter (`a_b` + `c` and `a` + `b_c` would
//! both read `a_b_c`; with targets `a` and `a_b` configured, `a_b` wins).

/// Whether `uri` starts with an RFC 3986 scheme: a letter, then letters, digits, `+`, `-` or
/// `.`, then `:`. Only such URIs are namespaced; relative or opaque names pass unchanged.
pub fn has_scheme(uri: &str) -> bool {
    let bytes = uri.as_bytes();
    if !bytes.first().is_some_and(u8::is_ascii_alphabetic) {
        return false;
    }
    for &b in &bytes[1..] {
        match b {
            b':' => return true,
            b'+' | b'-' | b'.' => {}
            _ if b.is_ascii_alphanumeric() => {}
            _ => return false,
        }
    }
    false
}

/// The target whose `<target><delimiter>` starts `name` (the longest such target; the first
/// of equal names) and the name with that prefix removed.
pub fn split_prefixed_name<'n, T: AsRef<str>>(
    name: &'n str,
    targets: &[T],
    delimiter: &str,
) -> Option<(usize, &'n str)> {
    longest_prefix(name, targets, |rest| rest.strip_prefix(delimiter))
}

/// The target whose `<target>+` starts `uri`, such that what follows is a URI with a scheme
/// (the only URIs [`super::merge`] namespaces; a scheme-less URI that happens to start with
/// `svc+` is its own, unprefixed name), and that URI.
pub fn split_prefixed_uri<'u, T: AsRef<str>>(
    uri: &'u str,
    targets: &[T],
) -> Option<(usize, &'u str)> {
    longest_prefix(uri, targets, |rest| {
        rest.strip_prefix('+')
            .filter(|original| has_scheme(original))
    })
}

fn longest_prefix<'s, T: AsRef<str>>(
    text: &'s str,
    targets: &[T],
    after_target: impl Fn(&'s str) -> Option<&'s str>,
) -> Option<(usize, &'s str)> {
    let mut best: Option<(usize, &'s str)> = None;
    for (index, target) in targets.iter().enumerate() {
        let target = target.as_ref();
        let Some(original) = text.strip_prefix(target).and_then(&after_target) else {
            continue;
        };
        let longer = best.is_none_or(|(b, _)| target.len() > targets[b].as_ref().len());
        if longer {
            best = Some((index, original));
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        for yes in [
            "file:///a",
            "memo:x",
            "a:",
            "svc+memo://x",
            "ui://app",
            "x-y.z+1:rest",
            "C:\\dir",
        ] {
            assert!(has_scheme(yes), "{yes}");
        }
        for no in [
            "", ":x", "1a:x", "+a:x", "noscheme", "a b:x", "a/b:c", "é:x", "a_b:c",
        ] {
            assert!(!has_scheme(no), "{no}");
        }
    }

    #[test]
    fn names() {
        let targets = ["math", "a", "a_b", "web"];
        assert_eq!(
            split_prefixed_name("math_add", &targets, "_"),
            Some((0, "add"))
        );
        assert_eq!(
            split_prefixed_name("math_add_two", &targets, "_"),
            Some((0, "add_two"))
        );
        // Longest target wins.
        assert_eq!(split_prefixed_name("a_b_c", &targets, "_"), Some((2, "c")));
        assert_eq!(split_prefixed_name("a_c", &targets, "_"), Some((1, "c")));
        assert_eq!(split_prefixed_name("a_b", &targets, "_"), Some((1, "b")));
        assert_eq!(split_prefixed_name("math_", &targets, "_"), Some((0, "")));
        assert_eq!(split_prefixed_name("math", &targets, "_"), None);
        assert_eq!(split_prefixed_name("mathadd", &targets, "_"), None);
        assert_eq!(split_prefixed_name("other_x", &targets, "_"), None);
        assert_eq!(split_prefixed_name("", &targets, "_"), None);
        assert_eq!(
            split_prefixed_name("math__x", &targets, "__"),
            Some((0, "x"))
        );
        assert_eq!(split_prefixed_name("math_x", &targets, "__"), None);
        assert_eq!(split_prefixed_name::<&str>("math_x", &[], "_"), None);
        // Equal names: the first.
        assert_eq!(split_prefixed_name("t_x", &["t", "t"], "_"), Some((0, "x")));
        // Non-ASCII names and delimiters.
        assert_eq!(
            split_prefixed_name("café·outil", &["café"], "·"),
            Some((0, "outil"))
        );
        let owned = vec![String::from("math")];
        assert_eq!(split_prefixed_name("math_x", &owned, "_"), Some((0, "x")));
    }

    #[test]
    fn uris() {
        let targets = ["svc", "a", "a+b"];
        assert_eq!(
            split_prefixed_uri("svc+memo://x", &targets),
            Some((0, "memo://x"))
        );
        assert_eq!(
            split_prefixed_uri("a+b+file:///x", &targets),
            Some((2, "file:///x"))
        );
        // `a+b` is a prefix but leaves `c` without a scheme; `a` leaves `b+c:x`, a URI.
        assert_eq!(split_prefixed_uri("a+b+c", &targets), None);
        assert_eq!(split_prefixed_uri("a+b:x", &targets), Some((1, "b:x")));
        assert_eq!(split_prefixed_uri("svc+plain", &targets), None);
        assert_eq!(split_prefixed_uri("memo://x", &targets), None);
        assert_eq!(split_prefixed_uri("svc+", &targets), None);
        assert_eq!(split_prefixed_uri("svcmemo:x", &targets), None);
    }
}
