//! ClickHouse's Native format (the HTTP/file variant: no block info, no per-column serialization info):
//! columns written by the transforms, and blocks read back to count, split, take and gather rows.
//!
//! A block is `varuint columns, varuint rows`, then per column its name, its type and its data.
//! Fixed-width values are little-endian; a String is a varuint length and the bytes; an Array or a Map
//! is the cumulative element counts (UInt64 per row) followed by the elements (a Map's keys, then its
//! values). Several blocks concatenated are one valid Native stream: ClickHouse squashes them into one
//! insert block, so a sink can concatenate them without decoding.

use crate::pb;

// -- writing -----------------------------------------------------------------------------------------

thread_local! {
    static OUT_OF_RANGE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// processors/values.py MAX_TIME_NS: the last instant ClickHouse's DateTime holds (2106-02-07 06:28:15 UTC).
pub const MAX_TIME_NS: u64 = (u32::MAX as u64) * 1_000_000_000 + 999_999_999;

/// Unix nanoseconds as DateTime64(9) ticks. A later time is an item the processors refuse (item by item,
/// with the reason): the request is flagged and handed to the Python path (`take_out_of_range`).
#[inline]
pub fn ticks(ns: u64) -> i64 {
    if ns > MAX_TIME_NS {
        flag_for_python();
    }
    ns as i64
}

/// Marks the request being converted as one for the Python path (an item it would refuse).
#[inline]
pub fn flag_for_python() {
    OUT_OF_RANGE.with(|f| f.set(true));
}

/// An id's length as the processors check it (`hex_id`): `size` bytes, or none when `optional`.
#[inline]
pub fn check_id(raw: &[u8], size: usize, optional: bool) {
    if raw.len() != size && (!raw.is_empty() || !optional) {
        flag_for_python();
    }
}

/// Whether a time past Int64 was written since the last call (and clears the flag).
pub fn take_out_of_range() -> bool {
    OUT_OF_RANGE.with(|f| f.replace(false))
}

pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

pub fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A column being built, one row at a time.
pub enum Col {
    /// Fixed-width values as their little-endian bytes.
    Fixed { width: usize, data: Vec<u8> },
    /// Strings: their bytes back to back, and where each ends.
    Str { data: Vec<u8>, ends: Vec<usize> },
    /// Arrays: cumulative element counts, and the elements.
    Arr { ends: Vec<u64>, inner: Box<Col> },
    /// Maps: cumulative entry counts, the keys and the values.
    Map { ends: Vec<u64>, keys: Box<Col>, values: Box<Col> },
}

impl Col {
    pub fn fixed(width: usize) -> Col {
        Col::Fixed { width, data: Vec::new() }
    }
    pub fn string() -> Col {
        Col::Str { data: Vec::new(), ends: Vec::new() }
    }
    pub fn map() -> Col {
        Col::Map { ends: Vec::new(), keys: Box::new(Col::string()), values: Box::new(Col::string()) }
    }
    pub fn array(inner: Col) -> Col {
        Col::Arr { ends: Vec::new(), inner: Box::new(inner) }
    }

    #[inline]
    pub fn push_str(&mut self, s: &[u8]) {
        if let Col::Str { data, ends } = self {
            data.extend_from_slice(s);
            ends.push(data.len());
        } else {
            unreachable!("not a String column")
        }
    }
    #[inline]
    pub fn push_u8(&mut self, v: u8) {
        self.fixed_bytes(&[v]);
    }
    #[inline]
    pub fn push_u32(&mut self, v: u32) {
        self.fixed_bytes(&v.to_le_bytes());
    }
    #[inline]
    pub fn push_i32(&mut self, v: i32) {
        self.fixed_bytes(&v.to_le_bytes());
    }
    #[inline]
    pub fn push_u64(&mut self, v: u64) {
        self.fixed_bytes(&v.to_le_bytes());
    }
    #[inline]
    pub fn push_i64(&mut self, v: i64) {
        self.fixed_bytes(&v.to_le_bytes());
    }
    #[inline]
    pub fn push_f64(&mut self, v: f64) {
        self.fixed_bytes(&v.to_le_bytes());
    }
    #[inline]
    fn fixed_bytes(&mut self, bytes: &[u8]) {
        if let Col::Fixed { data, .. } = self {
            data.extend_from_slice(bytes);
        } else {
            unreachable!("not a fixed-width column")
        }
    }

    /// Ends the current row of an Array or Map column (its elements were pushed to `inner`/keys/values).
    #[inline]
    pub fn end_row(&mut self) {
        match self {
            Col::Arr { ends, inner } => ends.push(inner.len() as u64),
            Col::Map { ends, keys, .. } => ends.push(keys.len() as u64),
            _ => unreachable!("not an Array or Map column"),
        }
    }

    pub fn inner(&mut self) -> &mut Col {
        match self {
            Col::Arr { inner, .. } => inner,
            _ => unreachable!("not an Array column"),
        }
    }

    /// Appends one map row from (key, value) pairs.
    #[inline]
    pub fn push_map<'s>(&mut self, entries: impl IntoIterator<Item = (&'s [u8], &'s [u8])>) {
        if let Col::Map { ends, keys, values } = self {
            for (k, v) in entries {
                keys.push_str(k);
                values.push_str(v);
            }
            ends.push(keys.len() as u64);
        } else {
            unreachable!("not a Map column")
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Col::Fixed { width, data } => data.len() / width,
            Col::Str { ends, .. } => ends.len(),
            Col::Arr { ends, .. } | Col::Map { ends, .. } => ends.len(),
        }
    }

    fn start(ends_prev: &[u64], a: usize) -> u64 {
        if a == 0 { 0 } else { ends_prev[a - 1] }
    }

    /// Bytes that rows a..b take when written.
    pub fn size(&self, a: usize, b: usize) -> usize {
        if a >= b {
            return 0;
        }
        match self {
            Col::Fixed { width, .. } => (b - a) * width,
            Col::Str { ends, .. } => {
                let mut total = 0;
                let mut prev = if a == 0 { 0 } else { ends[a - 1] };
                for &end in &ends[a..b] {
                    let len = end - prev;
                    total += len + varint_len(len as u64);
                    prev = end;
                }
                total
            }
            Col::Arr { ends, inner } => {
                (b - a) * 8 + inner.size(Self::start(ends, a) as usize, ends[b - 1] as usize)
            }
            Col::Map { ends, keys, values } => {
                let (s, e) = (Self::start(ends, a) as usize, ends[b - 1] as usize);
                (b - a) * 8 + keys.size(s, e) + values.size(s, e)
            }
        }
    }

    /// Writes rows a..b.
    pub fn write(&self, a: usize, b: usize, out: &mut Vec<u8>) {
        if a >= b {
            return;
        }
        match self {
            Col::Fixed { width, data } => out.extend_from_slice(&data[a * width..b * width]),
            Col::Str { data, ends } => {
                let mut prev = if a == 0 { 0 } else { ends[a - 1] };
                for &end in &ends[a..b] {
                    put_str(out, &data[prev..end]);
                    prev = end;
                }
            }
            Col::Arr { ends, inner } => {
                let base = Self::start(ends, a);
                for &end in &ends[a..b] {
                    out.extend_from_slice(&(end - base).to_le_bytes());
                }
                inner.write(base as usize, ends[b - 1] as usize, out);
            }
            Col::Map { ends, keys, values } => {
                let base = Self::start(ends, a);
                for &end in &ends[a..b] {
                    out.extend_from_slice(&(end - base).to_le_bytes());
                }
                let (s, e) = (base as usize, ends[b - 1] as usize);
                keys.write(s, e, out);
                values.write(s, e, out);
            }
        }
    }
}

/// Named, typed columns of one table, all of the same length.
pub struct Columns {
    pub names: Vec<(&'static str, &'static str)>,
    pub cols: Vec<Col>,
}

impl Columns {
    pub fn new(spec: &[(&'static str, &'static str)]) -> Columns {
        Columns { names: spec.to_vec(), cols: spec.iter().map(|(_, ty)| new_col(ty)).collect() }
    }

    pub fn rows(&self) -> usize {
        self.cols.first().map_or(0, |c| c.len())
    }

    pub fn size(&self, a: usize, b: usize) -> usize {
        let header: usize = self.names.iter().map(|(n, t)| n.len() + t.len() + 2).sum();
        header + 20 + self.cols.iter().map(|c| c.size(a, b)).sum::<usize>()
    }

    pub fn write(&self, a: usize, b: usize, out: &mut Vec<u8>) {
        put_varint(out, self.cols.len() as u64);
        put_varint(out, (b - a) as u64);
        for ((name, ty), col) in self.names.iter().zip(&self.cols) {
            put_str(out, name.as_bytes());
            put_str(out, ty.as_bytes());
            col.write(a, b, out);
        }
    }

    /// The rows as blocks of at most `limit` bytes, halving ranges that are too big (the same rule as
    /// the Python encoder). A single row over the limit is an error naming its size.
    pub fn blocks(&self, limit: usize) -> Result<Vec<(usize, Vec<u8>)>, usize> {
        let mut out = Vec::new();
        self.blocks_into(0, self.rows(), limit, &mut out)?;
        Ok(out)
    }

    fn blocks_into(&self, a: usize, b: usize, limit: usize, out: &mut Vec<(usize, Vec<u8>)>) -> Result<(), usize> {
        let size = self.size(a, b);
        if size <= limit {
            let mut block = Vec::with_capacity(size);
            self.write(a, b, &mut block);
            out.push((b - a, block));
            return Ok(());
        }
        if b - a < 2 {
            return Err(size);
        }
        let middle = a + (b - a) / 2;
        self.blocks_into(a, middle, limit, out)?;
        self.blocks_into(middle, b, limit, out)
    }
}

fn new_col(ty: &str) -> Col {
    match parse_type(ty).expect("a known column type") {
        Ty::Fixed(w) | Ty::DateTime64(w) => Col::fixed(w),
        Ty::Str => Col::string(),
        Ty::Arr(inner) => Col::array(new_col_ty(&inner)),
        Ty::Map(_, _) => Col::map(),
    }
}

fn new_col_ty(ty: &Ty) -> Col {
    match ty {
        Ty::Fixed(w) | Ty::DateTime64(w) => Col::fixed(*w),
        Ty::Str => Col::string(),
        Ty::Arr(inner) => Col::array(new_col_ty(inner)),
        Ty::Map(_, _) => Col::map(),
    }
}

// -- types -------------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    Fixed(usize),
    DateTime64(usize),
    Str,
    Arr(Box<Ty>),
    Map(Box<Ty>, Box<Ty>),
}

/// The kinds of value a fixed-width column holds, for decoding to Python.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bool,
    DateTime64,
    DateTime,
}

pub fn scalar(ty: &str) -> Option<Scalar> {
    Some(match ty {
        "UInt8" => Scalar::U8,
        "UInt16" => Scalar::U16,
        "UInt32" => Scalar::U32,
        "UInt64" => Scalar::U64,
        "Int8" => Scalar::I8,
        "Int16" => Scalar::I16,
        "Int32" => Scalar::I32,
        "Int64" => Scalar::I64,
        "Float32" => Scalar::F32,
        "Float64" => Scalar::F64,
        "Bool" => Scalar::Bool,
        "DateTime" => Scalar::DateTime,
        t if t.starts_with("DateTime64(") => Scalar::DateTime64,
        _ => return None,
    })
}

pub fn width(s: Scalar) -> usize {
    match s {
        Scalar::U8 | Scalar::I8 | Scalar::Bool => 1,
        Scalar::U16 | Scalar::I16 => 2,
        Scalar::U32 | Scalar::I32 | Scalar::F32 | Scalar::DateTime => 4,
        _ => 8,
    }
}

pub fn parse_type(ty: &str) -> Option<Ty> {
    let ty = ty.trim();
    if ty == "String" {
        return Some(Ty::Str);
    }
    if let Some(inner) = ty.strip_prefix("Array(").and_then(|t| t.strip_suffix(')')) {
        return Some(Ty::Arr(Box::new(parse_type(inner)?)));
    }
    if let Some(inner) = ty.strip_prefix("Map(").and_then(|t| t.strip_suffix(')')) {
        let (k, v) = split_top_comma(inner)?;
        return Some(Ty::Map(Box::new(parse_type(k)?), Box::new(parse_type(v)?)));
    }
    let s = scalar(ty)?;
    Some(if s == Scalar::DateTime64 { Ty::DateTime64(8) } else { Ty::Fixed(width(s)) })
}

fn split_top_comma(s: &str) -> Option<(&str, &str)> {
    let mut depth = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => return Some((&s[..i], &s[i + 1..])),
            _ => {}
        }
    }
    None
}

// -- reading -----------------------------------------------------------------------------------------

#[derive(Debug)]
pub struct BlockError(pub String);

type BR<T> = Result<T, BlockError>;

fn err<T>(what: &str) -> BR<T> {
    Err(BlockError(format!("not a Native block: {what}")))
}

/// Where one column's values lie in a block's bytes (absolute offsets), enough to copy any rows.
#[derive(Clone, Debug)]
pub enum View {
    Fixed { width: usize, start: usize },
    /// `starts[i]` is where value i (its varuint length) begins; `starts[n]` is the column's end.
    Str { starts: Vec<u32> },
    /// Cumulative element counts at `offsets` (UInt64 each), then the elements.
    Arr { offsets: usize, inner: Box<View> },
    Map { offsets: usize, keys: Box<View>, values: Box<View> },
}

pub struct Column {
    pub name: String,
    pub ty: String,
    pub view: View,
}

pub struct Parsed {
    pub rows: usize,
    pub columns: Vec<Column>,
}

#[inline]
fn read_u64(buf: &[u8], pos: usize) -> u64 {
    u64::from_le_bytes(buf[pos..pos + 8].try_into().unwrap())
}

fn read_varint(buf: &[u8], pos: &mut usize) -> BR<u64> {
    pb::varint(buf, pos).map_err(|_| BlockError("not a Native block: a truncated length".into()))
}

fn read_string<'a>(buf: &'a [u8], pos: &mut usize) -> BR<&'a [u8]> {
    let len = read_varint(buf, pos)? as usize;
    if len > buf.len() - *pos {
        return err("a string runs past the end");
    }
    let s = &buf[*pos..*pos + len];
    *pos += len;
    Ok(s)
}

/// The values of `n` elements of type `ty` from `pos`, advancing `pos` past them.
fn view(buf: &[u8], ty: &Ty, n: usize, pos: &mut usize) -> BR<View> {
    match ty {
        Ty::Fixed(w) | Ty::DateTime64(w) => {
            let start = *pos;
            let size = n.checked_mul(*w).ok_or(BlockError("not a Native block: too many rows".into()))?;
            if size > buf.len() - start {
                return err("a column runs past the end");
            }
            *pos += size;
            Ok(View::Fixed { width: *w, start })
        }
        Ty::Str => {
            if buf.len() > u32::MAX as usize {
                return err("a block over 4 GiB");
            }
            let mut starts = Vec::with_capacity(n + 1);
            for _ in 0..n {
                starts.push(*pos as u32);
                read_string(buf, pos)?;
            }
            starts.push(*pos as u32);
            Ok(View::Str { starts })
        }
        Ty::Arr(inner) => {
            let offsets = *pos;
            let elements = counts(buf, n, pos)?;
            Ok(View::Arr { offsets, inner: Box::new(view(buf, inner, elements, pos)?) })
        }
        Ty::Map(k, v) => {
            let offsets = *pos;
            let entries = counts(buf, n, pos)?;
            let keys = view(buf, k, entries, pos)?;
            let values = view(buf, v, entries, pos)?;
            Ok(View::Map { offsets, keys: Box::new(keys), values: Box::new(values) })
        }
    }
}

/// Checks `n` cumulative counts from `pos` (never decreasing); returns the last.
fn counts(buf: &[u8], n: usize, pos: &mut usize) -> BR<usize> {
    if n.checked_mul(8).map_or(true, |s| s > buf.len() - *pos) {
        return err("array offsets run past the end");
    }
    let mut prev = 0u64;
    for i in 0..n {
        let v = read_u64(buf, *pos + 8 * i);
        if v < prev || v > (buf.len() as u64) * 8 + 8 {
            return err("array offsets out of order");
        }
        prev = v;
    }
    *pos += n * 8;
    Ok(prev as usize)
}

/// Advances `pos` past `n` elements of type `ty`, checking they are there.
fn skip(buf: &[u8], ty: &Ty, n: usize, pos: &mut usize) -> BR<()> {
    match ty {
        Ty::Fixed(w) | Ty::DateTime64(w) => {
            let size = n.checked_mul(*w).ok_or(BlockError("not a Native block: too many rows".into()))?;
            if size > buf.len() - *pos {
                return err("a column runs past the end");
            }
            *pos += size;
        }
        Ty::Str => {
            for _ in 0..n {
                read_string(buf, pos)?;
            }
        }
        Ty::Arr(inner) => {
            let elements = counts(buf, n, pos)?;
            skip(buf, inner, elements, pos)?;
        }
        Ty::Map(k, v) => {
            let entries = counts(buf, n, pos)?;
            skip(buf, k, entries, pos)?;
            skip(buf, v, entries, pos)?;
        }
    }
    Ok(())
}

/// Where a column's data lies, found without indexing its values.
pub struct ColumnAt {
    pub name: String,
    pub ty: String,
    pub parsed: Ty,
    pub start: usize,
}

pub struct Layout {
    pub rows: usize,
    pub columns: Vec<ColumnAt>,
    pub end: usize,
}

/// The columns of the block at `pos` and where each one's data starts (checked to the end).
pub fn layout(buf: &[u8], mut pos: usize) -> BR<Layout> {
    let ncols = read_varint(buf, &mut pos)? as usize;
    let rows = read_varint(buf, &mut pos)? as usize;
    if ncols > 100_000 {
        return err("too many columns");
    }
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let name = String::from_utf8(read_string(buf, &mut pos)?.to_vec()).map_err(|_| BlockError("not a Native block: a column name is not UTF-8".into()))?;
        let ty = String::from_utf8(read_string(buf, &mut pos)?.to_vec()).map_err(|_| BlockError("not a Native block: a type is not UTF-8".into()))?;
        let parsed = parse_type(&ty).ok_or_else(|| BlockError(format!("unsupported Native column type {ty} (column {name})")))?;
        let start = pos;
        if rows > 0 {
            skip(buf, &parsed, rows, &mut pos)?;
        }
        columns.push(ColumnAt { name, ty, parsed, start });
    }
    Ok(Layout { rows, columns, end: pos })
}

/// The index of a column found by `layout`.
pub fn view_at(buf: &[u8], col: &ColumnAt, rows: usize) -> View {
    let mut pos = col.start;
    if rows == 0 {
        return empty_view(&col.parsed, pos);
    }
    view(buf, &col.parsed, rows, &mut pos).expect("checked by layout")
}

/// Parses one block at `pos` (a stream may hold several), advancing `pos` past it.
pub fn parse_one(buf: &[u8], pos: &mut usize) -> BR<Parsed> {
    let ncols = read_varint(buf, pos)? as usize;
    let rows = read_varint(buf, pos)? as usize;
    if ncols > 100_000 {
        return err("too many columns");
    }
    let mut columns = Vec::with_capacity(ncols);
    for _ in 0..ncols {
        let name = String::from_utf8(read_string(buf, pos)?.to_vec()).map_err(|_| BlockError("not a Native block: a column name is not UTF-8".into()))?;
        let ty = String::from_utf8(read_string(buf, pos)?.to_vec()).map_err(|_| BlockError("not a Native block: a type is not UTF-8".into()))?;
        let parsed = parse_type(&ty).ok_or_else(|| BlockError(format!("unsupported Native column type {ty} (column {name})")))?;
        let v = if rows == 0 { empty_view(&parsed, *pos) } else { view(buf, &parsed, rows, pos)? };
        columns.push(Column { name, ty, view: v });
    }
    Ok(Parsed { rows, columns })
}

fn empty_view(ty: &Ty, pos: usize) -> View {
    match ty {
        Ty::Fixed(w) | Ty::DateTime64(w) => View::Fixed { width: *w, start: pos },
        Ty::Str => View::Str { starts: vec![pos as u32] },
        Ty::Arr(inner) => View::Arr { offsets: pos, inner: Box::new(empty_view(inner, pos)) },
        Ty::Map(k, v) => View::Map { offsets: pos, keys: Box::new(empty_view(k, pos)), values: Box::new(empty_view(v, pos)) },
    }
}

/// Every block of a stream.
pub fn parse_all(buf: &[u8]) -> BR<Vec<Parsed>> {
    let mut pos = 0;
    let mut out = Vec::new();
    while pos < buf.len() {
        out.push(parse_one(buf, &mut pos)?);
    }
    Ok(out)
}

/// The element range [a, b) of `view` that rows [ra, rb) of an Array/Map at `offsets` cover.
#[inline]
pub fn elements(buf: &[u8], offsets: usize, ra: usize, rb: usize) -> (usize, usize) {
    let a = if ra == 0 { 0 } else { read_u64(buf, offsets + 8 * (ra - 1)) as usize };
    let b = if rb == 0 { 0 } else { read_u64(buf, offsets + 8 * (rb - 1)) as usize };
    (a, b)
}

/// One contiguous run of elements of a column of some block.
pub struct Part<'a> {
    pub buf: &'a [u8],
    pub view: &'a View,
    pub a: usize,
    pub b: usize,
}

/// Writes the given element runs (all of one column type) as one column.
pub fn write_parts(parts: &[Part<'_>], out: &mut Vec<u8>) {
    let Some(first) = parts.first() else { return };
    match first.view {
        View::Fixed { width, .. } => {
            for p in parts {
                if let View::Fixed { start, .. } = p.view {
                    out.extend_from_slice(&p.buf[start + p.a * width..start + p.b * width]);
                }
            }
        }
        View::Str { .. } => {
            for p in parts {
                if let View::Str { starts } = p.view {
                    out.extend_from_slice(&p.buf[starts[p.a] as usize..starts[p.b] as usize]);
                }
            }
        }
        View::Arr { .. } | View::Map { .. } => {
            let mut total = 0u64;
            let mut nested: Vec<(usize, usize)> = Vec::with_capacity(parts.len());
            for p in parts {
                let offsets = match p.view {
                    View::Arr { offsets, .. } | View::Map { offsets, .. } => *offsets,
                    _ => unreachable!(),
                };
                let mut prev = if p.a == 0 { 0 } else { read_u64(p.buf, offsets + 8 * (p.a - 1)) };
                for i in p.a..p.b {
                    let end = read_u64(p.buf, offsets + 8 * i);
                    total += end - prev;
                    prev = end;
                    out.extend_from_slice(&total.to_le_bytes());
                }
                nested.push(elements(p.buf, offsets, p.a, p.b));
            }
            let sub = |pick: &dyn Fn(&View) -> &View| -> Vec<Part<'_>> {
                parts
                    .iter()
                    .zip(&nested)
                    .map(|(p, &(a, b))| Part { buf: p.buf, view: pick(p.view), a, b })
                    .collect()
            };
            match first.view {
                View::Arr { .. } => {
                    let inner = sub(&|v| match v {
                        View::Arr { inner, .. } => inner,
                        _ => unreachable!(),
                    });
                    write_parts(&inner, out);
                }
                _ => {
                    let keys = sub(&|v| match v {
                        View::Map { keys, .. } => keys,
                        _ => unreachable!(),
                    });
                    write_parts(&keys, out);
                    let values = sub(&|v| match v {
                        View::Map { values, .. } => values,
                        _ => unreachable!(),
                    });
                    write_parts(&values, out);
                }
            }
        }
    }
}

/// A new block of the rows `runs` ((block bytes, parsed block, row range) in order) for the columns
/// named in `names` (every column of the first block when None). Columns must agree across blocks.
pub fn gather(runs: &[(&[u8], &Parsed, usize, usize)], names: Option<&[String]>) -> BR<Vec<u8>> {
    let mut out = Vec::new();
    let Some(&(_, first, _, _)) = runs.first() else { return Ok(out) };
    let wanted: Vec<(String, String)> = match names {
        Some(names) => names
            .iter()
            .map(|n| {
                first.columns.iter().find(|c| &c.name == n).map(|c| (c.name.clone(), c.ty.clone()))
                    .ok_or_else(|| BlockError(format!("no column {n} in the block")))
            })
            .collect::<BR<_>>()?,
        None => first.columns.iter().map(|c| (c.name.clone(), c.ty.clone())).collect(),
    };
    let rows: usize = runs.iter().map(|r| r.3 - r.2).sum();
    put_varint(&mut out, wanted.len() as u64);
    put_varint(&mut out, rows as u64);
    for (name, ty) in &wanted {
        put_str(&mut out, name.as_bytes());
        put_str(&mut out, ty.as_bytes());
        let mut parts = Vec::with_capacity(runs.len());
        for &(buf, parsed, a, b) in runs {
            let col = parsed.columns.iter().find(|c| &c.name == name)
                .ok_or_else(|| BlockError(format!("no column {name} in one of the blocks")))?;
            if &col.ty != ty {
                return Err(BlockError(format!("column {name} is {} in one block and {ty} in another", col.ty)));
            }
            if a < b {
                parts.push(Part { buf, view: &col.view, a, b });
            }
        }
        write_parts(&parts, &mut out);
    }
    Ok(out)
}
