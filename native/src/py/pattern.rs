//! Regular expressions of the config (route path, header and query matches, prompt guard
//! rules) run by the `regex` crate, as agentgateway runs them: its syntax (no look-around, no
//! back-references) and matching in time linear in the input, whatever the pattern. Python's
//! `re` backtracks, so a pattern such as `/api/(\w+/?)+` took seconds per character a client
//! added to a path that almost matched.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

#[pyclass(frozen, module = "agentgateway._native", name = "Pattern")]
pub struct PyPattern {
    regex: regex::Regex,
}

#[pymethods]
impl PyPattern {
    /// Raises ValueError with the crate's reason when `pattern` does not compile.
    #[new]
    fn new(pattern: &str) -> PyResult<Self> {
        regex::Regex::new(pattern)
            .map(|regex| PyPattern { regex })
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    #[getter]
    fn pattern(&self) -> &str {
        self.regex.as_str()
    }

    /// Whether the leftmost match of the pattern spans all of `value` (agentgateway's route
    /// match: the first match found must start at 0 and end at the end). Bytes that are not
    /// UTF-8 match nothing.
    fn whole(&self, value: &[u8]) -> bool {
        let Ok(text) = std::str::from_utf8(value) else {
            return false;
        };
        self.regex
            .find(text)
            .is_some_and(|m| m.start() == 0 && m.end() == text.len())
    }

    /// The non-overlapping matches of `text`, leftmost first, as (start, end) character
    /// offsets (Python string indices).
    fn spans(&self, text: &str) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut chars = 0usize; // characters before `byte`
        let mut byte = 0usize;
        let advance = |to: usize, chars: &mut usize, byte: &mut usize| {
            *chars += text[*byte..to].chars().count();
            *byte = to;
        };
        for m in self.regex.find_iter(text) {
            advance(m.start(), &mut chars, &mut byte);
            let start = chars;
            advance(m.end(), &mut chars, &mut byte);
            out.push((start, chars));
        }
        out
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPattern>()?;
    Ok(())
}
