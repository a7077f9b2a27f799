//! OTLP values as the Python processors turn them into column values (processors/values.py): attribute
//! maps with Python dict semantics (a repeated key keeps its first position and takes its last value),
//! AnyValue text, and plain values (`to_python`) for JSON and for flattening.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::fmt;
use crate::pb::{self, Chunks, Value, R};

/// One AnyValue, with protobuf's oneof rule: the last member on the wire wins, and a message member
/// that repeats is merged.
#[derive(Clone)]
pub enum Any<'a> {
    Unset,
    Str(&'a str),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Chunks<'a>),
    Kvlist(Chunks<'a>),
    Bytes(&'a [u8]),
    /// `string_value_strindex`: the processors have no case for it and store it as JSON null.
    StrIndex,
}

pub fn any<'a>(msg: &Chunks<'a>, depth: u32) -> R<Any<'a>> {
    let mut out = Any::Unset;
    msg.each(depth, |field, value| {
        match (field, value) {
            (1, Value::Len(b)) => out = Any::Str(pb::text(b)),
            (2, Value::Varint(v)) => out = Any::Bool(v != 0),
            (3, Value::Varint(v)) => out = Any::Int(v as i64),
            (4, Value::I64(v)) => out = Any::Double(f64::from_bits(v)),
            (5, Value::Len(b)) => match &mut out {
                Any::Array(chunks) => chunks.push(b),
                _ => out = Any::Array(Chunks::one(b)),
            },
            (6, Value::Len(b)) => match &mut out {
                Any::Kvlist(chunks) => chunks.push(b),
                _ => out = Any::Kvlist(Chunks::one(b)),
            },
            (7, Value::Len(b)) => out = Any::Bytes(b),
            (8, Value::Varint(_)) => out = Any::StrIndex,
            _ => {}
        }
        Ok(())
    })?;
    Ok(out)
}

/// A KeyValue's key and value (the value's occurrences merged).
pub fn key_value<'a>(buf: &'a [u8], depth: u32) -> R<(&'a str, Chunks<'a>)> {
    let mut key = "";
    let mut value = Chunks::default();
    pb::each(buf, depth, |field, v| {
        match (field, v) {
            (1, Value::Len(b)) => key = pb::text(b),
            (2, Value::Len(b)) => value.push(b),
            _ => {}
        }
        Ok(())
    })?;
    Ok((key, value))
}

// -- dicts with Python's semantics -------------------------------------------------------------------

/// An insertion-ordered map where setting an existing key replaces its value in place.
#[derive(Clone, Default)]
pub struct Dict<'a, V> {
    pub entries: Vec<(Cow<'a, str>, V)>,
    index: Option<HashMap<String, usize>>,
}

const INDEX_FROM: usize = 16;

impl<'a, V> Dict<'a, V> {
    pub fn new() -> Self {
        Dict { entries: Vec::new(), index: None }
    }

    pub fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|(k, _)| k.as_ref() == key),
        }
    }

    pub fn contains(&self, key: &str) -> bool {
        self.position(key).is_some()
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.position(key).map(|i| &self.entries[i].1)
    }

    pub fn set(&mut self, key: Cow<'a, str>, value: V) {
        if let Some(i) = self.position(&key) {
            self.entries[i].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.to_string(), self.entries.len());
        }
        self.entries.push((key, value));
        if self.index.is_none() && self.entries.len() > INDEX_FROM {
            self.index = Some(self.entries.iter().enumerate().map(|(i, (k, _))| (k.to_string(), i)).collect());
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

pub type Attrs<'a> = Dict<'a, Cow<'a, str>>;

/// `attributes(pairs)`: every key with its value as text.
pub fn attributes<'a>(pairs: &[&'a [u8]], depth: u32) -> R<Attrs<'a>> {
    let mut out = Attrs::new();
    for kv in pairs {
        let (key, value) = key_value(kv, depth)?;
        let text = to_text(&any(&value, depth + 1)?, depth + 1)?;
        out.set(Cow::Borrowed(key), text);
    }
    Ok(out)
}

/// `to_text(value)`: the string stored in a Map(String, String) or a String column.
pub fn to_text<'a>(value: &Any<'a>, depth: u32) -> R<Cow<'a, str>> {
    Ok(match value {
        Any::Str(s) => Cow::Borrowed(*s),
        Any::Int(i) => Cow::Owned(i.to_string()),
        Any::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Any::Double(d) => {
            let mut s = String::new();
            fmt::py_float(*d, &mut s);
            Cow::Owned(s)
        }
        Any::Unset => Cow::Borrowed(""),
        Any::Bytes(b) => {
            let mut s = String::new();
            fmt::base64(b, &mut s);
            Cow::Owned(s)
        }
        Any::Array(_) | Any::Kvlist(_) | Any::StrIndex => {
            let plain = to_python(value, depth)?;
            let mut s = String::new();
            dumps(&plain, &mut s, 0).map_err(|_| pb::DecodeError("a value nested too deep for JSON"))?;
            Cow::Owned(s)
        }
    })
}

// -- plain values (what `to_python` and `orjson.loads` return) ----------------------------------------

#[derive(Clone)]
pub enum Py<'a> {
    None,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
    List(Vec<Py<'a>>),
    Dict(Dict<'a, Py<'a>>),
}

pub fn to_python<'a>(value: &Any<'a>, depth: u32) -> R<Py<'a>> {
    Ok(match value {
        Any::Str(s) => Py::Str(Cow::Borrowed(*s)),
        Any::Int(i) => Py::Int(*i as i128),
        Any::Double(d) => Py::Float(*d),
        Any::Bool(b) => Py::Bool(*b),
        Any::Bytes(b) => {
            let mut s = String::new();
            fmt::base64(b, &mut s);
            Py::Str(Cow::Owned(s))
        }
        Any::Array(chunks) => {
            let mut out = Vec::new();
            chunks.each(depth + 1, |field, v| {
                if let (1, Value::Len(b)) = (field, v) {
                    out.push(to_python(&any(&Chunks::one(b), depth + 2)?, depth + 2)?);
                }
                Ok(())
            })?;
            Py::List(out)
        }
        Any::Kvlist(chunks) => {
            let mut out = Dict::new();
            chunks.each(depth + 1, |field, v| {
                if let (1, Value::Len(b)) = (field, v) {
                    let (key, value) = key_value(b, depth + 2)?;
                    out.set(Cow::Borrowed(key), to_python(&any(&value, depth + 3)?, depth + 3)?);
                }
                Ok(())
            })?;
            Py::Dict(out)
        }
        Any::Unset | Any::StrIndex => Py::None,
    })
}

/// orjson's nesting limit when serializing.
pub const DUMPS_MAX_DEPTH: usize = 254;

#[derive(Debug)]
pub struct TooDeep;

/// `orjson.dumps(value)`. Fails, as orjson does, on containers nested deeper than 254.
pub fn dumps(value: &Py<'_>, out: &mut String, depth: usize) -> Result<(), TooDeep> {
    match value {
        Py::None => out.push_str("null"),
        Py::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Py::Int(i) => out.push_str(&i.to_string()),
        Py::Float(f) => fmt::json_float(*f, out),
        Py::Str(s) => fmt::json_str(s, out),
        Py::List(items) => {
            if depth >= DUMPS_MAX_DEPTH {
                return Err(TooDeep);
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                dumps(item, out, depth + 1)?;
            }
            out.push(']');
        }
        Py::Dict(dict) => {
            if depth >= DUMPS_MAX_DEPTH {
                return Err(TooDeep);
            }
            out.push('{');
            for (i, (key, item)) in dict.entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                fmt::json_str(key, out);
                out.push(':');
                dumps(item, out, depth + 1)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// `str(value)` of a plain scalar as `flatten` writes it; None for containers.
pub fn scalar_text<'a>(value: &Py<'a>) -> Option<Cow<'a, str>> {
    Some(match value {
        Py::Str(s) => s.clone(),
        Py::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
        Py::None => Cow::Borrowed(""),
        Py::Int(i) => Cow::Owned(i.to_string()),
        Py::Float(f) => {
            let mut s = String::new();
            fmt::py_float(*f, &mut s);
            Cow::Owned(s)
        }
        Py::List(_) | Py::Dict(_) => return None,
    })
}

// -- JSON as orjson.loads reads it --------------------------------------------------------------------

/// orjson's nesting limit when parsing.
const LOADS_MAX_DEPTH: usize = 1024;

pub struct Json<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
}

#[derive(Debug)]
pub struct JsonError;

type JR<T> = Result<T, JsonError>;

/// `orjson.loads(text)`; any error is just an error (the processors treat the body as text then).
pub fn loads(text: &str) -> JR<Py<'_>> {
    let mut p = Json { s: text, b: text.as_bytes(), pos: 0 };
    p.ws();
    let value = p.value(0)?;
    p.ws();
    if p.pos != p.b.len() {
        return Err(JsonError);
    }
    Ok(value)
}

impl<'a> Json<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.pos) {
            if c == b' ' || c == b'\t' || c == b'\n' || c == b'\r' {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn value(&mut self, depth: usize) -> JR<Py<'a>> {
        match self.b.get(self.pos) {
            Some(b'{') => {
                if depth >= LOADS_MAX_DEPTH {
                    return Err(JsonError);
                }
                self.pos += 1;
                let mut dict = Dict::new();
                self.ws();
                if self.b.get(self.pos) == Some(&b'}') {
                    self.pos += 1;
                    return Ok(Py::Dict(dict));
                }
                loop {
                    self.ws();
                    if self.b.get(self.pos) != Some(&b'"') {
                        return Err(JsonError);
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.b.get(self.pos) != Some(&b':') {
                        return Err(JsonError);
                    }
                    self.pos += 1;
                    self.ws();
                    let value = self.value(depth + 1)?;
                    dict.set(key, value);
                    self.ws();
                    match self.b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b'}') => {
                            self.pos += 1;
                            return Ok(Py::Dict(dict));
                        }
                        _ => return Err(JsonError),
                    }
                }
            }
            Some(b'[') => {
                if depth >= LOADS_MAX_DEPTH {
                    return Err(JsonError);
                }
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.pos) == Some(&b']') {
                    self.pos += 1;
                    return Ok(Py::List(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        Some(b']') => {
                            self.pos += 1;
                            return Ok(Py::List(items));
                        }
                        _ => return Err(JsonError),
                    }
                }
            }
            Some(b'"') => Ok(Py::Str(self.string()?)),
            Some(b't') => self.literal("true", Py::Bool(true)),
            Some(b'f') => self.literal("false", Py::Bool(false)),
            Some(b'n') => self.literal("null", Py::None),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(JsonError),
        }
    }

    fn literal(&mut self, word: &str, value: Py<'a>) -> JR<Py<'a>> {
        if self.b[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            Err(JsonError)
        }
    }

    fn number(&mut self) -> JR<Py<'a>> {
        let start = self.pos;
        let b = self.b;
        if b.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match b.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                    self.pos += 1;
                }
            }
            _ => return Err(JsonError),
        }
        let mut float = false;
        if b.get(self.pos) == Some(&b'.') {
            float = true;
            self.pos += 1;
            if !matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                return Err(JsonError);
            }
            while matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        if matches!(b.get(self.pos), Some(b'e' | b'E')) {
            float = true;
            self.pos += 1;
            if matches!(b.get(self.pos), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                return Err(JsonError);
            }
            while matches!(b.get(self.pos), Some(b'0'..=b'9')) {
                self.pos += 1;
            }
        }
        let text = &self.s[start..self.pos];
        if !float {
            if let Ok(i) = text.parse::<i128>() {
                if i >= i64::MIN as i128 && i <= u64::MAX as i128 {
                    return Ok(Py::Int(i));
                }
            }
        }
        let f: f64 = text.parse().map_err(|_| JsonError)?;
        if f.is_infinite() {
            return Err(JsonError);
        }
        Ok(Py::Float(f))
    }

    fn hex4(&mut self) -> JR<u32> {
        let digits = self.b.get(self.pos..self.pos + 4).ok_or(JsonError)?;
        let mut v = 0u32;
        for &d in digits {
            v = v * 16
                + match d {
                    b'0'..=b'9' => (d - b'0') as u32,
                    b'a'..=b'f' => (d - b'a' + 10) as u32,
                    b'A'..=b'F' => (d - b'A' + 10) as u32,
                    _ => return Err(JsonError),
                };
        }
        self.pos += 4;
        Ok(v)
    }

    fn string(&mut self) -> JR<Cow<'a, str>> {
        self.pos += 1; // the opening quote
        let start = self.pos;
        let b = self.b;
        // Fast path: no escapes.
        loop {
            match b.get(self.pos) {
                None => return Err(JsonError),
                Some(b'"') => {
                    let s = &self.s[start..self.pos];
                    self.pos += 1;
                    return Ok(Cow::Borrowed(s));
                }
                Some(b'\\') => break,
                Some(&c) if c < 0x20 => return Err(JsonError),
                Some(_) => self.pos += 1,
            }
        }
        let mut out = String::from(&self.s[start..self.pos]);
        loop {
            match b.get(self.pos) {
                None => return Err(JsonError),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = *b.get(self.pos).ok_or(JsonError)?;
                    self.pos += 1;
                    match c {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if b.get(self.pos) != Some(&b'\\') || b.get(self.pos + 1) != Some(&b'u') {
                                    return Err(JsonError);
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(JsonError);
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else if (0xDC00..0xE000).contains(&hi) {
                                return Err(JsonError);
                            } else {
                                hi
                            };
                            out.push(char::from_u32(code).ok_or(JsonError)?);
                        }
                        _ => return Err(JsonError),
                    }
                }
                Some(&c) if c < 0x20 => return Err(JsonError),
                Some(_) => {
                    // Copy a run of plain characters at once (the text is UTF-8 already).
                    let run = self.pos;
                    while let Some(&c) = b.get(self.pos) {
                        if c == b'"' || c == b'\\' || c < 0x20 {
                            break;
                        }
                        self.pos += 1;
                    }
                    out.push_str(&self.s[run..self.pos]);
                }
            }
        }
    }
}
