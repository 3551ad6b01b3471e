//! The `txn` mini-language parser: compares and operations as short strings → proto messages.

use anyhow::{anyhow, bail, Result};
use conclave_client::proto as pb;
use pb::compare::Target as CompareTarget;
use pb::key_compare::Target as KeyTarget;
use pb::request_op::Request;

pub(super) fn compare_arg(s: &str) -> Result<pb::Compare, String> {
    parse_compare(s).map_err(|e| format!("{e:#}"))
}

pub(super) fn op_arg(s: &str) -> Result<pb::RequestOp, String> {
    parse_op(s).map_err(|e| format!("{e:#}"))
}

// ---------------------------------------------------------------------------------------------
// Lexing

/// A position in the text being parsed.
struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Self {
        Self { s, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&self) -> Option<char> {
        self.rest().chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat(&mut self, prefix: &str) -> bool {
        if self.rest().starts_with(prefix) {
            self.pos += prefix.len();
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&f) {
            self.bump();
        }
        &self.s[start..self.pos]
    }

    /// Reads the rest of a quoted string whose opening `quote` was just consumed, into `out`.
    /// Single quotes are literal; double quotes know the escapes `\"` and `\\`.
    fn quoted(&mut self, quote: char, out: &mut String) -> Result<()> {
        loop {
            match self.bump() {
                Some(c) if c == quote => return Ok(()),
                Some('\\') if quote == '"' => match self.bump() {
                    Some(c @ ('"' | '\\')) => out.push(c),
                    Some(c) => {
                        out.push('\\');
                        out.push(c);
                    }
                    None => bail!("unterminated double quote"),
                },
                Some(c) => out.push(c),
                None if quote == '"' => bail!("unterminated double quote"),
                None => bail!("unterminated single quote"),
            }
        }
    }
}

/// Splits `s` into words like a shell: whitespace separates words; 'single' and "double"
/// quotes group (and may be adjacent to unquoted text: `a"b c"` is `ab c`); `""` is an empty
/// word; outside quotes a backslash takes the next character literally.
pub fn split_words(s: &str) -> Result<Vec<String>> {
    let mut c = Cursor::new(s);
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    while let Some(ch) = c.bump() {
        match ch {
            ch if ch.is_whitespace() => words.extend(word.take()),
            '\'' | '"' => c.quoted(ch, word.get_or_insert_with(String::new))?,
            '\\' => match c.bump() {
                Some(next) => word.get_or_insert_with(String::new).push(next),
                None => bail!("a trailing backslash escapes nothing"),
            },
            ch => word.get_or_insert_with(String::new).push(ch),
        }
    }
    words.extend(word);
    Ok(words)
}

// ---------------------------------------------------------------------------------------------
// Compares

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Field {
    Value,
    Version,
    Create,
    Mod,
    Exists,
    Counter,
    Lease,
}

const TARGETS: &str =
    "value(KEY), version(KEY), create(KEY), mod(KEY), exists(KEY), !exists(KEY), counter(NAME) or lease(NAME)";

/// Reads `(ARG)` after a target name: a quoted string or everything up to `)`, trimmed.
fn paren_arg(c: &mut Cursor<'_>, target: &str) -> Result<String> {
    c.skip_ws();
    if !c.eat("(") {
        bail!("expected '(' after {target:?}, as in {target}(KEY)");
    }
    c.skip_ws();
    let arg = match c.peek() {
        Some(q @ ('\'' | '"')) => {
            c.bump();
            let mut s = String::new();
            c.quoted(q, &mut s)?;
            c.skip_ws();
            if !c.eat(")") {
                bail!("expected ')' after the quoted argument of {target}(...)");
            }
            s
        }
        _ => {
            let arg = c.take_while(|ch| ch != ')');
            if !c.eat(")") {
                bail!("missing ')' after {target}({arg}");
            }
            arg.trim().to_owned()
        }
    };
    Ok(arg)
}

/// Parses one compare, e.g. `value(k) = v`, `version(k) > 3`, `!exists(k)`, `counter(c) < 5`.
pub fn parse_compare(s: &str) -> Result<pb::Compare> {
    let mut c = Cursor::new(s.trim());
    let negated = c.eat("!");
    c.skip_ws();
    let name = c.take_while(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-');
    if name.is_empty() {
        bail!("expected one of {TARGETS}");
    }
    let field = match name.to_ascii_lowercase().as_str() {
        "value" => Field::Value,
        "version" => Field::Version,
        "create" | "create_revision" | "create-revision" => Field::Create,
        "mod" | "mod_revision" | "mod-revision" => Field::Mod,
        "exists" => Field::Exists,
        "counter" => Field::Counter,
        "lease" => Field::Lease,
        _ => bail!("unknown compare target {name:?}; expected one of {TARGETS}"),
    };
    let arg = paren_arg(&mut c, name)?;
    if arg.is_empty() {
        let what = match field {
            Field::Counter => "counter name",
            Field::Lease => "lease name",
            _ => "key",
        };
        bail!("the {what} in {name}(...) must not be empty");
    }
    c.skip_ws();
    if field == Field::Exists {
        if !c.rest().is_empty() {
            bail!("unexpected {:?} after exists({arg}); write exists(KEY) or !exists(KEY)", c.rest());
        }
        let target = KeyTarget::Exists(!negated);
        return Ok(key_compare(arg, pb::CompareOp::Equal, target));
    }
    if negated {
        bail!("'!' only negates exists(KEY); use != to negate a comparison");
    }
    let op = if c.eat("!=") {
        pb::CompareOp::NotEqual
    } else if c.eat("==") || c.eat("=") {
        pb::CompareOp::Equal
    } else if c.rest().starts_with(">=") || c.rest().starts_with("<=") {
        bail!("unsupported operator {:?}; use =, !=, > or <", &c.rest()[..2]);
    } else if c.eat(">") {
        pb::CompareOp::Greater
    } else if c.eat("<") {
        pb::CompareOp::Less
    } else if c.rest().is_empty() {
        bail!("missing operator and operand after {name}({arg}); expected e.g. {name}({arg}) = ...");
    } else {
        bail!("expected an operator (=, !=, > or <) after {name}({arg}), found {:?}", c.rest());
    };
    let mut words = split_words(c.rest())?;
    let operand = match words.len() {
        0 => bail!("missing the operand after the operator in {s:?}"),
        1 => words.remove(0),
        _ => bail!("unexpected {:?} after the operand {:?}; quote values that contain spaces", words[1], words[0]),
    };
    if field == Field::Lease && op != pb::CompareOp::Equal {
        bail!("lease(NAME) only supports =, as in lease({arg}) = TOKEN");
    }
    let number = || -> Result<u64> {
        operand.parse::<u64>().map_err(|_| anyhow!("{name}(...) compares with a non-negative integer, got {operand:?}"))
    };
    Ok(match field {
        Field::Value => key_compare(arg, op, KeyTarget::Value(operand.clone().into_bytes())),
        Field::Version => key_compare(arg, op, KeyTarget::Version(number()?)),
        Field::Create => key_compare(arg, op, KeyTarget::CreateRevision(number()?)),
        Field::Mod => key_compare(arg, op, KeyTarget::ModRevision(number()?)),
        Field::Counter => pb::Compare {
            target: Some(CompareTarget::Counter(pb::CounterCompare { name: arg, op: op as i32, value: number()? })),
        },
        Field::Lease => {
            pb::Compare { target: Some(CompareTarget::Lease(pb::LeaseCompare { name: arg, token: number()? })) }
        }
        Field::Exists => unreachable!("handled above"),
    })
}

pub(super) fn key_compare(key: String, op: pb::CompareOp, target: KeyTarget) -> pb::Compare {
    pb::Compare {
        target: Some(CompareTarget::Key(pb::KeyCompare { key: key.into_bytes(), op: op as i32, target: Some(target) })),
    }
}

// ---------------------------------------------------------------------------------------------
// Operations

const OPS: &str = "put, get, del, incr, counter-get, counter-set or counter-del";

/// An operation's words split into options and positional arguments.
struct OpArgs {
    op: String,
    flags: Vec<String>,
    limit: Option<u64>,
    positional: Vec<String>,
}

impl OpArgs {
    /// Separates `--flag`s (only those in `allowed`; `--limit` takes a number) from the rest.
    fn parse(op: &str, words: &[String], allowed: &[&str]) -> Result<Self> {
        let mut a = OpArgs { op: op.to_owned(), flags: Vec::new(), limit: None, positional: Vec::new() };
        let mut it = words.iter();
        let mut options_ended = false;
        while let Some(w) = it.next() {
            if options_ended || !w.starts_with("--") {
                a.positional.push(w.clone());
            } else if w == "--" {
                options_ended = true;
            } else if !allowed.contains(&w.as_str()) {
                if allowed.is_empty() {
                    bail!("{op} takes no options, got {w:?}");
                }
                bail!("{op}: unknown option {w:?}; expected {}", allowed.join(", "));
            } else if w == "--limit" {
                let n = it.next().ok_or_else(|| anyhow!("{op}: --limit needs a number"))?;
                a.limit =
                    Some(n.parse().map_err(|_| anyhow!("{op}: --limit takes a non-negative integer, got {n:?}"))?);
            } else {
                a.flags.push(w.clone());
            }
        }
        Ok(a)
    }

    fn has(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f == flag)
    }

    /// Exactly `names.len()` positional arguments, the first of which (a key or counter name)
    /// must not be empty unless `empty_ok`.
    fn expect(&self, names: &[&str], empty_ok: bool) -> Result<Vec<String>> {
        let usage = format!("{} {}", self.op, names.join(" "));
        if self.positional.len() != names.len() {
            bail!("{} takes {} argument(s) ({usage}), got {}", self.op, names.len(), self.positional.len());
        }
        if !empty_ok && self.positional.first().is_some_and(String::is_empty) {
            bail!("{}: {} must not be empty", self.op, names[0]);
        }
        Ok(self.positional.clone())
    }
}

fn number(op: &str, what: &str, s: &str) -> Result<u64> {
    s.parse().map_err(|_| anyhow!("{op}: {what} must be a non-negative integer, got {s:?}"))
}

pub(super) fn key_range(key: String, prefix: bool) -> Option<pb::KeyRange> {
    Some(pb::KeyRange { key: key.into_bytes(), range_end: Vec::new(), prefix })
}

/// Parses one operation, e.g. `put k v`, `get --prefix k`, `del k`, `incr c 5`.
pub fn parse_op(s: &str) -> Result<pb::RequestOp> {
    let words = split_words(s)?;
    let Some((op, rest)) = words.split_first() else {
        bail!("empty operation; expected one of {OPS}");
    };
    let request = match op.as_str() {
        "put" => {
            let a = OpArgs::parse(op, rest, &[])?;
            let [key, value] = <[String; 2]>::try_from(a.expect(&["KEY", "VALUE"], false)?)
                .map_err(|_| anyhow!("put takes KEY VALUE"))?;
            Request::Put(pb::PutRequest { key: key.into_bytes(), value: value.into_bytes(), ..Default::default() })
        }
        "get" => {
            let a = OpArgs::parse(op, rest, &["--prefix", "--keys-only", "--count-only", "--limit"])?;
            let prefix = a.has("--prefix");
            let mut args = a.expect(&["KEY"], prefix)?;
            Request::Range(pb::RangeRequest {
                range: key_range(args.remove(0), prefix),
                limit: a.limit.unwrap_or(0),
                keys_only: a.has("--keys-only"),
                count_only: a.has("--count-only"),
                ..Default::default()
            })
        }
        "del" | "delete" => {
            let a = OpArgs::parse(op, rest, &["--prefix"])?;
            let prefix = a.has("--prefix");
            let mut args = a.expect(&["KEY"], prefix)?;
            Request::DeleteRange(pb::DeleteRangeRequest {
                range: key_range(args.remove(0), prefix),
                ..Default::default()
            })
        }
        "incr" => {
            let a = OpArgs::parse(op, rest, &[])?;
            let (name, delta) = match a.positional.len() {
                1 => (a.expect(&["NAME"], false)?.remove(0), 1),
                2 => {
                    let [name, n] = <[String; 2]>::try_from(a.expect(&["NAME", "N"], false)?)
                        .map_err(|_| anyhow!("incr takes NAME [N]"))?;
                    let delta = number(op, "N", &n)?;
                    (name, delta)
                }
                n => bail!("incr takes NAME [N], got {n} argument(s)"),
            };
            Request::CounterAdd(pb::CounterAddRequest { name, delta, request_id: None })
        }
        "counter-get" => {
            let a = OpArgs::parse(op, rest, &[])?;
            let name = a.expect(&["NAME"], false)?.remove(0);
            Request::CounterGet(pb::CounterGetRequest { name, serializable: false, min_revision: 0 })
        }
        "counter-set" => {
            let a = OpArgs::parse(op, rest, &[])?;
            let [name, n] = <[String; 2]>::try_from(a.expect(&["NAME", "N"], false)?)
                .map_err(|_| anyhow!("counter-set takes NAME N"))?;
            let value = number(op, "N", &n)?;
            Request::CounterSet(pb::CounterSetRequest { name, value, request_id: None })
        }
        "counter-del" => {
            let a = OpArgs::parse(op, rest, &[])?;
            let name = a.expect(&["NAME"], false)?.remove(0);
            Request::CounterDelete(pb::CounterDeleteRequest { name, request_id: None })
        }
        other => bail!("unknown operation {other:?}; expected one of {OPS}"),
    };
    Ok(pb::RequestOp { request: Some(request) })
}
