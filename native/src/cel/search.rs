//! `indexOf` and `lastIndexOf` on strings in linear time.
//!
//! The strings extension of the `cel` crate compares the needle at every code-point window of
//! the receiver, so `a.indexOf(b)` with both values from a request costs their lengths
//! multiplied: a client that controls both made one rule take seconds of a worker's CPU. These
//! overloads give the same answers (code-point indices, the same errors for offsets out of
//! range) with the standard library's substring search, which is linear in both lengths.
//!
//! They are registered before the extension. An overload is chosen by the first declaration
//! whose parameter types accept the arguments, and two declarations of one function may not
//! have the same types, so ours take `dyn` parameters (checked here: a needle that is not a
//! string, or an offset that is not an int, is the no-such-overload error the extension's
//! declarations would give) and the extension's `(string, string)` ones are never reached.

use cel::common::types::{CelInt, CelString, DYN_TYPE, STRING_TYPE};
use cel::common::value::CowVal;
use cel::{DeclarationError, Env, ExecutionError};

pub fn register(env: &mut Env) -> Result<(), DeclarationError> {
    env.add_member_overload(
        "indexOf",
        "agw_string_index_of",
        STRING_TYPE,
        vec![DYN_TYPE],
        index_of,
    )?;
    env.add_member_overload(
        "indexOf",
        "agw_string_index_of_offset",
        STRING_TYPE,
        vec![DYN_TYPE, DYN_TYPE],
        index_of_offset,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "agw_string_last_index_of",
        STRING_TYPE,
        vec![DYN_TYPE],
        last_index_of,
    )?;
    env.add_member_overload(
        "lastIndexOf",
        "agw_string_last_index_of_offset",
        STRING_TYPE,
        vec![DYN_TYPE, DYN_TYPE],
        last_index_of_offset,
    )
}

/// The receiver, needle and (when `with_offset`) offset of a call, or the error of a call no
/// declaration of the extension accepts.
fn arguments<'a>(
    function: &str,
    args: &'a [CowVal<'_, '_>],
    with_offset: bool,
) -> Result<(&'a str, &'a str, Option<i64>), ExecutionError> {
    let no_overload = || {
        ExecutionError::no_such_member_overload(
            function,
            args.iter()
                .map(|a| a.as_ref().get_type().name().to_owned())
                .collect(),
        )
    };
    let text = |i: usize| {
        args.get(i)
            .and_then(|v| v.downcast_ref::<CelString>())
            .map(|s| s.inner())
    };
    let expected = if with_offset { 3 } else { 2 };
    if args.len() != expected {
        return Err(ExecutionError::invalid_argument_count(expected, args.len()));
    }
    let (Some(this), Some(needle)) = (text(0), text(1)) else {
        return Err(no_overload());
    };
    let offset = if with_offset {
        match args[2].downcast_ref::<CelInt>() {
            Some(offset) => Some(*offset.inner()),
            None => return Err(no_overload()),
        }
    } else {
        None
    };
    Ok((this, needle, offset))
}

fn int<'b, 'v>(value: i64) -> Result<CowVal<'b, 'v>, ExecutionError> {
    Ok(CowVal::owned(CelInt::from(value)))
}

/// The code-point index of byte `at` (a character boundary) of `text`.
fn code_points(text: &str, at: usize) -> i64 {
    text[..at].chars().count() as i64
}

/// The byte index of code point `index` of `text`, when `text` has that many.
fn byte_index(text: &str, index: usize) -> Option<usize> {
    text.char_indices().nth(index).map(|(at, _)| at)
}

fn out_of_range(function: &str, offset: i64) -> ExecutionError {
    ExecutionError::function_error(function, format!("index out of range: {offset}"))
}

/// The checks both offset forms make, in the extension's order: a negative offset is an
/// error, an empty needle is found at the offset (or the end), an offset past the last code
/// point is an error. `Ok(Err(at))` is that byte index of the receiver to search from.
fn offset_start(
    function: &str,
    this: &str,
    needle: &str,
    offset: i64,
) -> Result<Result<i64, usize>, ExecutionError> {
    if offset < 0 {
        return Err(out_of_range(function, offset));
    }
    if needle.is_empty() {
        return Ok(Ok(offset.min(this.chars().count() as i64)));
    }
    match byte_index(this, offset as usize) {
        Some(at) => Ok(Err(at)),
        None => Err(out_of_range(function, offset)),
    }
}

fn index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (this, needle, _) = arguments("indexOf", &args, false)?;
    int(this.find(needle).map_or(-1, |at| code_points(this, at)))
}

fn index_of_offset<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (this, needle, offset) = arguments("indexOf", &args, true)?;
    let offset = offset.unwrap_or_default();
    let start = match offset_start("indexOf", this, needle, offset)? {
        Ok(found) => return int(found),
        Err(start) => start,
    };
    let found = this[start..].find(needle);
    int(found.map_or(-1, |at| offset + code_points(&this[start..], at)))
}

fn last_index_of<'b, 'v>(args: Vec<CowVal<'b, 'v>>) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (this, needle, _) = arguments("lastIndexOf", &args, false)?;
    int(this.rfind(needle).map_or(-1, |at| code_points(this, at)))
}

fn last_index_of_offset<'b, 'v>(
    args: Vec<CowVal<'b, 'v>>,
) -> Result<CowVal<'b, 'v>, ExecutionError> {
    let (this, needle, offset) = arguments("lastIndexOf", &args, true)?;
    let start = match offset_start("lastIndexOf", this, needle, offset.unwrap_or_default())? {
        Ok(found) => return int(found),
        Err(start) => start,
    };
    // A match that starts at or before `start` ends at or before `start + needle.len()`, and
    // at a character boundary: searching the text up to the last boundary there finds it, and
    // no match that starts later.
    let mut end = (start + needle.len()).min(this.len());
    while !this.is_char_boundary(end) {
        end -= 1;
    }
    int(this[..end]
        .rfind(needle)
        .map_or(-1, |at| code_points(this, at)))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cel::{Context, Env, ExecutionError, Value};

    /// What `source` gives in `env`: its value, or only whether it failed (the messages of
    /// no-such-overload errors name the overload the crate tried).
    fn run(env: &Arc<Env>, source: &str) -> Result<Value, ()> {
        let program = env.compile(source).expect(source);
        let context = Context::with_env(Arc::clone(env));
        program.execute(&context).map_err(|_: ExecutionError| ())
    }

    fn crate_only() -> Arc<Env> {
        let mut env = Env::stdlib();
        env.add_extension(cel::extensions::strings).unwrap();
        Arc::new(env)
    }

    /// Every string over `alphabet` of at most `max` code points.
    fn strings(alphabet: &[char], max: usize) -> Vec<String> {
        let mut all = vec![String::new()];
        let mut last = vec![String::new()];
        for _ in 0..max {
            last = last
                .iter()
                .flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}")))
                .collect();
            all.extend(last.iter().cloned());
        }
        all
    }

    /// The answers of the extension's overloads, for every receiver and needle over an
    /// alphabet of one-, two- and four-byte characters and every offset around their lengths.
    #[test]
    fn answers_as_the_extension_does() {
        let mut calls = vec![
            "this.indexOf(needle)".to_owned(),
            "this.lastIndexOf(needle)".to_owned(),
        ];
        for offset in -1..=5 {
            calls.push(format!("this.indexOf(needle, {offset})"));
            calls.push(format!("this.lastIndexOf(needle, {offset})"));
        }
        let ours = Arc::clone(super::super::env::env());
        let theirs = crate_only();
        let compiled =
            |env: &Arc<Env>| -> Vec<_> { calls.iter().map(|c| env.compile(c).unwrap()).collect() };
        let (our_programs, their_programs) = (compiled(&ours), compiled(&theirs));
        let answers = |env: &Arc<Env>, programs: &[cel::Program], this: &str, needle: &str| {
            let mut context = Context::with_env(Arc::clone(env));
            context.add_variable_from_value("this", this.to_owned());
            context.add_variable_from_value("needle", needle.to_owned());
            programs
                .iter()
                .map(|p| p.execute(&context).map_err(|_| ()))
                .collect::<Vec<_>>()
        };
        let mut compared = 0;
        for this in strings(&['a', '©', '😀'], 4) {
            for needle in strings(&['a', '©', '😀'], 2) {
                let expected = answers(&theirs, &their_programs, &this, &needle);
                assert_eq!(
                    answers(&ours, &our_programs, &this, &needle),
                    expected,
                    "{this:?} {needle:?}"
                );
                compared += expected.len();
            }
        }
        assert!(compared > 20_000, "{compared}");
    }

    #[test]
    fn arguments_of_other_types_fail_as_with_the_extension() {
        let ours = Arc::clone(super::super::env::env());
        let theirs = crate_only();
        for call in [
            "'abc'.indexOf(1)",
            "'abc'.indexOf('b', 'c')",
            "'abc'.indexOf(b'b')",
            "'abc'.lastIndexOf(['b'])",
            "'abc'.lastIndexOf('b', 1.0)",
            "'abc'.lastIndexOf('b', 1u)",
            "dyn(1).indexOf('b')",
        ] {
            assert_eq!(run(&ours, call), Err(()), "{call}");
            assert_eq!(run(&theirs, call), Err(()), "{call}");
        }
        assert_eq!(run(&ours, "'abc'.indexOf(dyn('c'))"), Ok(Value::Int(2)));
    }

    /// The search that made a rule over two request values quadratic: a needle of n `a`s and
    /// a `b` in 2n `a`s matches a window up to its last character at every position. The
    /// extension's overloads compare 10^10 characters here; ours answer at once.
    #[test]
    fn a_needle_that_almost_matches_everywhere_is_searched_in_linear_time() {
        let ours = Arc::clone(super::super::env::env());
        let n = 100_000;
        let this = "a".repeat(2 * n);
        let needle = format!("{}b", "a".repeat(n));
        let mut context = Context::with_env(Arc::clone(&ours));
        context.add_variable_from_value("this", this);
        context.add_variable_from_value("needle", needle);
        for (source, expected) in [
            ("this.indexOf(needle)", -1),
            ("this.lastIndexOf(needle)", -1),
            ("this.indexOf(needle, 5)", -1),
            ("this.lastIndexOf(needle, 150000)", -1),
            ("(this + 'b').indexOf(needle)", 100_000),
            ("(this + 'b').lastIndexOf(needle, 199999)", 100_000),
            ("(this + 'b').lastIndexOf(needle, 100000)", 100_000),
            ("(this + 'b').lastIndexOf(needle, 99999)", -1),
        ] {
            let program = ours.compile(source).unwrap();
            assert_eq!(
                program.execute(&context),
                Ok(Value::Int(expected)),
                "{source}"
            );
        }
    }
}
