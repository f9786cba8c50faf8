//! Python bindings of `crate::cel`: compile once, then one call per evaluation that converts
//! the variables the expressions read (and only those) and evaluates every rule.
//!
//! Conversion copies no text: `str` and `bytes` objects are kept alive in an arena for the
//! call and the CEL values borrow their contents (bytes are read as UTF-8, invalid sequences
//! replaced).

use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PyString, PyTuple,
};
use typed_arena::Arena;

use cel::common::types::{
    CelBool, CelBytes, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelOptional,
    CelString, CelType, CelUInt, Kind,
};
use cel::common::value::Val;

use crate::cel::net::{Cidr, Ip};
use crate::cel::{
    Bindings, CompileError, HeaderNames, Program, References, RequestField, RequestHead, RuleKind,
    RuleSet, Var, context, request_value, source_value, text,
};

create_exception!(
    agentgateway._native,
    CelCompileError,
    PyValueError,
    "A CEL expression that cannot be compiled.\n\n\
     Attributes: message (why), line and column (1-based, where), expression (the source), \
     index (the rule's position in a rule set, None for a single expression)."
);

create_exception!(
    agentgateway._native,
    CelEvaluationError,
    PyValueError,
    "A CEL expression whose evaluation failed (a missing key or variable, a type mismatch, \
     a function error), or whose value cannot be returned to Python."
);

/// Deepest nesting of dicts and lists accepted in a variable (a cycle would be infinite).
const MAX_DEPTH: usize = 64;

fn compile_error(py: Python<'_>, error: &CompileError, index: Option<usize>) -> PyErr {
    let err = CelCompileError::new_err(error.to_string());
    let value = err.value(py);
    let set = || -> PyResult<()> {
        value.setattr(intern!(py, "message"), &error.message)?;
        value.setattr(intern!(py, "line"), error.line)?;
        value.setattr(intern!(py, "column"), error.column)?;
        value.setattr(intern!(py, "expression"), &error.source)?;
        value.setattr(intern!(py, "index"), index)
    };
    match set() {
        Ok(()) => err,
        Err(failure) => failure,
    }
}

fn variable_names<'py>(
    py: Python<'py>,
    references: &References,
) -> PyResult<Bound<'py, PyFrozenSet>> {
    PyFrozenSet::new(py, references.variables.iter().map(Var::name))
}

fn request_field_names<'py>(
    py: Python<'py>,
    references: &References,
) -> PyResult<Bound<'py, PyFrozenSet>> {
    let fields = RequestField::ALL
        .into_iter()
        .filter(|f| references.variables.contains(Var::Request) && references.request.contains(*f));
    PyFrozenSet::new(py, fields.map(RequestField::name))
}

/// The headers of `request.headers` the expressions read: their lower-case names, or None when
/// they use the map as a whole (then every header may matter).
fn header_names<'py>(
    py: Python<'py>,
    references: &References,
) -> PyResult<Option<Bound<'py, PyFrozenSet>>> {
    if !references.needs_headers() {
        return Ok(Some(PyFrozenSet::empty(py)?));
    }
    match &references.headers {
        HeaderNames::All => Ok(None),
        HeaderNames::Named(names) => PyFrozenSet::new(py, names).map(Some),
    }
}

/// Bytes (or the UTF-8 of a str) borrowed for as long as `item` is.
fn bytes_or_str<'a>(item: Borrowed<'a, '_, PyAny>, what: &str) -> PyResult<&'a [u8]> {
    if let Ok(bytes) = item.extract::<&'a [u8]>() {
        return Ok(bytes);
    }
    if let Ok(text) = item.extract::<&'a str>() {
        return Ok(text.as_bytes());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be bytes or str, not {}",
        item.get_type().name()?
    )))
}

/// Turns Python values into CEL values that borrow from objects kept in `arena`.
struct Converter<'a, 'py> {
    arena: &'a Arena<Bound<'py, PyAny>>,
}

impl<'a, 'py> Converter<'a, 'py> {
    fn keep(&self, object: Bound<'py, PyAny>) -> &'a Bound<'py, PyAny> {
        self.arena.alloc(object)
    }

    /// `str` as is, `bytes` as UTF-8 (lossy); None for anything else.
    fn text(&self, object: Bound<'py, PyAny>) -> PyResult<Option<CelString<'a>>> {
        let kept = self.keep(object);
        if let Ok(s) = kept.cast::<PyString>() {
            return Ok(Some(CelString::from(s.to_str()?)));
        }
        if let Ok(b) = kept.cast::<PyBytes>() {
            return Ok(Some(text(b.as_bytes())));
        }
        Ok(None)
    }

    fn value(&self, object: Bound<'py, PyAny>, depth: usize) -> PyResult<Box<dyn Val + 'a>> {
        if depth > MAX_DEPTH {
            return Err(PyValueError::new_err(format!(
                "CEL variable nested deeper than {MAX_DEPTH} levels"
            )));
        }
        if object.is_instance_of::<PyString>() || object.is_instance_of::<PyBytes>() {
            let text = self.text(object)?.expect("str or bytes");
            return Ok(Box::new(text));
        }
        if let Ok(b) = object.cast::<PyBool>() {
            return Ok(Box::new(CelBool::from(b.is_true())));
        }
        if object.is_instance_of::<PyInt>() {
            if let Ok(i) = object.extract::<i64>() {
                return Ok(Box::new(CelInt::from(i)));
            }
            return Ok(Box::new(CelUInt::from(object.extract::<u64>()?)));
        }
        if let Ok(f) = object.cast::<PyFloat>() {
            return Ok(Box::new(CelDouble::from(f.value())));
        }
        if object.is_none() {
            return Ok(Box::new(CelNull));
        }
        if let Ok(dict) = object.cast::<PyDict>() {
            let mut map = std::collections::HashMap::with_capacity(dict.len());
            for (key, value) in dict.iter() {
                map.insert(self.key(key)?, self.value(value, depth + 1)?);
            }
            return Ok(Box::new(CelMap::from(map)));
        }
        if let Ok(list) = object.cast::<PyList>() {
            let items = list
                .iter()
                .map(|item| self.value(item, depth + 1))
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(Box::new(CelList::from(items)));
        }
        if let Ok(tuple) = object.cast::<PyTuple>() {
            let items = tuple
                .iter()
                .map(|item| self.value(item, depth + 1))
                .collect::<PyResult<Vec<_>>>()?;
            return Ok(Box::new(CelList::from(items)));
        }
        Err(PyTypeError::new_err(format!(
            "a CEL variable holds str, bytes, int, float, bool, None, dict or list values, not {}",
            object.get_type().name()?
        )))
    }

    fn key(&self, key: Bound<'py, PyAny>) -> PyResult<CelMapKey<'a>> {
        if let Ok(b) = key.cast::<PyBool>() {
            return Ok(CelMapKey::from(b.is_true()));
        }
        if key.is_instance_of::<PyInt>() {
            if let Ok(i) = key.extract::<i64>() {
                return Ok(CelMapKey::from(i));
            }
            return Ok(CelMapKey::from(key.extract::<u64>()?));
        }
        let kept = self.keep(key);
        if let Ok(s) = kept.cast::<PyString>() {
            return Ok(CelMapKey::from(s.to_str()?));
        }
        if let Ok(b) = kept.cast::<PyBytes>() {
            return Ok(match text(b.as_bytes()).as_borrowed() {
                Some(borrowed) => CelMapKey::from(borrowed),
                None => CelMapKey::from(String::from_utf8_lossy(b.as_bytes()).into_owned()),
            });
        }
        Err(PyTypeError::new_err(format!(
            "a CEL map key is str, bytes, int or bool, not {}",
            kept.get_type().name()?
        )))
    }

    /// `(method, scheme, host, path, path_and_query, version, headers)` → `request`.
    fn request(
        &self,
        head: &'a Bound<'py, PyAny>,
        references: &References,
    ) -> PyResult<Box<dyn Val + 'a>> {
        let head = head.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err("request must be a tuple (method, scheme, host, path, path_and_query, version, headers)")
        })?;
        if head.len() != 7 {
            return Err(PyValueError::new_err(format!(
                "request must have 7 items, not {}",
                head.len()
            )));
        }
        let part = |i: usize, what: &str| bytes_or_str(head.get_borrowed_item(i)?, what);
        let (method, scheme, host) = (part(0, "method")?, part(1, "scheme")?, part(2, "host")?);
        let (path, path_and_query) = (part(3, "path")?, part(4, "path_and_query")?);
        let version: &'a str = head
            .get_borrowed_item(5)?
            .extract()
            .map_err(|_| PyTypeError::new_err("version must be a str"))?;
        let mut headers: Vec<(&'a [u8], &'a [u8])> = Vec::new();
        if references.request.contains(RequestField::Headers) {
            let given = head.get_borrowed_item(6)?;
            if !given.is_none() {
                let shape = || PyTypeError::new_err("headers must be (name, value) tuples");
                for pair in given.try_iter()? {
                    let pair = pair?.cast_into::<PyTuple>().map_err(|_| shape())?;
                    if pair.len() != 2 {
                        return Err(shape());
                    }
                    let name = bytes_or_str(pair.get_borrowed_item(0)?, "a header name")?;
                    if !references.headers.wants(name) {
                        continue;
                    }
                    // A header the expressions read: the pair is kept for the call, so that its
                    // items can be borrowed.
                    let pair = self
                        .keep(pair.into_any())
                        .cast::<PyTuple>()
                        .map_err(|_| shape())?;
                    let name = bytes_or_str(pair.get_borrowed_item(0)?, "a header name")?;
                    let value = bytes_or_str(pair.get_borrowed_item(1)?, "a header value")?;
                    headers.push((name, value));
                }
            }
        }
        let head = RequestHead {
            method,
            scheme,
            host,
            path,
            path_and_query,
            version,
            headers: &headers,
        };
        Ok(Box::new(request_value(&head, references.request)))
    }

    /// `(address, port)` → `source`.
    fn source(&self, peer: &'a Bound<'py, PyAny>) -> PyResult<Box<dyn Val + 'a>> {
        let shape = || PyTypeError::new_err("source must be a tuple (address, port)");
        let peer = peer.cast::<PyTuple>().map_err(|_| shape())?;
        if peer.len() != 2 {
            return Err(shape());
        }
        let address: &'a str = peer
            .get_borrowed_item(0)?
            .extract()
            .map_err(|_| PyTypeError::new_err("source address must be a str"))?;
        let port: i64 = peer.get_borrowed_item(1)?.extract()?;
        Ok(Box::new(source_value(address, port)))
    }

    /// Binds what `references` names: `request` and `source` from their tuples when given,
    /// the rest (and those, when not given) from `variables`; other entries are not read.
    fn bind(
        &self,
        references: &References,
        request: Option<&'a Bound<'py, PyAny>>,
        source: Option<&'a Bound<'py, PyAny>>,
        variables: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bindings<'a>> {
        let mut bindings = Bindings::default();
        let wanted = references.variables;
        if wanted.contains(Var::Request)
            && let Some(request) = request.filter(|r| !r.is_none())
        {
            bindings.set(Var::Request, self.request(request, references)?);
        }
        if wanted.contains(Var::Source)
            && let Some(source) = source.filter(|s| !s.is_none())
        {
            bindings.set(Var::Source, self.source(source)?);
        }
        if let Some(variables) = variables {
            for (name, value) in variables.iter() {
                let name = name
                    .cast::<PyString>()
                    .map_err(|_| PyTypeError::new_err("variable names must be str"))?;
                let Some(var) = Var::from_name(name.to_str()?) else {
                    continue;
                };
                if wanted.contains(var) && !bindings.is_set(var) {
                    bindings.set(var, self.value(value, 0)?);
                }
            }
        }
        Ok(bindings)
    }
}

/// A CEL value as a Python value: bool, int, float, str, bytes, None, list, dict; an IP or
/// CIDR as its text, a type as its name, an optional as its value (None when empty).
fn to_python<'py>(py: Python<'py>, value: &dyn Val, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if depth > MAX_DEPTH {
        return Err(CelEvaluationError::new_err(format!(
            "result nested deeper than {MAX_DEPTH} levels"
        )));
    }
    if let Some(s) = value.downcast_ref::<CelString>() {
        return Ok(PyString::new(py, s.inner()).into_any());
    }
    if let Some(b) = value.downcast_ref::<CelBool>() {
        return Ok(PyBool::new(py, *b.inner()).to_owned().into_any());
    }
    if let Some(i) = value.downcast_ref::<CelInt>() {
        return Ok(i.inner().into_pyobject(py)?.into_any());
    }
    if let Some(u) = value.downcast_ref::<CelUInt>() {
        return Ok(u.inner().into_pyobject(py)?.into_any());
    }
    if let Some(d) = value.downcast_ref::<CelDouble>() {
        return Ok(PyFloat::new(py, *d.inner()).into_any());
    }
    if let Some(b) = value.downcast_ref::<CelBytes>() {
        return Ok(PyBytes::new(py, b.inner()).into_any());
    }
    if value.downcast_ref::<CelNull>().is_some() {
        return Ok(py.None().into_bound(py));
    }
    if let Some(ip) = value.downcast_ref::<Ip>() {
        return Ok(PyString::new(py, &ip.0.to_string()).into_any());
    }
    if let Some(cidr) = value.downcast_ref::<Cidr>() {
        return Ok(PyString::new(py, &cidr.to_string()).into_any());
    }
    if let Some(t) = value.downcast_ref::<CelType>() {
        return Ok(PyString::new(py, t.name()).into_any());
    }
    if let Some(o) = value.downcast_ref::<CelOptional>() {
        return match o.inner() {
            Some(inner) => to_python(py, inner, depth + 1),
            None => Ok(py.None().into_bound(py)),
        };
    }
    let kind = value.get_type().kind();
    if let (Kind::List, Some(items)) = (kind, value.as_iterable()) {
        let list = PyList::empty(py);
        let mut iter = items.iter();
        while let Some(item) = iter.next() {
            list.append(to_python(py, item, depth + 1)?)?;
        }
        return Ok(list.into_any());
    }
    if let (Kind::Map, Some(keys), Some(indexer)) = (kind, value.as_iterable(), value.as_indexer())
    {
        let dict = PyDict::new(py);
        let mut iter = keys.iter();
        while let Some(key) = iter.next() {
            let item = indexer
                .get(key)
                .map_err(|e| CelEvaluationError::new_err(e.to_string()))?;
            dict.set_item(
                to_python(py, key, depth + 1)?,
                to_python(py, item.as_ref(), depth + 1)?,
            )?;
        }
        return Ok(dict.into_any());
    }
    Err(CelEvaluationError::new_err(format!(
        "a {} value cannot be returned to Python",
        value.get_type().name()
    )))
}

/// One compiled expression, evaluated to a value.
#[pyclass(frozen, module = "agentgateway._native", name = "CelProgram")]
pub struct PyProgram {
    program: Program,
}

#[pymethods]
impl PyProgram {
    #[new]
    fn new(py: Python<'_>, expression: &str) -> PyResult<Self> {
        Program::compile(expression)
            .map(|program| PyProgram { program })
            .map_err(|error| compile_error(py, &error, None))
    }

    #[getter]
    fn expression(&self) -> &str {
        self.program.source()
    }

    /// The top-level variables the expression reads.
    #[getter]
    fn variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        variable_names(py, self.program.references())
    }

    /// The fields of `request` the expression reads.
    #[getter]
    fn request_fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        request_field_names(py, self.program.references())
    }

    #[getter]
    fn needs_headers(&self) -> bool {
        self.program.references().needs_headers()
    }

    /// The request headers the expression reads (lower-case names); None when it reads the
    /// map as a whole.
    #[getter]
    fn header_names<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyFrozenSet>>> {
        header_names(py, self.program.references())
    }

    #[pyo3(signature = (request=None, source=None, variables=None))]
    fn evaluate<'py>(
        &self,
        py: Python<'py>,
        request: Option<&Bound<'py, PyAny>>,
        source: Option<&Bound<'py, PyAny>>,
        variables: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let arena = Arena::new();
        let converter = Converter { arena: &arena };
        let bindings = converter.bind(self.program.references(), request, source, variables)?;
        let context = context(&bindings);
        let value = self
            .program
            .evaluate(&context)
            .map_err(|e| CelEvaluationError::new_err(e.to_string()))?;
        to_python(py, value.as_ref(), 0)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CelProgram({})",
            PyString::new(py, self.program.source()).repr()?
        ))
    }
}

/// An authorization rule set.
#[pyclass(frozen, module = "agentgateway._native", name = "CelRules")]
pub struct PyRules {
    rules: RuleSet,
}

fn rule_kind(kind: &str) -> PyResult<RuleKind> {
    match kind {
        "allow" => Ok(RuleKind::Allow),
        "deny" => Ok(RuleKind::Deny),
        "require" => Ok(RuleKind::Require),
        other => Err(PyValueError::new_err(format!(
            "rule kind must be allow, deny or require, not {other:?}"
        ))),
    }
}

impl PyRules {
    fn with_bindings<'py, T>(
        &self,
        request: Option<&Bound<'py, PyAny>>,
        source: Option<&Bound<'py, PyAny>>,
        variables: Option<&Bound<'py, PyDict>>,
        run: impl FnOnce(&RuleSet, &Bindings<'_>) -> T,
    ) -> PyResult<T> {
        let arena = Arena::new();
        let converter = Converter { arena: &arena };
        let bindings = converter.bind(self.rules.references(), request, source, variables)?;
        Ok(run(&self.rules, &bindings))
    }
}

#[pymethods]
impl PyRules {
    #[new]
    fn new(py: Python<'_>, rules: Vec<(String, String)>) -> PyResult<Self> {
        let kinds = rules
            .iter()
            .map(|(kind, _)| rule_kind(kind))
            .collect::<PyResult<Vec<_>>>()?;
        RuleSet::compile(
            kinds
                .into_iter()
                .zip(rules.iter().map(|(_, source)| source.as_str())),
        )
        .map(|rules| PyRules { rules })
        .map_err(|e| compile_error(py, &e.error, Some(e.index)))
    }

    fn __len__(&self) -> usize {
        self.rules.rules().len()
    }

    #[getter]
    fn variables<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        variable_names(py, self.rules.references())
    }

    #[getter]
    fn request_fields<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyFrozenSet>> {
        request_field_names(py, self.rules.references())
    }

    #[getter]
    fn needs_headers(&self) -> bool {
        self.rules.references().needs_headers()
    }

    /// The request headers the rules read (lower-case names); None when one reads the map as
    /// a whole.
    #[getter]
    fn header_names<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyFrozenSet>>> {
        header_names(py, self.rules.references())
    }

    /// The index of the rule that decided, -1 when the set allows with no rule deciding, -2
    /// when it denies with none deciding.
    #[pyo3(signature = (request=None, source=None, variables=None))]
    fn evaluate<'py>(
        &self,
        request: Option<&Bound<'py, PyAny>>,
        source: Option<&Bound<'py, PyAny>>,
        variables: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<isize> {
        self.with_bindings(request, source, variables, |rules, bindings| {
            let decision = rules.evaluate(&context(bindings));
            match decision.rule {
                Some(index) => index as isize,
                None if decision.allowed => -1,
                None => -2,
            }
        })
    }

    /// Every rule's result, in order: True or False, or the error message when it failed.
    #[pyo3(signature = (request=None, source=None, variables=None))]
    fn explain<'py>(
        &self,
        py: Python<'py>,
        request: Option<&Bound<'py, PyAny>>,
        source: Option<&Bound<'py, PyAny>>,
        variables: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let results = self.with_bindings(request, source, variables, |rules, bindings| {
            rules.explain(&context(bindings))
        })?;
        let list = PyList::empty(py);
        for result in results {
            match result {
                Ok(b) => list.append(b)?,
                Err(e) => list.append(e.0)?,
            }
        }
        Ok(list)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("CelCompileError", py.get_type::<CelCompileError>())?;
    m.add("CelEvaluationError", py.get_type::<CelEvaluationError>())?;
    m.add_class::<PyProgram>()?;
    m.add_class::<PyRules>()?;
    Ok(())
}
