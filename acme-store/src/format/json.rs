//! An order-preserving JSON value with a Go-compatible reader.
//!
//! `serde_json::Value` sorts object keys (unless a workspace-wide feature is switched on), and it
//! forgets the exact text of numbers. Round-tripping a Traefik file byte for byte needs both, so
//! the few dozen lines of a JSON parser live here instead. The parser reports errors with a
//! 1-based line and column so a corrupt `acme.json` can be pinpointed.

use std::fmt;

/// A JSON value that keeps object key order and the exact text of numbers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, kept as its source text (already validated as a JSON number).
    Number(String),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; key order is kept and duplicate keys are allowed.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// A short name of the value's JSON type, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }

    /// The members if this is an object.
    pub fn as_object(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    /// The text if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }
}

/// A syntax error with its 1-based position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

/// Parses one JSON document (surrounding whitespace allowed).
pub fn parse(text: &str) -> Result<Value, SyntaxError> {
    let mut p = Parser {
        src: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    p.skip_ws();
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.src.len() {
        return Err(p.error("unexpected data after the top-level value"));
    }
    Ok(v)
}

/// Nesting limit: deeper documents are refused instead of overflowing the stack.
const MAX_DEPTH: usize = 512;

struct Parser<'a> {
    src: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> SyntaxError {
        let pos = self.pos.min(self.src.len());
        let before = &self.text[..floor_char_boundary(self.text, pos)];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        SyntaxError {
            line,
            column,
            message: message.to_owned(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.src.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.src.get(self.pos).copied()
    }

    fn expect_lit(&mut self, lit: &str, v: Value) -> Result<Value, SyntaxError> {
        if self.src[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            Ok(v)
        } else {
            Err(self.error("invalid literal"))
        }
    }

    fn value(&mut self) -> Result<Value, SyntaxError> {
        match self.peek() {
            None => Err(self.error("unexpected end of input")),
            Some(b'n') => self.expect_lit("null", Value::Null),
            Some(b't') => self.expect_lit("true", Value::Bool(true)),
            Some(b'f') => self.expect_lit("false", Value::Bool(false)),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'[') => self.nested(Self::array),
            Some(b'{') => self.nested(Self::object),
            Some(_) => Err(self.error("expected a JSON value")),
        }
    }

    fn nested(
        &mut self,
        f: fn(&mut Self) -> Result<Value, SyntaxError>,
    ) -> Result<Value, SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn array(&mut self) -> Result<Value, SyntaxError> {
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']' in array")),
            }
        }
    }

    fn object(&mut self) -> Result<Value, SyntaxError> {
        self.pos += 1;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a string key in object"));
            }
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let v = self.value()?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}' in object")),
            }
        }
    }

    fn number(&mut self) -> Result<Value, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number: expected a digit after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(self.error("invalid number: expected a digit in the exponent"));
            }
            self.digits();
        }
        Ok(Value::Number(self.text[start..self.pos].to_owned()))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let Some(h) = self.src.get(self.pos..self.pos + 4) else {
            return Err(self.error("truncated \\u escape"));
        };
        let s = std::str::from_utf8(h).map_err(|_| self.error("invalid \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.error("invalid \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    /// Parses a string; like Go, a lone surrogate escape becomes U+FFFD.
    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let start = self.pos;
            while let Some(&b) = self.src.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated escape"));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let first = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&first) {
                                if self.src[self.pos..].starts_with(b"\\u") {
                                    let save = self.pos;
                                    self.pos += 2;
                                    let second = self.hex4()?;
                                    if (0xDC00..0xE000).contains(&second) {
                                        char::from_u32(
                                            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00),
                                        )
                                    } else {
                                        self.pos = save;
                                        None
                                    }
                                } else {
                                    None
                                }
                            } else {
                                char::from_u32(first)
                            };
                            out.push(c.unwrap_or('\u{FFFD}'));
                        }
                        _ => {
                            self.pos -= 1;
                            return Err(self.error("invalid escape in string"));
                        }
                    }
                }
                Some(_) => return Err(self.error("control character in string")),
            }
        }
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Writes `v` exactly as Go's `json.MarshalIndent(v, "", "  ")` would (HTML escaping on).
pub fn write_go(v: &Value, out: &mut String) {
    write_value(v, out, 0);
}

fn indent(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Writes `v` as a nested value at indentation `depth` (Go's MarshalIndent layout).
pub(crate) fn write_value(v: &Value, out: &mut String, depth: usize) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => write_go_string(s, out),
        Value::Array(items) if items.is_empty() => out.push_str("[]"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_value(item, out, depth + 1);
            }
            indent(out, depth);
            out.push(']');
        }
        Value::Object(members) if members.is_empty() => out.push_str("{}"),
        Value::Object(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                indent(out, depth + 1);
                write_go_string(k, out);
                out.push_str(": ");
                write_value(item, out, depth + 1);
            }
            indent(out, depth);
            out.push('}');
        }
    }
}

/// Writes a string literal with Go's escaping: `\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`
/// (Go >= 1.22), other control characters as `\u00XX`, and the HTML-safe escapes of `<`, `>`,
/// `&`, U+2028 and U+2029.
pub fn write_go_string(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut start = 0;
    for (i, c) in s.char_indices() {
        let esc: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            '<' => Some("\\u003c"),
            '>' => Some("\\u003e"),
            '&' => Some("\\u0026"),
            '\u{2028}' => Some("\\u2028"),
            '\u{2029}' => Some("\\u2029"),
            c if (c as u32) < 0x20 => None,
            _ => continue,
        };
        out.push_str(&s[start..i]);
        match esc {
            Some(e) => out.push_str(e),
            None => {
                let b = c as u32 as usize;
                out.push_str("\\u00");
                out.push(HEX[b >> 4] as char);
                out.push(HEX[b & 0xf] as char);
            }
        }
        start = i + c.len_utf8();
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Incremental writer of one Go-indented object, so typed structures can be written without
/// first being copied into a [`Value`] tree.
pub(crate) struct ObjWriter<'a> {
    out: &'a mut String,
    depth: usize,
    empty: bool,
}

impl<'a> ObjWriter<'a> {
    /// Opens an object at indentation `depth`.
    pub(crate) fn begin(out: &'a mut String, depth: usize) -> Self {
        out.push('{');
        ObjWriter {
            out,
            depth,
            empty: true,
        }
    }

    /// Writes the key of the next member and returns the buffer and the depth for its value.
    pub(crate) fn key(&mut self, k: &str) -> (&mut String, usize) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        indent(self.out, self.depth + 1);
        write_go_string(k, self.out);
        self.out.push_str(": ");
        (self.out, self.depth + 1)
    }

    /// Writes a member whose value is a string.
    pub(crate) fn string(&mut self, k: &str, v: &str) {
        let (out, _) = self.key(k);
        write_go_string(v, out);
    }

    /// Writes a member whose value is a string or `null`.
    pub(crate) fn opt_string(&mut self, k: &str, v: Option<&str>) {
        let (out, _) = self.key(k);
        match v {
            Some(v) => write_go_string(v, out),
            None => out.push_str("null"),
        }
    }

    /// Writes a member whose value is a [`Value`].
    pub(crate) fn value(&mut self, k: &str, v: &Value) {
        let (out, depth) = self.key(k);
        write_value(v, out, depth);
    }

    /// Writes each `(key, value)` pair (unknown fields kept from the input).
    pub(crate) fn extra(&mut self, fields: &[(String, Value)]) {
        for (k, v) in fields {
            self.value(k, v);
        }
    }

    /// Closes the object (`{}` when nothing was written).
    pub(crate) fn end(self) {
        if !self.empty {
            indent(self.out, self.depth);
        }
        self.out.push('}');
    }
}

/// Writes a Go-indented array of strings.
pub(crate) fn write_string_array(items: &[String], out: &mut String, depth: usize) {
    if items.is_empty() {
        out.push_str("[]");
        return;
    }
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        indent(out, depth + 1);
        write_go_string(s, out);
    }
    indent(out, depth);
    out.push(']');
}

/// Writes the opening of an array element at `depth + 1` (with the separator when not first).
pub(crate) fn array_item(out: &mut String, depth: usize, first: bool) {
    if !first {
        out.push(',');
    }
    indent(out, depth + 1);
}

/// Closes a non-empty array opened at `depth`.
pub(crate) fn array_end(out: &mut String, depth: usize) {
    indent(out, depth);
    out.push(']');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_escapes() {
        let mut out = String::new();
        write_go_string("a<b>&\u{2028}\u{2029}\"\\\n\u{1}\u{8}\u{7f}é", &mut out);
        assert_eq!(
            out,
            r#""a\u003cb\u003e\u0026\u2028\u2029\"\\\n\u0001\b"#.to_owned() + "\u{7f}é\""
        );
    }

    #[test]
    fn error_position() {
        let e = parse("{\n  \"a\": 1,\n  \"b\" 2\n}").unwrap_err();
        assert_eq!((e.line, e.column), (3, 7), "{e}");
    }

    #[test]
    fn surrogates() {
        assert_eq!(
            parse(r#""\ud83d\ude00""#).unwrap(),
            Value::String("😀".into())
        );
        assert_eq!(
            parse(r#""\ud83d""#).unwrap(),
            Value::String("\u{FFFD}".into())
        );
        assert_eq!(
            parse(r#""\ud83dx""#).unwrap(),
            Value::String("\u{FFFD}x".into())
        );
    }

    #[test]
    fn indent_like_go() {
        let v = parse(r#"{"a":[1,{"b":null}],"c":{},"d":[]}"#).unwrap();
        let mut out = String::new();
        write_go(&v, &mut out);
        assert_eq!(
            out,
            "{\n  \"a\": [\n    1,\n    {\n      \"b\": null\n    }\n  ],\n  \"c\": {},\n  \"d\": []\n}"
        );
    }
}
