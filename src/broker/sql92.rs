//! SQL92 message filters (`MessageSelector.bySql`), as RocketMQ 4.9 parses and evaluates them
//! over a message's properties (§6.6).
//!
//! Grammar, lowest precedence first, keywords in any case:
//! `OR`; `AND`; `=`, `<>`, `IS [NOT] NULL`; `>`, `>=`, `<`, `<=`, `[NOT] BETWEEN x AND y`,
//! `[NOT] IN ('s', …)`; unary `+`, `-`, `NOT`; literals (`'it''s'`, `12`, `12L`, `1.5`, `2E3`,
//! `TRUE`, `FALSE`, `NULL`), property names (`[A-Za-z_$][A-Za-z0-9_$]*`) and parentheses.
//! Comments are `-- …` and `/* … */`. As in RocketMQ, NOT binds tighter than comparisons:
//! write `NOT (a = 1)`, `a NOT IN (…)` or `a NOT BETWEEN …`.
//!
//! Evaluation follows RocketMQ's: property values are strings; compared with a number they are
//! read as that number's type; `>`/`<` between two strings compares them as doubles; a missing
//! property makes a comparison unknown; AND/OR/NOT are three-valued. A message matches only
//! when the result is TRUE; an evaluation error (a non-numeric string compared with a number)
//! means no match. Unlike RocketMQ, text left after a complete expression is an error instead of
//! being ignored.

use std::cmp::Ordering;

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(String),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Order {
    Gt,
    Ge,
    Lt,
    Le,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(Value),
    Prop(String),
    /// A bare property where a boolean is expected: unknown if missing, FALSE otherwise.
    BoolCast(Box<Expr>),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Compare(Order, Box<Expr>, Box<Expr>),
    IsNull(Box<Expr>),
    In {
        prop: String,
        values: Vec<String>,
        negated: bool,
    },
}

impl Expr {
    /// Comparisons, logic and IS NULL / IN: what AND, OR, NOT and the whole filter accept.
    fn is_boolean(&self) -> bool {
        matches!(
            self,
            Expr::Const(Value::Bool(_))
                | Expr::BoolCast(_)
                | Expr::Not(_)
                | Expr::And(..)
                | Expr::Or(..)
                | Expr::Eq(..)
                | Expr::Compare(..)
                | Expr::IsNull(_)
                | Expr::In { .. }
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    Int(i64),
    Double(f64),
    Kw(Keyword),
    Op(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Keyword {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
}

const OPS: [&str; 11] = ["<>", ">=", "<=", "=", ">", "<", "(", ")", ",", "+", "-"];

fn keyword(word: &str) -> Option<Keyword> {
    Some(match word.to_ascii_uppercase().as_str() {
        "NOT" => Keyword::Not,
        "AND" => Keyword::And,
        "OR" => Keyword::Or,
        "BETWEEN" => Keyword::Between,
        "IN" => Keyword::In,
        "TRUE" => Keyword::True,
        "FALSE" => Keyword::False,
        "NULL" => Keyword::Null,
        "IS" => Keyword::Is,
        _ => return None,
    })
}

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if src[i..].starts_with("--") {
            i = src[i..].find('\n').map_or(b.len(), |n| i + n + 1);
        } else if src[i..].starts_with("/*") {
            let end = src[i + 2..]
                .find("*/")
                .ok_or_else(|| format!("unterminated comment at {i}"))?;
            i += end + 4;
        } else if c == b'\'' {
            let mut s = String::new();
            let mut j = i + 1;
            loop {
                let Some(rest) = src.get(j..) else {
                    return Err(format!("unterminated string starting at {i}"));
                };
                let Some(q) = rest.find('\'') else {
                    return Err(format!("unterminated string starting at {i}"));
                };
                s.push_str(&rest[..q]);
                j += q + 1;
                if b.get(j) == Some(&b'\'') {
                    s.push('\'');
                    j += 1;
                } else {
                    break;
                }
            }
            out.push(Token::Str(s));
            i = j;
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            let (tok, len) = number(&src[i..])?;
            out.push(tok);
            i += len;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let len = src[i..]
                .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '$'))
                .unwrap_or(b.len() - i);
            let word = &src[i..i + len];
            out.push(match keyword(word) {
                Some(k) => Token::Kw(k),
                None => Token::Ident(word.to_string()),
            });
            i += len;
        } else if let Some(op) = OPS.iter().find(|op| src[i..].starts_with(**op)) {
            out.push(Token::Op(op));
            i += op.len();
        } else {
            let ch = src[i..].chars().next().unwrap_or('?');
            return Err(format!("unexpected character {ch:?} at {i}"));
        }
    }
    Ok(out)
}

/// A number literal at the start of `s`: `0`, `[1-9][0-9]*[lL]?`, or a floating literal with
/// an optional exponent. Returns the token and its length.
fn number(s: &str) -> Result<(Token, usize), String> {
    let b = s.as_bytes();
    let digits = |from: usize| b[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let int_len = digits(0);
    let mut len = int_len;
    let mut float = false;
    if b.get(len) == Some(&b'.') {
        float = true;
        len += 1 + digits(len + 1);
    }
    if matches!(b.get(len), Some(b'e' | b'E')) {
        let mut e = len + 1;
        if matches!(b.get(e), Some(b'+' | b'-')) {
            e += 1;
        }
        let n = digits(e);
        if n > 0 {
            float = true;
            len = e + n;
        }
    }
    let text = &s[..len];
    if float {
        let v: f64 = text.parse().map_err(|_| format!("bad number {text:?}"))?;
        if !v.is_finite() {
            return Err(format!("number {text:?} is out of range"));
        }
        return Ok((Token::Double(v), len));
    }
    if int_len > 1 && b[0] == b'0' {
        return Err(format!(
            "bad number {text:?}: no leading zeros, hex or octal"
        ));
    }
    let v: i64 = text
        .parse()
        .map_err(|_| format!("number {text:?} is out of range"))?;
    let suffix = usize::from(matches!(b.get(len), Some(b'l' | b'L')));
    Ok((Token::Int(v), len + suffix))
}

// ---------------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------------

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

/// Nesting beyond this is refused rather than risking the stack on hostile input.
const MAX_DEPTH: usize = 64;

impl Filter {
    /// Compiles an expression; the error says what is wrong and where.
    pub fn parse(src: &str) -> Result<Filter, String> {
        let mut p = Parser {
            tokens: lex(src)?,
            at: 0,
        };
        if p.tokens.is_empty() {
            return Err("the expression is empty".into());
        }
        let expr = p.or(0)?;
        if let Some(t) = p.tokens.get(p.at) {
            return Err(format!(
                "unexpected {} after a complete expression",
                show(t)
            ));
        }
        Ok(Filter {
            expr: as_boolean(expr)?,
        })
    }

    /// Whether a message with these properties passes: the expression is TRUE (not FALSE,
    /// not unknown, and no evaluation error).
    pub fn matches<'a>(&self, property: impl Fn(&str) -> Option<&'a str>) -> bool {
        matches!(eval(&self.expr, &property), Ok(Value::Bool(true)))
    }
}

fn show(t: &Token) -> String {
    match t {
        Token::Ident(s) => format!("name {s:?}"),
        Token::Str(s) => format!("string '{s}'"),
        Token::Int(v) => format!("number {v}"),
        Token::Double(v) => format!("number {v}"),
        Token::Kw(k) => format!("{k:?}").to_ascii_uppercase(),
        Token::Op(o) => format!("'{o}'"),
    }
}

/// What AND, OR, NOT and the whole filter take: a boolean expression, or a bare property.
fn as_boolean(e: Expr) -> Result<Expr, String> {
    match e {
        Expr::Prop(_) => Ok(Expr::BoolCast(Box::new(e))),
        e if e.is_boolean() => Ok(e),
        e => Err(format!("{e:?} is not a condition")),
    }
}

/// Operands of `>`, `>=`, `<`, `<=` and BETWEEN: no string, boolean or NULL constant and no
/// condition.
fn orderable(e: Expr) -> Result<Expr, String> {
    match &e {
        Expr::Const(Value::Int(_) | Value::Long(_) | Value::Double(_)) => Ok(e),
        Expr::Const(v) => Err(format!("{v:?} cannot be compared with >, >=, < or <=")),
        e if e.is_boolean() => Err("a condition cannot be compared with >, >=, < or <=".into()),
        _ => Ok(e),
    }
}

fn constant_number(e: &Expr) -> Option<f64> {
    match e {
        Expr::Const(Value::Int(v)) => Some(*v as f64),
        Expr::Const(Value::Long(v)) => Some(*v as f64),
        Expr::Const(Value::Double(v)) => Some(*v),
        _ => None,
    }
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat_kw(&mut self, k: Keyword) -> bool {
        if self.peek() == Some(&Token::Kw(k)) {
            self.at += 1;
            return true;
        }
        false
    }

    fn eat_op(&mut self, op: &str) -> bool {
        if matches!(self.peek(), Some(Token::Op(o)) if *o == op) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect_op(&mut self, op: &str) -> Result<(), String> {
        if self.eat_op(op) {
            return Ok(());
        }
        Err(match self.peek() {
            Some(t) => format!("expected '{op}', found {}", show(t)),
            None => format!("expected '{op}' at the end"),
        })
    }

    fn or(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        let mut left = self.and(depth)?;
        while self.eat_kw(Keyword::Or) {
            let right = self.and(depth)?;
            left = Expr::Or(Box::new(as_boolean(left)?), Box::new(as_boolean(right)?));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.equality(depth)?;
        while self.eat_kw(Keyword::And) {
            let right = self.equality(depth)?;
            left = Expr::And(Box::new(as_boolean(left)?), Box::new(as_boolean(right)?));
        }
        Ok(left)
    }

    fn equality(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.comparison(depth)?;
        loop {
            if self.eat_op("=") {
                let right = self.comparison(depth)?;
                left = equal(left, right)?;
            } else if self.eat_op("<>") {
                let right = self.comparison(depth)?;
                left = Expr::Not(Box::new(equal(left, right)?));
            } else if self.eat_kw(Keyword::Is) {
                let negated = self.eat_kw(Keyword::Not);
                if !self.eat_kw(Keyword::Null) {
                    return Err("expected NULL after IS".into());
                }
                let test = Expr::IsNull(Box::new(left));
                left = if negated {
                    Expr::Not(Box::new(test))
                } else {
                    test
                };
            } else {
                return Ok(left);
            }
        }
    }

    fn comparison(&mut self, depth: usize) -> Result<Expr, String> {
        let mut left = self.unary(depth)?;
        loop {
            let order = [
                (">=", Order::Ge),
                ("<=", Order::Le),
                (">", Order::Gt),
                ("<", Order::Lt),
            ]
            .into_iter()
            .find(|(op, _)| self.eat_op(op));
            if let Some((_, order)) = order {
                let right = orderable(self.unary(depth)?)?;
                left = Expr::Compare(order, Box::new(orderable(left)?), Box::new(right));
                continue;
            }
            let negated = self.eat_kw(Keyword::Not);
            if self.eat_kw(Keyword::Between) {
                let value = orderable(left)?;
                let low = orderable(self.unary(depth)?)?;
                if !self.eat_kw(Keyword::And) {
                    return Err("expected AND in BETWEEN".into());
                }
                let high = orderable(self.unary(depth)?)?;
                if let (Some(l), Some(h)) = (constant_number(&low), constant_number(&high)) {
                    if l > h {
                        return Err(format!(
                            "BETWEEN {l} AND {h}: the low value must not exceed the high one"
                        ));
                    }
                }
                let v = Box::new(value);
                left = if negated {
                    Expr::Or(
                        Box::new(Expr::Compare(Order::Lt, v.clone(), Box::new(low))),
                        Box::new(Expr::Compare(Order::Gt, v, Box::new(high))),
                    )
                } else {
                    Expr::And(
                        Box::new(Expr::Compare(Order::Ge, v.clone(), Box::new(low))),
                        Box::new(Expr::Compare(Order::Le, v, Box::new(high))),
                    )
                };
            } else if self.eat_kw(Keyword::In) {
                let Expr::Prop(prop) = left else {
                    return Err("IN needs a property on its left".into());
                };
                self.expect_op("(")?;
                let mut values = Vec::new();
                loop {
                    match self.peek() {
                        Some(Token::Str(s)) => {
                            values.push(s.clone());
                            self.at += 1;
                        }
                        _ => return Err("IN takes a list of strings".into()),
                    }
                    if !self.eat_op(",") {
                        break;
                    }
                }
                self.expect_op(")")?;
                left = Expr::In {
                    prop,
                    values,
                    negated,
                };
            } else if negated {
                return Err("expected BETWEEN or IN after NOT".into());
            } else {
                return Ok(left);
            }
        }
    }

    fn unary(&mut self, depth: usize) -> Result<Expr, String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH}"));
        }
        if self.eat_op("+") {
            return self.unary(depth + 1);
        }
        if self.eat_op("-") {
            return Ok(match self.unary(depth + 1)? {
                Expr::Const(Value::Int(v)) => Expr::Const(Value::Int(v.wrapping_neg())),
                Expr::Const(Value::Long(v)) => Expr::Const(Value::Long(v.wrapping_neg())),
                Expr::Const(Value::Double(v)) => Expr::Const(Value::Double(-v)),
                e => Expr::Neg(Box::new(e)),
            });
        }
        if self.eat_kw(Keyword::Not) {
            let e = self.unary(depth + 1)?;
            return Ok(Expr::Not(Box::new(as_boolean(e)?)));
        }
        self.primary(depth)
    }

    fn primary(&mut self, depth: usize) -> Result<Expr, String> {
        let Some(t) = self.peek().cloned() else {
            return Err("the expression ends too early".into());
        };
        self.at += 1;
        Ok(match t {
            Token::Ident(name) => Expr::Prop(name),
            Token::Str(s) => Expr::Const(Value::Str(s)),
            Token::Int(v) => Expr::Const(match i32::try_from(v) {
                Ok(i) => Value::Int(i),
                Err(_) => Value::Long(v),
            }),
            Token::Double(v) => Expr::Const(Value::Double(v)),
            Token::Kw(Keyword::True) => Expr::Const(Value::Bool(true)),
            Token::Kw(Keyword::False) => Expr::Const(Value::Bool(false)),
            Token::Kw(Keyword::Null) => Expr::Const(Value::Null),
            Token::Op("(") => {
                let e = self.or(depth + 1)?;
                self.expect_op(")")?;
                e
            }
            other => return Err(format!("unexpected {}", show(&other))),
        })
    }
}

/// `=`: NULL literals are refused (use IS NULL), and a boolean literal on the left takes only
/// a boolean constant on the right.
fn equal(left: Expr, right: Expr) -> Result<Expr, String> {
    for e in [&left, &right] {
        if *e == Expr::Const(Value::Null) {
            return Err("NULL cannot be compared with = or <>; use IS NULL".into());
        }
    }
    if let (Expr::Const(Value::Bool(_)), Expr::Const(r)) = (&left, &right) {
        if !matches!(r, Value::Bool(_)) {
            return Err(format!("a boolean cannot be compared with {r:?}"));
        }
    }
    Ok(Expr::Eq(Box::new(left), Box::new(right)))
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// An evaluation error: the message does not match.
#[derive(Debug)]
struct Invalid;

fn eval<'a>(e: &Expr, prop: &impl Fn(&str) -> Option<&'a str>) -> Result<Value, Invalid> {
    Ok(match e {
        Expr::Const(v) => v.clone(),
        Expr::Prop(name) => prop(name).map_or(Value::Null, |s| Value::Str(s.to_string())),
        Expr::BoolCast(inner) => match eval(inner, prop)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(b),
            _ => Value::Bool(false),
        },
        Expr::Neg(inner) => match eval(inner, prop)? {
            Value::Int(v) => Value::Int(v.wrapping_neg()),
            Value::Long(v) => Value::Long(v.wrapping_neg()),
            Value::Double(v) => Value::Double(-v),
            _ => Value::Null,
        },
        Expr::Not(inner) => match eval(inner, prop)? {
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(!b),
            _ => return Err(Invalid),
        },
        Expr::And(l, r) => match eval(l, prop)? {
            Value::Bool(false) => Value::Bool(false),
            lv => match (lv, eval(r, prop)?) {
                (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                _ => Value::Bool(true),
            },
        },
        Expr::Or(l, r) => match eval(l, prop)? {
            Value::Bool(true) => Value::Bool(true),
            lv => match (lv, eval(r, prop)?) {
                (_, Value::Bool(true)) => Value::Bool(true),
                (Value::Null, _) | (_, Value::Null) => Value::Null,
                _ => Value::Bool(false),
            },
        },
        Expr::Eq(l, r) => {
            let (lv, rv) = (eval(l, prop)?, eval(r, prop)?);
            match (&lv, &rv) {
                (Value::Null, Value::Null) => Value::Bool(true),
                (Value::Null, _) => Value::Null,
                (_, Value::Null) => Value::Bool(false),
                _ if lv == rv => Value::Bool(true),
                _ => Value::Bool(compare(lv, rv)? == Ordering::Equal),
            }
        }
        Expr::Compare(order, l, r) => {
            let (lv, rv) = (eval(l, prop)?, eval(r, prop)?);
            let ord = match (lv, rv) {
                (Value::Null, _) | (_, Value::Null) => return Ok(Value::Null),
                // Two strings (two properties) compare as doubles, or not at all.
                (Value::Str(a), Value::Str(b)) => {
                    let (a, b) = (java_double(&a)?, java_double(&b)?);
                    a.partial_cmp(&b).ok_or(Invalid)?
                }
                (lv, rv) => compare(lv, rv)?,
            };
            Value::Bool(match order {
                Order::Gt => ord == Ordering::Greater,
                Order::Ge => ord != Ordering::Less,
                Order::Lt => ord == Ordering::Less,
                Order::Le => ord != Ordering::Greater,
            })
        }
        Expr::IsNull(inner) => Value::Bool(eval(inner, prop)? == Value::Null),
        Expr::In {
            prop: name,
            values,
            negated,
        } => match prop(name) {
            None => Value::Null,
            Some(v) => Value::Bool(values.iter().any(|x| x == v) != *negated),
        },
    })
}

/// Java's `Double.valueOf`: surrounding whitespace allowed, an optional d/f suffix.
fn java_double(s: &str) -> Result<f64, Invalid> {
    let t = s.trim();
    let t = t
        .strip_suffix(['d', 'D', 'f', 'F'])
        .filter(|r| !r.is_empty() && !r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(t);
    t.parse().map_err(|_| Invalid)
}

/// RocketMQ's comparison of two values of possibly different types: numbers widen to the
/// wider type, a string is read as the other side's number type (or as a boolean), and
/// values of unrelated types order as "less".
fn compare(lv: Value, rv: Value) -> Result<Ordering, Invalid> {
    use Value::*;
    let num = |o: Option<Ordering>| o.ok_or(Invalid);
    Ok(match (lv, rv) {
        (Int(a), Int(b)) => a.cmp(&b),
        (Long(a), Long(b)) => a.cmp(&b),
        (Double(a), Double(b)) => num(a.partial_cmp(&b))?,
        (Str(a), Str(b)) => a.cmp(&b),
        (Bool(a), Bool(b)) => a.cmp(&b),
        (Int(a), Long(b)) => i64::from(a).cmp(&b),
        (Long(a), Int(b)) => a.cmp(&i64::from(b)),
        (Int(a), Double(b)) => num(f64::from(a).partial_cmp(&b))?,
        (Long(a), Double(b)) => num((a as f64).partial_cmp(&b))?,
        (Double(a), Int(b)) => num(a.partial_cmp(&f64::from(b)))?,
        (Double(a), Long(b)) => num(a.partial_cmp(&(b as f64)))?,
        (Str(s), Int(b)) => s.parse::<i32>().map_err(|_| Invalid)?.cmp(&b),
        (Str(s), Long(b)) => s.parse::<i64>().map_err(|_| Invalid)?.cmp(&b),
        (Str(s), Double(b)) => num(java_double(&s)?.partial_cmp(&b))?,
        (Int(a), Str(s)) => a.cmp(&s.parse::<i32>().map_err(|_| Invalid)?),
        (Long(a), Str(s)) => a.cmp(&s.parse::<i64>().map_err(|_| Invalid)?),
        (Double(a), Str(s)) => num(a.partial_cmp(&java_double(&s)?))?,
        (Str(s), Bool(b)) => s.eq_ignore_ascii_case("true").cmp(&b),
        // RocketMQ throws here (it converts the wrong side).
        (Bool(_), Str(_)) => return Err(Invalid),
        _ => Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(expr: &str, props: &[(&str, &str)]) -> bool {
        let f = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        f.matches(|name| props.iter().find(|(k, _)| *k == name).map(|(_, v)| *v))
    }

    #[test]
    fn rocketmqs_documented_examples_match_as_they_do_there() {
        for i in 0..6 {
            let v = i.to_string();
            assert_eq!(check("a between 0 and 3", &[("a", &v)]), i <= 3, "a={i}");
        }
        assert!(check(
            "a=3 and b<>4 And c>5 AND d<=4",
            &[("a", "3"), ("b", "5"), ("c", "6"), ("d", "4")]
        ));
        assert!(check(
            "TAGS is not null and TAGS in ('TagA', 'TagB')",
            &[("TAGS", "TagB")]
        ));
        assert!(!check("TAGS in ('TagA', 'TagB')", &[("TAGS", "TagC")]));
        assert!(check("a > 3.14", &[("a", "3.1415")]));
        assert!(check("a > 3.1E10", &[("a", "31000000001")]));
        assert!(
            check("a > b", &[("a", "20"), ("b", "10")]),
            "two properties compare as numbers"
        );
        assert!(check("a = 'abc'", &[("a", "abc")]));
        assert!(!check("a = 'abc'", &[("a", "ABC")]));
        assert!(check("TAGS='''''tag'''''", &[("TAGS", "''tag''")]));
    }

    #[test]
    fn missing_properties_and_bad_values_never_match() {
        for expr in [
            "a > 1",
            "a = 1",
            "a between 1 and 2",
            "a in ('x')",
            "a not in ('x')",
            "a",
        ] {
            assert!(!check(expr, &[]), "{expr} with a missing");
        }
        assert!(check("a is null", &[]));
        assert!(!check("a is not null", &[]));
        assert!(!check("NOT (a > 1)", &[]), "NOT unknown is unknown");
        assert!(check("a > 1 or b = 'x'", &[("b", "x")]), "unknown OR TRUE");
        assert!(
            !check("a > 1 and b = 'x'", &[("b", "x")]),
            "unknown AND TRUE"
        );
        // A value that is not a number, compared with one: an error, so no match either way.
        assert!(!check("a > 5", &[("a", "six")]));
        assert!(!check("NOT (a > 5)", &[("a", "six")]));
        assert!(
            !check("a > 5", &[("a", "5.5")]),
            "an Integer constant reads the value as an Integer"
        );
        assert!(check("a > 5.0", &[("a", "5.5")]));
        assert!(check("a not between 1 and 2", &[("a", "3")]));
        assert!(check("a not in ('x')", &[("a", "y")]));
        assert!(check("a = TRUE", &[("a", "True")]));
        assert!(check("a = FALSE", &[("a", "yes")]));
        assert!(check("x > -1", &[("x", "0")]));
        assert!(check("x < -1L", &[("x", "-5")]));
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        for bad in [
            "",
            "a >",
            "a > 'abc'",
            "a between 10 and 0",
            "a between 'x' and 'y'",
            "a = NULL",
            "1 in ('x')",
            "a in (1)",
            "a in ()",
            "NOT a > 1",
            "'x'",
            "1",
            "a and between 2 and 10",
            "a = 1 b = 2",
            "a = 0x10",
            "a = 007",
            "a = 'open",
            "a ! 1",
            "/* unterminated",
            "99999999999999999999 = a",
            "TRUE = 1",
            "a > 1 > 2",
            "(a = 1",
        ] {
            let e = Filter::parse(bad).expect_err(bad);
            assert!(!e.is_empty(), "{bad}");
        }
        let deep = format!("{}a = 1{}", "(".repeat(200), ")".repeat(200));
        assert!(
            Filter::parse(&deep).is_err(),
            "deep nesting is refused, not a stack overflow"
        );
    }

    #[test]
    fn keywords_any_case_comments_and_suffixes() {
        assert!(check(
            "A Is Not Null AnD -- note\n b In ('1') /* x */",
            &[("A", "x"), ("b", "1")]
        ));
        assert!(check("n = 12L", &[("n", "12")]));
        assert!(check("n >= .5 and n <= 5.", &[("n", "1")]));
    }

    proptest! {
        #[test]
        fn parsing_any_text_never_panics(s in "\\PC{0,80}") {
            let _ = Filter::parse(&s);
        }

        #[test]
        fn parsing_token_soup_never_panics(parts in proptest::collection::vec(
            prop::sample::select(vec!["a", "b", "'s'", "1", "2.5", "(", ")", "=", "<>", ">",
                "<=", "and", "or", "not", "between", "in", "is", "null", "true", ",", "-"]), 0..24)) {
            let src = parts.join(" ");
            if let Ok(f) = Filter::parse(&src) {
                let _ = f.matches(|n| (n == "a").then_some("1"));
            }
        }

        #[test]
        fn numeric_comparisons_agree_with_integer_math(v in -1000i32..1000, n in -1000i32..1000, m in -1000i32..1000) {
            let a = v.to_string();
            let props = [("a", a.as_str())];
            prop_assert_eq!(check(&format!("a > {n}"), &props), v > n);
            prop_assert_eq!(check(&format!("a <= {n}"), &props), v <= n);
            prop_assert_eq!(check(&format!("a = {n}"), &props), v == n);
            prop_assert_eq!(check(&format!("a <> {n}"), &props), v != n);
            let (lo, hi) = (n.min(m), n.max(m));
            prop_assert_eq!(check(&format!("a between {lo} and {hi}"), &props), lo <= v && v <= hi);
            prop_assert_eq!(check(&format!("a not between {lo} and {hi}"), &props), v < lo || v > hi);
        }
    }
}
