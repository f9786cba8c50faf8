//! [`Record`], the map `request`, `request.headers` and `source` are bound as: string keys,
//! entries stored inline and found by a linear scan. Building one per request is one
//! allocation, where a `CelMap` costs a hash and a box per entry; these maps are small and read
//! a few keys each.
//!
//! It is a CEL `map` for every operation (`m.k`, `m[k]`, `has(m.k)`, `k in m`, `size(m)`,
//! comprehensions over its keys), and equal to any map with the same entries. One asymmetry:
//! the `cel` crate's own map only compares equal to its own kind, so `{...} == request.headers`
//! is false where `request.headers == {...}` is true.

use std::sync::Arc;

use cel::ExecutionError;
use cel::common::traits::{self, Container, Indexer, Iterable, Sizer, Zeroer};
use cel::common::types::{CelInt, CelString, MAP_TYPE, Type};
use cel::common::value::{CowVal, Val};

/// A value of a [`Record`] entry.
#[derive(Clone, Debug)]
pub enum Field<'v> {
    Str(CelString<'v>),
    Int(CelInt),
    Record(Record<'v>),
}

impl<'v> Field<'v> {
    fn as_val(&self) -> &(dyn Val + 'v) {
        match self {
            Field::Str(s) => s,
            Field::Int(i) => i,
            Field::Record(r) => r,
        }
    }
}

/// A string-keyed map; keys are unique (the builder's duty).
#[derive(Clone, Debug, Default)]
pub struct Record<'v> {
    entries: Vec<(CelString<'v>, Field<'v>)>,
}

impl<'v> Record<'v> {
    pub fn with_capacity(capacity: usize) -> Self {
        Record {
            entries: Vec::with_capacity(capacity),
        }
    }

    /// Adds an entry; the key must not be there already.
    pub fn push(&mut self, key: CelString<'v>, value: Field<'v>) {
        self.entries.push((key, value));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn find(&self, key: &str) -> Option<&Field<'v>> {
        self.entries
            .iter()
            .find(|(k, _)| k.inner() == key)
            .map(|(_, v)| v)
    }

    pub fn find_mut(&mut self, key: &str) -> Option<&mut Field<'v>> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.inner() == key)
            .map(|(_, v)| v)
    }

    fn lookup(&self, key: &dyn Val) -> Result<Option<&(dyn Val + 'v)>, ExecutionError> {
        match key.downcast_ref::<CelString>() {
            Some(key) => Ok(self.find(key.inner()).map(Field::as_val)),
            None => Err(ExecutionError::UnexpectedType {
                got: key.get_type().name().to_owned(),
                want: "string".to_owned(),
            }),
        }
    }
}

impl<'v> Val for Record<'v> {
    fn get_type(&self) -> &Type {
        &MAP_TYPE
    }

    fn cel_type() -> &'static Type {
        &MAP_TYPE
    }

    fn as_container(&self) -> Option<&dyn Container> {
        Some(self)
    }

    fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn into_indexer<'w>(self: Box<Self>) -> Option<Box<dyn Indexer + 'w>>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn as_iterable<'b, 'w>(&'b self) -> Option<&'b (dyn Iterable + 'w)>
    where
        Self: 'w,
    {
        Some(self)
    }

    fn as_sizer(&self) -> Option<&dyn Sizer> {
        Some(self)
    }

    fn as_zeroer(&self) -> Option<&dyn Zeroer> {
        Some(self)
    }

    /// Equal to any map with the same keys and equal values.
    fn equals(&self, other: &dyn Val) -> bool {
        let (Some(size), Some(indexer)) = (other.as_sizer(), other.as_indexer()) else {
            return false;
        };
        other.get_type().name() == MAP_TYPE.name()
            && *size.size().inner() == self.entries.len() as i64
            && self
                .entries
                .iter()
                .all(|(k, v)| indexer.get(k).is_ok_and(|o| v.as_val().equals(o.as_ref())))
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(self.clone())
    }
}

impl Container for Record<'_> {
    fn contains(&self, key: &dyn Val) -> Result<bool, ExecutionError> {
        // Keys of other types are simply absent, as in a map with string keys.
        Ok(key
            .downcast_ref::<CelString>()
            .is_some_and(|k| self.find(k.inner()).is_some()))
    }
}

impl<'v> Indexer for Record<'v> {
    fn get<'b, 'w>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
    where
        Self: 'w,
    {
        match self.lookup(key)? {
            Some(value) => Ok(CowVal::Borrowed(value)),
            None => Err(ExecutionError::NoSuchKey(Arc::new(
                key.downcast_ref::<CelString>()
                    .map(|k| k.inner().to_owned())
                    .unwrap_or_default(),
            ))),
        }
    }

    fn steal<'w>(self: Box<Self>, key: &dyn Val) -> Result<Box<dyn Val + 'w>, ExecutionError>
    where
        Self: 'w,
    {
        self.get(key).map(CowVal::into_owned)
    }
}

struct Keys<'b, 'v>(std::slice::Iter<'b, (CelString<'v>, Field<'v>)>);

impl<'b, 'v: 'w, 'w> traits::Iterator<'b, 'w> for Keys<'b, 'v> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'w)> {
        self.0.next().map(|(k, _)| k as &dyn Val)
    }
}

impl<'v> Iterable for Record<'v> {
    fn iter<'b, 'w>(&'b self) -> Box<dyn traits::Iterator<'b, 'w> + 'b>
    where
        Self: 'w,
    {
        Box::new(Keys(self.entries.iter()))
    }
}

impl Sizer for Record<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(self.entries.len() as i64)
    }
}

impl Zeroer for Record<'_> {
    fn is_zero_value(&self) -> bool {
        self.entries.is_empty()
    }
}
