//! Go-style field matching and typed extraction from [`Value`]s, with JSON paths in errors.

use super::json::Value;
use crate::document::Fields;
use crate::error::FormatError;

/// Go's `strings.EqualFold` restricted to what our (ASCII) field names can meet: ASCII case
/// folding plus the two non-ASCII letters that fold to ASCII ones (KELVIN SIGN -> k, LONG S -> s).
pub(crate) fn fold_eq(a: &str, field: &str) -> bool {
    fn fold(c: char) -> char {
        match c {
            '\u{212A}' => 'k',
            '\u{17F}' => 's',
            c => c.to_ascii_lowercase(),
        }
    }
    let mut a = a.chars().map(fold);
    let mut b = field.chars().map(fold);
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(x), Some(y)) if x == y => {}
            _ => return false,
        }
    }
}

/// Assigns each member to one of `names` like Go does (exact name first, then case-insensitive;
/// a later duplicate wins). The rest are returned as unknown fields, in order.
pub(crate) fn split<const N: usize>(
    members: Vec<(String, Value)>,
    names: [&str; N],
) -> ([Option<Value>; N], Fields) {
    let mut known: [Option<Value>; N] = std::array::from_fn(|_| None);
    let mut extra = Vec::new();
    for (k, v) in members {
        let idx = names
            .iter()
            .position(|n| *n == k)
            .or_else(|| names.iter().position(|n| fold_eq(&k, n)));
        match idx {
            Some(i) => known[i] = Some(v),
            None => extra.push((k, v)),
        }
    }
    (known, extra)
}

pub(crate) fn schema(field: &str, message: impl Into<String>) -> FormatError {
    FormatError::Schema {
        field: field.to_owned(),
        message: message.into(),
    }
}

fn wrong(field: &str, expected: &str, v: &Value) -> FormatError {
    schema(field, format!("expected {expected}, found {}", v.kind()))
}

/// A string field; `null` and absence give `None`.
pub(crate) fn opt_string(v: Option<Value>, field: &str) -> Result<Option<String>, FormatError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(field, "a string", &other)),
    }
}

/// A `[]byte` field: like [`opt_string`], but an empty string is Go's empty slice, which
/// `omitempty` drops, so it reads as `None`.
pub(crate) fn opt_bytes(v: Option<Value>, field: &str) -> Result<Option<String>, FormatError> {
    Ok(opt_string(v, field)?.filter(|s| !s.is_empty()))
}

/// A string field where `null`/absence is Go's zero value `""`.
pub(crate) fn string(v: Option<Value>, field: &str) -> Result<String, FormatError> {
    Ok(opt_string(v, field)?.unwrap_or_default())
}

/// An object field; `null`/absence gives `None`.
pub(crate) fn opt_object(
    v: Option<Value>,
    field: &str,
) -> Result<Option<Vec<(String, Value)>>, FormatError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(other) => Err(wrong(field, "an object", &other)),
    }
}

/// An array field; `null`/absence gives `None`.
pub(crate) fn opt_array(v: Option<Value>, field: &str) -> Result<Option<Vec<Value>>, FormatError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => Ok(Some(a)),
        Some(other) => Err(wrong(field, "an array", &other)),
    }
}

/// A `[]string` field.
pub(crate) fn string_list(v: Option<Value>, field: &str) -> Result<Vec<String>, FormatError> {
    let Some(items) = opt_array(v, field)? else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| string(Some(item), &format!("{field}[{i}]")))
        .collect()
}

/// A Go pointer-to-object field kept as a raw value (`null`/absence gives `None`).
pub(crate) fn opt_raw_object(v: Option<Value>, field: &str) -> Result<Option<Value>, FormatError> {
    Ok(opt_object(v, field)?.map(Value::Object))
}
