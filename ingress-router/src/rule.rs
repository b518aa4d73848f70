//! Traefik v3 rule syntax: the AST, its parser and its printer.
//!
//! Grammar (Traefik v3, `ruleSyntax: v3`):
//!
//! ```text
//! or      := and ( "||" and )*
//! and     := unary ( "&&" unary )*
//! unary   := "!" unary | primary
//! primary := "(" or ")" | NAME "(" value ( "," value )* ")"
//! value   := "`" raw "`" | "\"" go-escaped "\""
//! ```
//!
//! `&&` binds tighter than `||`, `!` tighter than both. Single-quoted values are rejected (as in
//! Traefik). Matchers: `Host`, `HostRegexp`, `Path`, `PathPrefix`, `PathRegexp`, `Method`,
//! `ClientIP` (one value each), `Header`, `HeaderRegexp` (name, value), `Query` (key, or key and
//! value). Names are case-sensitive. Parse errors carry a 1-based character column.
//!
//! The AST does not remember parentheses or quote styles: [`Rule`]'s `Display` prints a canonical
//! form that parses back to an equal `Rule`. Priorities use the length of the text as written.
//!
//! The parser, the printer, the compiler and the evaluator all recurse over the tree, and rule text
//! can come from a Kubernetes object, so the tree's depth is bounded when parsing: at most
//! [`MAX_NESTING`] levels of `(` and `!`, and at most [`MAX_OPERATORS`] `&&`/`||` (a chain of them
//! is a tree as deep as it is long). Go's growable stacks let Traefik go without such a limit; a
//! Rust thread's stack is fixed (2 MiB for a tokio worker), and overflowing it aborts the process.
//! Compiling a rule into a [`Table`](crate::Table) takes a few KiB of stack per level in a debug
//! build (about 400 levels fit in 2 MiB), hence limits well below that.

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::Serialize;

use crate::error::RouterError;

/// The deepest nesting of `(` and `!` a rule may have.
pub const MAX_NESTING: usize = 32;

/// The most `&&` and `||` operators a rule may have.
pub const MAX_OPERATORS: usize = 200;

/// One matcher call, e.g. `` Host(`example.com`) ``.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "matcher", content = "args")]
pub enum Matcher {
    /// `Host(h)`: the normalised request host equals `h` (case-insensitive); `*.d` matches exactly
    /// one label under `d`; `*` matches every request, even one without a host.
    Host(String),
    /// `HostRegexp(re)`: the normalised host matches the (unanchored) regex.
    HostRegexp(String),
    /// `Path(p)`: the path equals `p` byte for byte.
    Path(String),
    /// `PathPrefix(p)`: the path starts with `p`, character-wise (`/products` matches
    /// `/products-for-sale`, as in Traefik).
    PathPrefix(String),
    /// `PathRegexp(re)`: the path matches the (unanchored) regex.
    PathRegexp(String),
    /// `Method(m)`: the method equals `m`, ASCII case-insensitively.
    Method(String),
    /// `Header(name, value)`: some value of header `name` equals `value`.
    Header(String, String),
    /// `HeaderRegexp(name, re)`: some value of header `name` matches the regex.
    HeaderRegexp(String, String),
    /// `Query(key)` or `Query(key, value)`: a query parameter `key` exists (with that decoded value).
    Query(String, Option<String>),
    /// `ClientIP(ip or cidr)`: the socket peer address is in the network.
    ClientIP(String),
}

/// A Traefik v3 rule: matchers combined with `&&`, `||`, `!`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// A single matcher.
    Match(Matcher),
    /// Negation.
    Not(Box<Rule>),
    /// Both sides must match.
    And(Box<Rule>, Box<Rule>),
    /// Either side must match.
    Or(Box<Rule>, Box<Rule>),
}

impl Rule {
    /// Parses Traefik v3 rule text. Errors name the 1-based column.
    pub fn parse(text: &str) -> Result<Rule, RouterError> {
        let mut p = Parser {
            text,
            chars: text.char_indices().collect(),
            pos: 0,
            nesting: 0,
            operators: 0,
        };
        let rule = p.parse_or()?;
        p.skip_ws();
        if p.pos < p.chars.len() {
            return Err(p.error_here("unexpected input after the rule (missing `&&` or `||`?)"));
        }
        Ok(rule)
    }

    /// Calls `f` for every matcher of the rule.
    pub fn for_each_matcher(&self, f: &mut impl FnMut(&Matcher)) {
        match self {
            Rule::Match(m) => f(m),
            Rule::Not(r) => r.for_each_matcher(f),
            Rule::And(a, b) | Rule::Or(a, b) => {
                a.for_each_matcher(f);
                b.for_each_matcher(f);
            }
        }
    }
}

impl std::str::FromStr for Rule {
    type Err = RouterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::parse(s)
    }
}

struct Parser<'t> {
    text: &'t str,
    chars: Vec<(usize, char)>,
    pos: usize,
    /// Current depth of `(` and `!` (the parser's own recursion).
    nesting: usize,
    /// `&&` and `||` seen so far.
    operators: usize,
}

impl Parser<'_> {
    fn error_at(&self, pos: usize, message: impl Into<String>) -> RouterError {
        RouterError::Rule {
            rule: self.text.to_owned(),
            column: pos + 1,
            message: message.into(),
        }
    }

    fn error_here(&self, message: impl Into<String>) -> RouterError {
        self.error_at(self.pos, message)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn peek2(&self) -> Option<char> {
        self.chars.get(self.pos + 1).map(|&(_, c)| c)
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    /// Counts one `&&` or `||` at the current position.
    fn operator(&mut self) -> Result<(), RouterError> {
        self.operators += 1;
        if self.operators > MAX_OPERATORS {
            return Err(self.error_here(format!(
                "more than {MAX_OPERATORS} `&&`/`||` operators in one rule"
            )));
        }
        Ok(())
    }

    /// Enters one level of `(` or `!`.
    fn nest(&mut self) -> Result<(), RouterError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(self.error_here(format!(
                "`(` and `!` nested more than {MAX_NESTING} levels deep"
            )));
        }
        Ok(())
    }

    fn parse_or(&mut self) -> Result<Rule, RouterError> {
        let mut left = self.parse_and()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('|') && self.peek2() == Some('|') {
                self.operator()?;
                self.pos += 2;
                let right = self.parse_and()?;
                left = Rule::Or(Box::new(left), Box::new(right));
            } else if self.peek() == Some('|') {
                return Err(self.error_here("expected `||`"));
            } else {
                return Ok(left);
            }
        }
    }

    fn parse_and(&mut self) -> Result<Rule, RouterError> {
        let mut left = self.parse_unary()?;
        loop {
            self.skip_ws();
            if self.peek() == Some('&') && self.peek2() == Some('&') {
                self.operator()?;
                self.pos += 2;
                let right = self.parse_unary()?;
                left = Rule::And(Box::new(left), Box::new(right));
            } else if self.peek() == Some('&') {
                return Err(self.error_here("expected `&&`"));
            } else {
                return Ok(left);
            }
        }
    }

    fn parse_unary(&mut self) -> Result<Rule, RouterError> {
        self.skip_ws();
        match self.peek() {
            Some('!') => {
                self.nest()?;
                self.pos += 1;
                let inner = self.parse_unary()?;
                self.nesting -= 1;
                Ok(Rule::Not(Box::new(inner)))
            }
            Some('(') => {
                self.nest()?;
                self.pos += 1;
                let inner = self.parse_or()?;
                self.skip_ws();
                if self.peek() != Some(')') {
                    return Err(self.error_here("expected `)`"));
                }
                self.pos += 1;
                self.nesting -= 1;
                Ok(inner)
            }
            Some(c) if c.is_ascii_alphabetic() => self.parse_matcher(),
            Some(_) => Err(self.error_here("expected a matcher such as Host(`...`), `!` or `(`")),
            None => Err(self.error_here("unexpected end of rule, expected a matcher")),
        }
    }

    fn parse_matcher(&mut self) -> Result<Rule, RouterError> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        let name: String = self.chars[start..self.pos]
            .iter()
            .map(|&(_, c)| c)
            .collect();
        self.skip_ws();
        if self.peek() != Some('(') {
            return Err(self.error_here(format!("expected `(` after `{name}`")));
        }
        self.pos += 1;
        let mut args: Vec<(usize, String)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(')') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                let at = self.pos;
                args.push((at, self.parse_value()?));
                self.skip_ws();
                match self.peek() {
                    Some(',') => self.pos += 1,
                    Some(')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(self.error_here("expected `,` or `)`")),
                }
            }
        }
        self.build_matcher(start, &name, args).map(Rule::Match)
    }

    fn parse_value(&mut self) -> Result<String, RouterError> {
        match self.peek() {
            Some('`') => {
                let open = self.pos;
                self.pos += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        Some('`') => {
                            self.pos += 1;
                            return Ok(out);
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                        None => return Err(self.error_at(open, "unterminated backtick value")),
                    }
                }
            }
            Some('"') => {
                let open = self.pos;
                self.pos += 1;
                let mut out = String::new();
                loop {
                    match self.peek() {
                        Some('"') => {
                            self.pos += 1;
                            return Ok(out);
                        }
                        Some('\\') => {
                            let esc = self.pos;
                            self.pos += 1;
                            let c = match self.peek() {
                                Some('\\') => '\\',
                                Some('"') => '"',
                                Some('n') => '\n',
                                Some('t') => '\t',
                                Some('r') => '\r',
                                _ => {
                                    return Err(self.error_at(
                                        esc,
                                        "unknown escape in double-quoted value (use backticks for regexps)",
                                    ));
                                }
                            };
                            out.push(c);
                            self.pos += 1;
                        }
                        Some('\n') | None => {
                            return Err(self.error_at(open, "unterminated double-quoted value"));
                        }
                        Some(c) => {
                            out.push(c);
                            self.pos += 1;
                        }
                    }
                }
            }
            Some('\'') => Err(self.error_here(
                "single-quoted values are not supported; use backticks or double quotes",
            )),
            _ => Err(self.error_here("expected a value in backticks or double quotes")),
        }
    }

    fn build_matcher(
        &self,
        at: usize,
        name: &str,
        args: Vec<(usize, String)>,
    ) -> Result<Matcher, RouterError> {
        let count = |want: &[usize]| -> Result<(), RouterError> {
            if want.contains(&args.len()) {
                Ok(())
            } else {
                let expected = match want {
                    [1] => "exactly one value",
                    [2] => "exactly two values",
                    _ => "one or two values",
                };
                Err(self.error_at(at, format!("`{name}` takes {expected}, got {}", args.len())))
            }
        };
        let regex = |(pos, re): &(usize, String)| -> Result<(), RouterError> {
            regex::Regex::new(re).map(|_| ()).map_err(|e| {
                self.error_at(
                    *pos,
                    format!("invalid regexp: {}", one_line(&e.to_string())),
                )
            })
        };
        let non_empty = |(pos, v): &(usize, String)| -> Result<(), RouterError> {
            if v.is_empty() {
                Err(self.error_at(*pos, "value must not be empty"))
            } else {
                Ok(())
            }
        };
        let path = |(pos, v): &(usize, String)| -> Result<(), RouterError> {
            if v.starts_with('/') {
                Ok(())
            } else {
                Err(self.error_at(*pos, "path must start with `/`"))
            }
        };
        let header = |(pos, v): &(usize, String)| -> Result<(), RouterError> {
            http::HeaderName::from_bytes(v.as_bytes())
                .map(|_| ())
                .map_err(|_| self.error_at(*pos, format!("invalid header name `{v}`")))
        };
        let mut it = args.clone().into_iter().map(|(_, v)| v);
        let mut next = || it.next().unwrap_or_default();
        Ok(match name {
            "Host" => {
                count(&[1])?;
                non_empty(&args[0])?;
                let v = &args[0].1;
                let valid = v == "*"
                    || !v.contains('*')
                    || v.strip_prefix("*.").is_some_and(|s| !s.contains('*'));
                if !valid {
                    return Err(self.error_at(
                        args[0].0,
                        "`*` is only allowed as a whole first label (`*.example.com`) or alone",
                    ));
                }
                Matcher::Host(next())
            }
            "HostRegexp" => {
                count(&[1])?;
                regex(&args[0])?;
                Matcher::HostRegexp(next())
            }
            "Path" => {
                count(&[1])?;
                path(&args[0])?;
                Matcher::Path(next())
            }
            "PathPrefix" => {
                count(&[1])?;
                path(&args[0])?;
                Matcher::PathPrefix(next())
            }
            "PathRegexp" => {
                count(&[1])?;
                regex(&args[0])?;
                Matcher::PathRegexp(next())
            }
            "Method" => {
                count(&[1])?;
                non_empty(&args[0])?;
                Matcher::Method(next())
            }
            "Header" => {
                count(&[2])?;
                header(&args[0])?;
                Matcher::Header(next(), next())
            }
            "HeaderRegexp" => {
                count(&[2])?;
                header(&args[0])?;
                regex(&args[1])?;
                Matcher::HeaderRegexp(next(), next())
            }
            "Query" => {
                count(&[1, 2])?;
                non_empty(&args[0])?;
                let key = next();
                let value = if args.len() == 2 { Some(next()) } else { None };
                Matcher::Query(key, value)
            }
            "ClientIP" => {
                count(&[1])?;
                if parse_client_ip(&args[0].1).is_none() {
                    return Err(
                        self.error_at(args[0].0, format!("invalid IP or CIDR `{}`", args[0].1))
                    );
                }
                Matcher::ClientIP(next())
            }
            "HostHeader" | "Headers" | "HeadersRegexp" => {
                return Err(self.error_at(
                    at,
                    format!("`{name}` is Traefik v2 syntax; v3 uses Host/Header/HeaderRegexp"),
                ));
            }
            _ => return Err(self.error_at(at, format!("unsupported matcher `{name}`"))),
        })
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a `ClientIP` value: a CIDR network or a single address (as a /32 or /128).
pub(crate) fn parse_client_ip(v: &str) -> Option<IpNet> {
    v.parse::<IpNet>()
        .ok()
        .or_else(|| v.parse::<IpAddr>().ok().map(IpNet::from))
}

fn write_value(f: &mut fmt::Formatter<'_>, v: &str) -> fmt::Result {
    if !v.contains('`') {
        return write!(f, "`{v}`");
    }
    f.write_str("\"")?;
    for c in v.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (name, a, b): (&str, &str, Option<&str>) = match self {
            Matcher::Host(v) => ("Host", v, None),
            Matcher::HostRegexp(v) => ("HostRegexp", v, None),
            Matcher::Path(v) => ("Path", v, None),
            Matcher::PathPrefix(v) => ("PathPrefix", v, None),
            Matcher::PathRegexp(v) => ("PathRegexp", v, None),
            Matcher::Method(v) => ("Method", v, None),
            Matcher::Header(k, v) => ("Header", k, Some(v)),
            Matcher::HeaderRegexp(k, v) => ("HeaderRegexp", k, Some(v)),
            Matcher::Query(k, v) => ("Query", k, v.as_deref()),
            Matcher::ClientIP(v) => ("ClientIP", v, None),
        };
        write!(f, "{name}(")?;
        write_value(f, a)?;
        if let Some(b) = b {
            f.write_str(", ")?;
            write_value(f, b)?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Parenthesise exactly where re-parsing would otherwise build a different tree:
        // `&&`/`||` are left-associative, `&&` binds tighter, `!` binds tightest.
        fn paren(f: &mut fmt::Formatter<'_>, r: &Rule, wrap: bool) -> fmt::Result {
            if wrap {
                write!(f, "({r})")
            } else {
                write!(f, "{r}")
            }
        }
        match self {
            Rule::Match(m) => write!(f, "{m}"),
            Rule::Not(r) => {
                f.write_str("!")?;
                paren(f, r, matches!(**r, Rule::And(..) | Rule::Or(..)))
            }
            Rule::And(a, b) => {
                paren(f, a, matches!(**a, Rule::Or(..)))?;
                f.write_str(" && ")?;
                paren(f, b, matches!(**b, Rule::Or(..) | Rule::And(..)))
            }
            Rule::Or(a, b) => {
                paren(f, a, false)?;
                f.write_str(" || ")?;
                paren(f, b, matches!(**b, Rule::Or(..)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precedence_and_quotes() {
        let r = Rule::parse(r#"Host(`a.com`) || Host("b.com") && !PathPrefix(`/x`)"#).unwrap();
        assert_eq!(
            r,
            Rule::Or(
                Box::new(Rule::Match(Matcher::Host("a.com".into()))),
                Box::new(Rule::And(
                    Box::new(Rule::Match(Matcher::Host("b.com".into()))),
                    Box::new(Rule::Not(Box::new(Rule::Match(Matcher::PathPrefix(
                        "/x".into()
                    ))))),
                )),
            )
        );
        assert_eq!(
            r.to_string(),
            "Host(`a.com`) || Host(`b.com`) && !PathPrefix(`/x`)"
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = Rule::parse("Host('a.com')").unwrap_err();
        assert_eq!(e.column(), Some(6));
        let e = Rule::parse("Host(`a`) && Nope(`x`)").unwrap_err();
        assert_eq!(e.column(), Some(14));
        let e = Rule::parse("Host(`a`) & Path(`/`)").unwrap_err();
        assert_eq!(e.column(), Some(11));
        let e = Rule::parse("PathRegexp(`(`)").unwrap_err();
        assert_eq!(e.column(), Some(12));
        let e = Rule::parse("Header(`X`)").unwrap_err();
        assert_eq!(e.column(), Some(1));
        let e = Rule::parse("Path(`x`)").unwrap_err();
        assert_eq!(e.column(), Some(6));
        assert!(Rule::parse("(Host(`a`)").is_err());
        assert!(Rule::parse("").is_err());
        assert!(Rule::parse("ClientIP(`10.0.0.0/33`)").is_err());
    }

    /// Found by the `router_rule` fuzz target: deep `(`/`!` nesting or long `&&`/`||` chains
    /// overflowed the stack (in the parser, `Display`, the compiler or drop) and aborted the
    /// process. They are refused now, with the column where the limit was crossed.
    #[test]
    fn deep_rules_are_refused_not_a_stack_overflow() {
        let host = "Host(`a`)";
        let parens = format!("{}{host}{}", "(".repeat(100_000), ")".repeat(100_000));
        let nots = format!("{}{host}", "!".repeat(100_000));
        let chain = vec![host; 100_000].join(" && ");
        for text in [&parens, &nots, &chain] {
            let e = Rule::parse(text).unwrap_err();
            assert!(e.to_string().contains("more than"), "{e}");
        }
        let e = Rule::parse(&format!("{}{host}", "!".repeat(MAX_NESTING + 1))).unwrap_err();
        assert_eq!(e.column(), Some(MAX_NESTING + 1));
        let e = Rule::parse(&vec![host; MAX_OPERATORS + 2].join("||")).unwrap_err();
        assert_eq!(e.column(), Some((MAX_OPERATORS + 1) * (host.len() + 2) - 1));
    }

    /// A rule at both limits parses, prints, re-parses, compiles and routes on a thread with a
    /// tokio worker's 2 MiB stack, in a debug build.
    #[test]
    fn rules_at_the_limits_work_on_a_small_stack() {
        std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(|| {
                let hosts: Vec<String> = (0..=MAX_OPERATORS)
                    .map(|i| format!("Host(`h{i}.example.com`)"))
                    .collect();
                let pairs = MAX_NESTING / 2;
                let text = format!(
                    "{}{}{}",
                    "!(".repeat(pairs),
                    hosts.join(" || "),
                    ")".repeat(pairs)
                );
                let rule = Rule::parse(&text).unwrap();
                let printed = rule.to_string();
                assert_eq!(Rule::parse(&printed).unwrap(), rule);
                let mut b = crate::TableBuilder::new();
                b.rule("limits", &text, None, ()).unwrap();
                let table = b.build().unwrap();
                let hit = crate::RequestView::new("h150.example.com", "/");
                assert!(
                    table.route(&hit).is_some(),
                    "an even number of `!` keeps the match"
                );
                let miss = crate::RequestView::new("other.example.com", "/");
                assert!(table.route(&miss).is_none());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn display_round_trips_nesting() {
        for text in [
            "(Host(`a`) || Host(`b`)) && Path(`/`)",
            "Host(`a`) && (Path(`/a`) && Method(`GET`))",
            "!(Host(`a`) || Query(`k`, \"v`w\"))",
            "Header(`X-A`, `1`) || (Query(`k`) || ClientIP(`10.0.0.0/8`))",
        ] {
            let r = Rule::parse(text).unwrap();
            assert_eq!(Rule::parse(&r.to_string()).unwrap(), r, "{text} -> {r}");
        }
    }
}
