//! Text the way the Python processors write it: `repr(float)`, orjson's JSON (floats, string escapes),
//! base64 and hex.

use std::fmt::Write;

/// Shortest round-trip digits of a finite, non-zero |x| and the decimal point position `decpt`
/// (x = 0.d1d2... × 10^decpt), as Python's and orjson's float formatting start from.
fn digits(x: f64) -> (String, i32) {
    let sci = format!("{:e}", x.abs()); // e.g. "1.2345e17", shortest round-trip digits
    let (mantissa, exponent) = sci.split_once('e').unwrap();
    let exponent: i32 = exponent.parse().unwrap();
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    (digits, exponent + 1)
}

fn fixed(out: &mut String, digits: &str, decpt: i32) {
    let n = digits.len() as i32;
    if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..-decpt {
            out.push('0');
        }
        out.push_str(digits);
    } else if decpt >= n {
        out.push_str(digits);
        for _ in 0..decpt - n {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
}

fn scientific(out: &mut String, digits: &str, decpt: i32, pad: bool) {
    out.push_str(&digits[..1]);
    if digits.len() > 1 {
        out.push('.');
        out.push_str(&digits[1..]);
    }
    let e = decpt - 1;
    out.push('e');
    out.push(if e < 0 { '-' } else { '+' });
    if pad {
        let _ = write!(out, "{:02}", e.abs());
    } else {
        let _ = write!(out, "{}", e.abs());
    }
}

/// Python's `repr(x)` (also `str(x)`) for a float.
pub fn py_float(x: f64, out: &mut String) {
    if x.is_nan() {
        out.push_str("nan");
        return;
    }
    if x.is_sign_negative() {
        out.push('-');
    }
    if x.is_infinite() {
        out.push_str("inf");
        return;
    }
    if x == 0.0 {
        out.push_str("0.0");
        return;
    }
    let (d, decpt) = digits(x);
    if decpt <= -4 || decpt > 16 {
        scientific(out, &d, decpt, true);
    } else {
        fixed(out, &d, decpt);
    }
}

/// orjson's serialization of a float: `null` for NaN and infinities.
pub fn json_float(x: f64, out: &mut String) {
    if !x.is_finite() {
        out.push_str("null");
        return;
    }
    if x.is_sign_negative() {
        out.push('-');
    }
    if x == 0.0 {
        out.push_str("0.0");
        return;
    }
    let (d, decpt) = digits(x);
    if decpt <= -5 || decpt > 16 {
        scientific(out, &d, decpt, false);
    } else {
        fixed(out, &d, decpt);
    }
}

/// A JSON string as orjson writes it: `"` and `\` escaped, control characters as \b \t \n \f \r or
/// \u00XX, everything else (DEL and non-ASCII included) as is.
pub fn json_str(s: &str, out: &mut String) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\t' => Some("\\t"),
            b'\r' => Some("\\r"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let _ = write!(out, "\\u{:04x}", b);
            }
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

pub fn base64(data: &[u8], out: &mut String) {
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        out.push(B64[(n >> 18) as usize & 63] as char);
        out.push(B64[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 { B64[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if chunk.len() > 2 { B64[n as usize & 63] as char } else { '=' });
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

pub fn hex(data: &[u8], out: &mut Vec<u8>) {
    for &b in data {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 15) as usize]);
    }
}

pub fn int(x: i64, out: &mut String) {
    let _ = write!(out, "{}", x);
}
