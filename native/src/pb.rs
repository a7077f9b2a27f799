//! Protobuf wire format, read in place (no copies), with the decoding rules of the upb runtime that
//! Python's `protobuf` package uses, so a request is accepted or refused exactly as `FromString` would:
//!
//! * unknown fields, and known fields sent with another wire type, are skipped (groups included);
//! * a singular message field sent several times is merged: the occurrences are read one after the
//!   other as if concatenated (`Chunks`), which is what protobuf's merge means;
//! * every known string field is checked to be UTF-8, used or not (`validate`);
//! * nesting deeper than 100 messages or groups is refused, as upb's default depth limit does.

use std::fmt;

#[derive(Debug)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

pub type R<T> = Result<T, DecodeError>;

const CORRUPT: DecodeError = DecodeError("wire format was corrupt");
pub const MAX_DEPTH: u32 = 100;

#[derive(Clone, Copy)]
pub enum Value<'a> {
    Varint(u64),
    I64(u64),
    Len(&'a [u8]),
    I32(u32),
    Group,
}

pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

#[inline]
pub fn varint(buf: &[u8], pos: &mut usize) -> R<u64> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let byte = *buf.get(*pos).ok_or(CORRUPT)?;
        *pos += 1;
        if i < 9 {
            value |= ((byte & 0x7f) as u64) << (7 * i);
        } else {
            value |= ((byte & 0x7f) as u64).wrapping_shl(63);
        }
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(CORRUPT)
}

impl<'a> Fields<'a> {
    #[inline]
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    /// The next field, or None at the end. Groups are skipped whole (`Value::Group`), checking that
    /// they end and nest no deeper than `depth` allows.
    #[inline]
    pub fn next(&mut self, depth: u32) -> R<Option<(u32, Value<'a>)>> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let tag = varint(self.buf, &mut self.pos)?;
        if tag > u32::MAX as u64 {
            return Err(CORRUPT);
        }
        let field = (tag >> 3) as u32;
        if field == 0 {
            return Err(CORRUPT);
        }
        let value = match tag & 7 {
            0 => Value::Varint(varint(self.buf, &mut self.pos)?),
            1 => {
                let end = self.pos.checked_add(8).ok_or(CORRUPT)?;
                let bytes = self.buf.get(self.pos..end).ok_or(CORRUPT)?;
                self.pos = end;
                Value::I64(u64::from_le_bytes(bytes.try_into().unwrap()))
            }
            2 => {
                let len = varint(self.buf, &mut self.pos)?;
                if len > (self.buf.len() - self.pos) as u64 {
                    return Err(CORRUPT);
                }
                let end = self.pos + len as usize;
                let bytes = &self.buf[self.pos..end];
                self.pos = end;
                Value::Len(bytes)
            }
            3 => {
                self.skip_group(field, depth)?;
                Value::Group
            }
            5 => {
                let end = self.pos.checked_add(4).ok_or(CORRUPT)?;
                let bytes = self.buf.get(self.pos..end).ok_or(CORRUPT)?;
                self.pos = end;
                Value::I32(u32::from_le_bytes(bytes.try_into().unwrap()))
            }
            _ => return Err(CORRUPT), // 4 (an end group outside a group), 6, 7
        };
        Ok(Some((field, value)))
    }

    fn skip_group(&mut self, field: u32, depth: u32) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(DecodeError("nested deeper than the depth limit"));
        }
        loop {
            if self.pos >= self.buf.len() {
                return Err(CORRUPT);
            }
            let start = self.pos;
            let tag = varint(self.buf, &mut self.pos)?;
            if tag > u32::MAX as u64 || tag >> 3 == 0 {
                return Err(CORRUPT);
            }
            if tag & 7 == 4 {
                if (tag >> 3) as u32 == field {
                    return Ok(());
                }
                return Err(CORRUPT);
            }
            self.pos = start;
            self.next(depth + 1)?;
        }
    }
}

/// A singular message field: its occurrences in wire order (usually one), read as one message.
#[derive(Clone, Default)]
pub struct Chunks<'a> {
    first: Option<&'a [u8]>,
    more: Vec<&'a [u8]>,
}

impl<'a> Chunks<'a> {
    #[inline]
    pub fn push(&mut self, chunk: &'a [u8]) {
        if self.first.is_none() {
            self.first = Some(chunk);
        } else {
            self.more.push(chunk);
        }
    }

    #[inline]
    pub fn one(chunk: &'a [u8]) -> Self {
        Chunks { first: Some(chunk), more: Vec::new() }
    }

    #[inline]
    pub fn is_set(&self) -> bool {
        self.first.is_some()
    }

    /// Calls `f` for every field of every occurrence, in wire order.
    #[inline]
    pub fn each(&self, depth: u32, mut f: impl FnMut(u32, Value<'a>) -> R<()>) -> R<()> {
        if let Some(first) = self.first {
            let mut fields = Fields::new(first);
            while let Some((n, v)) = fields.next(depth)? {
                f(n, v)?;
            }
            for chunk in &self.more {
                let mut fields = Fields::new(chunk);
                while let Some((n, v)) = fields.next(depth)? {
                    f(n, v)?;
                }
            }
        }
        Ok(())
    }
}

#[inline]
pub fn each<'a>(buf: &'a [u8], depth: u32, mut f: impl FnMut(u32, Value<'a>) -> R<()>) -> R<()> {
    let mut fields = Fields::new(buf);
    while let Some((n, v)) = fields.next(depth)? {
        f(n, v)?;
    }
    Ok(())
}

/// Bytes of a string field that `validate` has already checked.
#[inline]
pub fn text(bytes: &[u8]) -> &str {
    // SAFETY: every known string field of the request was checked to be UTF-8 by `validate` first.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

// -- validation against the OTLP schema ------------------------------------------------------------

#[derive(Clone, Copy)]
pub enum Kind {
    Str,
    Msg(Type),
    /// A repeated fixed64/double field: packed (LEN, a multiple of 8 bytes) or one value per field.
    PackedI64,
    /// A repeated varint field: packed (LEN of varints) or one value per field.
    PackedVarint,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Type {
    LogsRequest,
    TraceRequest,
    MetricsRequest,
    ResourceLogs,
    ResourceSpans,
    ResourceMetrics,
    Resource,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
    EntityRef,
    Scope,
    ScopeLogs,
    LogRecord,
    ScopeSpans,
    Span,
    Event,
    Link,
    Status,
    ScopeMetrics,
    Metric,
    Gauge,
    Sum,
    Histogram,
    ExpHistogram,
    Summary,
    NumberPoint,
    HistogramPoint,
    ExpHistogramPoint,
    Buckets,
    SummaryPoint,
    Quantile,
    Exemplar,
}

/// The fields of `ty` whose content needs checking (strings, messages, packed arrays); scalar fields need
/// none: any value of the right wire type is valid, and a wrong wire type makes them unknown fields.
fn checked(ty: Type, field: u32) -> Option<Kind> {
    use Kind::*;
    use Type::*;
    Some(match (ty, field) {
        (LogsRequest, 1) => Msg(ResourceLogs),
        (TraceRequest, 1) => Msg(ResourceSpans),
        (MetricsRequest, 1) => Msg(ResourceMetrics),
        (ResourceLogs, 1) | (ResourceSpans, 1) | (ResourceMetrics, 1) => Msg(Resource),
        (ResourceLogs, 2) => Msg(ScopeLogs),
        (ResourceSpans, 2) => Msg(ScopeSpans),
        (ResourceMetrics, 2) => Msg(ScopeMetrics),
        (ResourceLogs, 3) | (ResourceSpans, 3) | (ResourceMetrics, 3) => Str,
        (Resource, 1) => Msg(KeyValue),
        (Resource, 3) => Msg(EntityRef),
        (KeyValue, 1) => Str,
        (KeyValue, 2) => Msg(AnyValue),
        (AnyValue, 1) => Str,
        (AnyValue, 5) => Msg(ArrayValue),
        (AnyValue, 6) => Msg(KeyValueList),
        (ArrayValue, 1) => Msg(AnyValue),
        (KeyValueList, 1) => Msg(KeyValue),
        (EntityRef, 1..=4) => Str,
        (Scope, 1) | (Scope, 2) => Str,
        (Scope, 3) => Msg(KeyValue),
        (ScopeLogs, 1) | (ScopeSpans, 1) | (ScopeMetrics, 1) => Msg(Scope),
        (ScopeLogs, 2) => Msg(LogRecord),
        (ScopeSpans, 2) => Msg(Span),
        (ScopeMetrics, 2) => Msg(Metric),
        (ScopeLogs, 3) | (ScopeSpans, 3) | (ScopeMetrics, 3) => Str,
        (LogRecord, 3) | (LogRecord, 12) => Str,
        (LogRecord, 5) => Msg(AnyValue),
        (LogRecord, 6) => Msg(KeyValue),
        (Span, 3) | (Span, 5) => Str,
        (Span, 9) => Msg(KeyValue),
        (Span, 11) => Msg(Event),
        (Span, 13) => Msg(Link),
        (Span, 15) => Msg(Status),
        (Event, 2) => Str,
        (Event, 3) => Msg(KeyValue),
        (Link, 3) => Str,
        (Link, 4) => Msg(KeyValue),
        (Status, 2) => Str,
        (Metric, 1..=3) => Str,
        (Metric, 5) => Msg(Gauge),
        (Metric, 7) => Msg(Sum),
        (Metric, 9) => Msg(Histogram),
        (Metric, 10) => Msg(ExpHistogram),
        (Metric, 11) => Msg(Summary),
        (Metric, 12) => Msg(KeyValue),
        (Gauge, 1) | (Sum, 1) => Msg(NumberPoint),
        (Histogram, 1) => Msg(HistogramPoint),
        (ExpHistogram, 1) => Msg(ExpHistogramPoint),
        (Summary, 1) => Msg(SummaryPoint),
        (NumberPoint, 7) => Msg(KeyValue),
        (NumberPoint, 5) => Msg(Exemplar),
        (HistogramPoint, 9) => Msg(KeyValue),
        (HistogramPoint, 6) | (HistogramPoint, 7) => PackedI64,
        (HistogramPoint, 8) => Msg(Exemplar),
        (ExpHistogramPoint, 1) => Msg(KeyValue),
        (ExpHistogramPoint, 8) | (ExpHistogramPoint, 9) => Msg(Buckets),
        (ExpHistogramPoint, 11) => Msg(Exemplar),
        (Buckets, 2) => PackedVarint,
        (SummaryPoint, 7) => Msg(KeyValue),
        (SummaryPoint, 6) => Msg(Quantile),
        (Exemplar, 7) => Msg(KeyValue),
        _ => return None,
    })
}

/// Checks `buf` as a message of type `ty` the way upb parses it; errors name what was wrong.
pub fn validate(buf: &[u8], ty: Type, depth: u32) -> R<()> {
    let mut fields = Fields::new(buf);
    while let Some((field, value)) = fields.next(depth)? {
        let Value::Len(bytes) = value else { continue };
        match checked(ty, field) {
            Some(Kind::Str) => {
                if std::str::from_utf8(bytes).is_err() {
                    return Err(DecodeError("a string field holds invalid UTF-8"));
                }
            }
            Some(Kind::Msg(inner)) => {
                if depth + 1 > MAX_DEPTH {
                    return Err(DecodeError("nested deeper than the depth limit"));
                }
                validate(bytes, inner, depth + 1)?;
            }
            Some(Kind::PackedI64) => {
                if bytes.len() % 8 != 0 {
                    return Err(CORRUPT);
                }
            }
            Some(Kind::PackedVarint) => {
                let mut pos = 0;
                while pos < bytes.len() {
                    varint(bytes, &mut pos)?;
                }
            }
            None => {}
        }
    }
    Ok(())
}

#[inline]
pub fn packed_i64(value: Value<'_>, out: &mut Vec<u64>) {
    match value {
        Value::I64(v) => out.push(v),
        Value::Len(bytes) => {
            for chunk in bytes.chunks_exact(8) {
                out.push(u64::from_le_bytes(chunk.try_into().unwrap()));
            }
        }
        _ => {}
    }
}

#[inline]
pub fn packed_varint(value: Value<'_>, out: &mut Vec<u64>) {
    match value {
        Value::Varint(v) => out.push(v),
        Value::Len(bytes) => {
            let mut pos = 0;
            while pos < bytes.len() {
                match varint(bytes, &mut pos) {
                    Ok(v) => out.push(v),
                    Err(_) => break, // validated already
                }
            }
        }
        _ => {}
    }
}
