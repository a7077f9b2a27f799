//! Severity inference as processors/severity.py does it. Keyword search in free text is done here for
//! ASCII text; text with other characters goes back to the Python function, whose regular expression
//! has Unicode word boundaries and case folding this module does not repeat.

use crate::values::{Dict, Py};

pub const RANGES: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];

pub type Level = (&'static str, u8);

const TRACE: Level = ("TRACE", 1);
const DEBUG: Level = ("DEBUG", 5);
const INFO: Level = ("INFO", 9);
const WARN: Level = ("WARN", 13);
const ERROR: Level = ("ERROR", 17);
const FATAL: Level = ("FATAL", 21);

pub fn from_number(number: i64) -> &'static str {
    if (1..=24).contains(&number) {
        RANGES[((number - 1) / 4) as usize]
    } else {
        ""
    }
}

fn word(w: &str) -> Option<Level> {
    Some(match w {
        "trace" => TRACE,
        "debug" => DEBUG,
        "info" | "information" | "notice" => INFO,
        "warn" | "warning" => WARN,
        "error" | "err" => ERROR,
        "fatal" | "critical" | "crit" | "panic" | "emergency" | "emerg" | "alert" => FATAL,
        _ => return None,
    })
}

/// Python's `str.isspace()` for one character.
pub fn py_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0b' | '\x0c' | '\r' | '\x1c'..='\x1f' | ' ' | '\u{85}' | '\u{a0}' | '\u{1680}'
        | '\u{2000}'..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}')
}

/// `from_level(value)`: a level field's value as (text, number).
pub fn from_level(value: &Py<'_>, text_out: &mut String) -> Option<(String, i64)> {
    let _ = text_out;
    match value {
        Py::Bool(_) => None,
        Py::Int(i) => {
            let numeric = match *i {
                10 => Some(TRACE),
                20 => Some(DEBUG),
                30 => Some(INFO),
                40 => Some(WARN),
                50 => Some(ERROR),
                60 => Some(FATAL),
                _ => None,
            };
            if let Some((t, n)) = numeric {
                return Some((t.to_string(), n as i64));
            }
            if (1..=24).contains(i) {
                Some((from_number(*i as i64).to_string(), *i as i64))
            } else {
                None
            }
        }
        Py::Str(s) => {
            // `value.strip().lower()` can only equal one of the (ASCII) words if the stripped text is
            // ASCII: no other character lowercases to an ASCII letter these words use.
            let stripped = s.trim_matches(py_space);
            if !stripped.is_ascii() {
                return None;
            }
            word(&stripped.to_ascii_lowercase()).map(|(t, n)| (t.to_string(), n as i64))
        }
        _ => None,
    }
}

pub const LEVEL_FIELDS: [&str; 8] =
    ["level", "severity", "log.level", "loglevel", "lvl", "severity_text", "severityText", "levelname"];

pub fn from_fields(fields: &Dict<'_, Py<'_>>) -> Option<(String, i64)> {
    let mut scratch = String::new();
    for name in LEVEL_FIELDS {
        if let Some(value) = fields.get(name) {
            if let Some(found) = from_level(value, &mut scratch) {
                return Some(found);
            }
        }
    }
    None
}

/// The answer of `from_text` for ASCII text: Some(level) or Some(None) when no keyword is in it; None
/// when the text is not ASCII (the caller asks Python).
pub fn from_ascii_text(text: &str) -> Option<Option<Level>> {
    let b = text.as_bytes();
    if !b.is_ascii() {
        return None;
    }
    let mut best: i32 = -1;
    let mut i = 0;
    while i < b.len() {
        if !is_word(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && is_word(b[i]) {
            i += 1;
        }
        let w = &b[start..i];
        if w.len() >= 4 && w.len() <= 7 {
            let rank = match lower(w).as_slice() {
                b"trace" => 0,
                b"debug" => 1,
                b"info" => 2,
                b"warn" | b"warning" => 3,
                b"error" => 5,
                b"fatal" => 6,
                _ => -1,
            };
            if rank > best {
                best = rank;
            }
        }
    }
    Some(match best {
        -1 => None,
        0 => Some(TRACE),
        1 => Some(DEBUG),
        2 => Some(INFO),
        3 => Some(WARN),
        5 => Some(ERROR),
        _ => Some(FATAL),
    })
}

#[inline]
fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn lower(w: &[u8]) -> Vec<u8> {
    w.iter().map(|c| c.to_ascii_lowercase()).collect()
}
