//! A tiny JSON writer, so the static `probe` binary needs no serde.
//!
//! Only output is needed (probe never parses JSON), so this is a string escaper plus
//! small object/array builders that append to a `String`.

use std::fmt::Write as _;

/// Appends `s` to `out` as a quoted JSON string, escaping what RFC 8259 requires
/// (quote, backslash, control characters) so any hostname, path or env value is safe.
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Returns `s` as a quoted JSON string (convenience wrapper around [`escape_into`]).
#[cfg(test)]
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    escape_into(&mut out, s);
    out
}

/// Formats a float as a JSON number with 3 decimals; NaN/infinity become `null`
/// because JSON has no representation for them.
pub fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "null".to_string()
    }
}

/// Builds one JSON object field by field, in insertion order, so output is stable.
#[derive(Default)]
pub struct Object {
    buf: String,
    fields: usize,
}

impl Object {
    /// Starts an empty object.
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, k: &str) -> &mut String {
        self.buf.push(if self.fields == 0 { '{' } else { ',' });
        self.fields += 1;
        escape_into(&mut self.buf, k);
        self.buf.push(':');
        &mut self.buf
    }

    /// Adds a field whose value is already valid JSON text (nested object, array, number).
    pub fn raw(&mut self, k: &str, json: &str) -> &mut Self {
        self.key(k).push_str(json);
        self
    }

    /// Adds a string field.
    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        let buf = self.key(k);
        escape_into(buf, v);
        self
    }

    /// Adds an unsigned integer field.
    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.raw(k, &v.to_string())
    }

    /// Adds a float field (3 decimals, `null` if not finite).
    pub fn f64(&mut self, k: &str, v: f64) -> &mut Self {
        self.raw(k, &float(v))
    }

    /// Adds a boolean field.
    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.raw(k, if v { "true" } else { "false" })
    }

    /// Adds a string field, or `null` when the value could not be obtained.
    pub fn opt_str(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.str(k, s),
            None => self.raw(k, "null"),
        }
    }

    /// Adds an unsigned integer field, or `null` when the value could not be obtained.
    pub fn opt_u64(&mut self, k: &str, v: Option<u64>) -> &mut Self {
        match v {
            Some(n) => self.u64(k, n),
            None => self.raw(k, "null"),
        }
    }

    /// Adds a field holding already-rendered JSON, or `null`.
    pub fn opt_raw(&mut self, k: &str, v: Option<&str>) -> &mut Self {
        self.raw(k, v.unwrap_or("null"))
    }

    /// Returns the finished object text.
    pub fn finish(&mut self) -> String {
        if self.fields == 0 {
            return "{}".to_string();
        }
        let mut s = std::mem::take(&mut self.buf);
        s.push('}');
        self.fields = 0;
        s
    }
}

/// Renders a list of strings as a JSON array.
pub fn str_array<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::from("[");
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        escape_into(&mut out, s.as_ref());
    }
    out.push(']');
    out
}

/// Renders a list of unsigned integers as a JSON array.
pub fn u64_array(items: &[u64]) -> String {
    let mut out = String::from("[");
    for (i, n) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "{n}");
    }
    out.push(']');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_specials() {
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(quote("l1\nl2\t\r"), r#""l1\nl2\t\r""#);
        assert_eq!(quote("\u{1}\u{1f}\u{7f}"), r#""\u0001\u001f\u007f""#);
        assert_eq!(quote("é✓/"), "\"é✓/\"");
    }

    #[test]
    fn every_ascii_char_round_trips_through_serde() {
        let all: String = (0u8..=127).map(char::from).chain("ü€😀".chars()).collect();
        let back: String = serde_json::from_str(&quote(&all)).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn object_builder_is_valid_json() {
        let inner = Object::new().u64("n", 3).finish();
        let text = Object::new()
            .str("s", "x\"y")
            .u64("u", u64::MAX)
            .f64("f", 1.5)
            .f64("nan", f64::NAN)
            .bool("b", true)
            .opt_str("none", None)
            .opt_u64("some", Some(4))
            .raw("obj", &inner)
            .raw("arr", &str_array(&["a", "b"]))
            .raw("nums", &u64_array(&[1, 2]))
            .raw("empty", &Object::new().finish())
            .finish();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["s"], "x\"y");
        assert_eq!(v["u"].as_u64(), Some(u64::MAX));
        assert_eq!(v["f"], 1.5);
        assert!(v["nan"].is_null());
        assert_eq!(v["b"], true);
        assert!(v["none"].is_null());
        assert_eq!(v["some"], 4);
        assert_eq!(v["obj"]["n"], 3);
        assert_eq!(v["arr"][1], "b");
        assert_eq!(v["nums"][1], 2);
        assert!(v["empty"].as_object().unwrap().is_empty());
        assert_eq!(str_array::<&str>(&[]), "[]");
    }
}
