//! CEL expression text (the config side): compiling never crashes, and a program that compiles
//! evaluates (against the sample bindings) without crashing and to the same outcome whether
//! every variable is bound or only what its `References` name (the gateway binds only those),
//! and as the `cel` crate's own program for the same text (ours is rewritten after parsing).

#![no_main]

use std::sync::{Arc, LazyLock};

use agentgateway_native::cel::{Program, context};
use agentgateway_native_fuzz::cel_fixture::{Fixture, outcome, same};
use cel::Value;
use libfuzzer_sys::fuzz_target;

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::sample);

/// An environment with the same parser (standard macros, optional syntax) as the native one,
/// to compile the unrewritten program.
static PLAIN: LazyLock<Arc<cel::Env>> = LazyLock::new(|| {
    let mut env = cel::Env::stdlib();
    env.add_extension(cel::extensions::strings)
        .expect("strings extension");
    Arc::new(env)
});

/// Comprehensions nested in comprehensions multiply their iterations: a short expression can
/// run for hours. Such expressions come from the (trusted) config, so they are compiled here
/// but not evaluated.
fn comprehensions(source: &str) -> usize {
    [
        "all(",
        "exists(",
        "exists_one(",
        "map(",
        "filter(",
        "existsOne(",
    ]
    .iter()
    .map(|m| source.matches(m).count())
    .sum()
}

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(program) = Program::compile(source) else {
        return;
    };
    let _ = program.references().needs_headers();
    if comprehensions(source) > 2 {
        return;
    }
    let evaluate = |bindings| {
        let ctx = context(&bindings);
        outcome(
            program
                .evaluate(&ctx)
                .map_err(|e| e.to_string())
                .and_then(|v| Value::try_from(v.as_ref()).map_err(|e| format!("{e:?}"))),
        )
    };
    let full = evaluate(FIXTURE.bind(None));
    let minimal = evaluate(FIXTURE.bind(Some(program.references())));
    assert!(
        same(&full, &minimal),
        "{source:?}: all bound {full:?}, referenced bound {minimal:?} ({:?})",
        program.references()
    );

    if let Ok(plain) = PLAIN.compile(source) {
        let bindings = FIXTURE.bind(None);
        let ctx = context(&bindings);
        let theirs = outcome(plain.execute(&ctx).map_err(|e| e.to_string()));
        assert!(
            same(&full, &theirs),
            "{source:?}: native {full:?}, cel crate {theirs:?}"
        );
    }
});
