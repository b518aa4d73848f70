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

/// Brings an account's `Registration` into the shape Go writes for lego's
/// `registration.Resource{Body acme.Account "body,omitempty"; URI string "uri,omitempty"}`:
/// canonical key case, lego's field order, `omitempty` applied, `body` always present. Unknown
/// members are kept after the known ones; a member of an unexpected type (which Go would refuse)
/// is kept as is rather than lost. Traefik-written registrations are already in this shape.
pub(crate) fn canonical_registration(v: Value) -> Value {
    let Value::Object(members) = v else { return v };
    let ([body, uri], extra) = split(members, ["body", "uri"]);
    let body = match body {
        None | Some(Value::Null) => Value::Object(Vec::new()),
        Some(Value::Object(m)) => canonical_body(m),
        Some(other) => other,
    };
    let mut out = vec![("body".to_owned(), body)];
    push_omitempty(&mut out, "uri", uri);
    out.extend(extra);
    Value::Object(out)
}

fn canonical_body(members: Vec<(String, Value)>) -> Value {
    const NAMES: [&str; 6] = [
        "status",
        "contact",
        "termsOfServiceAgreed",
        "orders",
        "onlyReturnExisting",
        "externalAccountBinding",
    ];
    let (known, extra) = split(members, NAMES);
    let mut out = Vec::new();
    for (name, v) in NAMES.into_iter().zip(known) {
        if name == "externalAccountBinding" {
            // A json.RawMessage: only absence is empty (`null` is four bytes of JSON).
            if let Some(v) = v {
                out.push((name.to_owned(), v));
            }
        } else {
            push_omitempty(&mut out, name, v);
        }
    }
    out.extend(extra);
    Value::Object(out)
}

/// Adds `name: v` unless `v` is Go's zero value for its type (`omitempty`).
fn push_omitempty(out: &mut Vec<(String, Value)>, name: &str, v: Option<Value>) {
    let empty = match &v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if let (false, Some(v)) = (empty, v) {
        out.push((name.to_owned(), v));
    }
}
