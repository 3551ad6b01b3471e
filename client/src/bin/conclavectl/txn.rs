//! `txn` and its mini-language: compares (`--compare`) and operations (`--then`, `--else`)
//! written as short strings, parsed into a proto `TxnRequest`.
//!
//! Parsing happens while clap reads the arguments, so a malformed compare or operation is a
//! usage error (exit code 2) and nothing is sent.

use std::io::Write;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use conclave_client::proto as pb;
use pb::compare::Target as CompareTarget;
use pb::key_compare::Target as KeyTarget;
use pb::request_op::Request;
use pb::response_op::Response;
use serde::Serialize;

use crate::output::{json_kvs, json_line, text_range, Format, JsonKv, TextRange};
use crate::Globals;

/// `conclavectl txn --help`.
pub const LONG_ABOUT: &str = r#"Runs a transaction atomically, at one revision: if every --compare holds, the --then
operations run, otherwise the --else operations. Each flag may be repeated; operations run in
the order given.

Output (text): SUCCESS or FAILURE, then the result of each operation that ran, in order:
OK for put, the key and value lines for get, the number deleted for del, the previous value
for incr and counter-set, the value for counter-get, 1 or 0 for counter-del.
Output (json): {"succeeded":bool,"revision":N,"responses":[{"op":"put"}, {"op":"get","kvs":[..],
"count":N,"more":bool}, {"op":"del","deleted":N}, {"op":"incr","previous":N,"value":N},
{"op":"counter-get","value":N,"exists":bool}, {"op":"counter-set","previous":N},
{"op":"counter-del","deleted":N}]}.

Compares (--compare), all of which must hold:
  value(KEY) OP VALUE     the key's value (bytes; a missing key never matches)
  version(KEY) OP N       puts since the key's creation (0 when missing)
  create(KEY) OP N        revision that created the key (0 when missing)
  mod(KEY) OP N           revision of the key's last change (0 when missing)
  exists(KEY)             the key exists
  !exists(KEY)            the key does not exist
  counter(NAME) OP N      a counter's value (a missing counter is 0)
  lease(NAME) = TOKEN     fencing guard: lease NAME is held with exactly this token; when it
                          is not, the whole transaction is rejected (neither branch runs) and
                          FAILURE is followed by a "fencing failure: ..." line (json:
                          "fencing_failure":{"lease":..,"presented_token":N,"current_token":N})
where OP is one of  =  !=  >  <   (== is accepted for =).

Operations (--then, --else):
  put KEY VALUE
  get [--prefix] [--keys-only] [--count-only] [--limit N] KEY
  del [--prefix] KEY
  incr NAME [N]           add N (default 1) to a counter
  counter-get NAME
  counter-set NAME N
  counter-del NAME

Quoting: a KEY, VALUE or NAME may be written 'single-quoted' (taken literally) or
"double-quoted" (\" and \\ are escapes) to contain spaces, parentheses or quotes. A `--` ends
an operation's options (for keys starting with --). Quote the whole argument for your shell
as well, as in the examples.

Examples:
  # take a lock only if nobody holds it; otherwise show the holder
  conclavectl txn --compare '!exists(locks/db)' --then 'put locks/db worker-1' --else 'get locks/db'

  # compare-and-swap a value containing spaces
  conclavectl txn --compare 'value(config/mode) = "read only"' --then 'put config/mode "read write"'

  # update only if nobody changed the key since revision 42, and bump a fencing counter
  conclavectl txn --compare 'mod(leader) = 42' --then 'put leader node-2' --then 'incr epoch'

  # counter guard
  conclavectl txn --compare 'counter(jobs) < 10' --then 'incr jobs' --else 'counter-get jobs'"#;

/// `txn` flags.
#[derive(Args, Debug)]
pub struct TxnArgs {
    /// A condition, e.g. 'value(KEY) = VAL', 'version(KEY) > 3', '!exists(KEY)', 'counter(NAME) < 5'.
    #[arg(long = "compare", value_name = "COMPARE", value_parser = compare_arg)]
    pub compares: Vec<pb::Compare>,
    /// An operation run when every compare holds, e.g. 'put KEY VALUE', 'del --prefix KEY', 'incr NAME'.
    #[arg(long = "then", value_name = "OP", value_parser = op_arg)]
    pub then_ops: Vec<pb::RequestOp>,
    /// An operation run when a compare fails, e.g. 'get KEY'.
    #[arg(long = "else", value_name = "OP", value_parser = op_arg)]
    pub else_ops: Vec<pb::RequestOp>,
}

fn compare_arg(s: &str) -> Result<pb::Compare, String> {
    parse_compare(s).map_err(|e| format!("{e:#}"))
}

fn op_arg(s: &str) -> Result<pb::RequestOp, String> {
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

fn key_compare(key: String, op: pb::CompareOp, target: KeyTarget) -> pb::Compare {
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

fn key_range(key: String, prefix: bool) -> Option<pb::KeyRange> {
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
            Request::CounterGet(pb::CounterGetRequest { name, serializable: false })
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

/// The request `txn` sends (its request id is filled in by the client).
pub fn build_request(a: &TxnArgs) -> pb::TxnRequest {
    pb::TxnRequest {
        compare: a.compares.clone(),
        success: a.then_ops.clone(),
        failure: a.else_ops.clone(),
        request_id: None,
    }
}

// ---------------------------------------------------------------------------------------------
// Running and printing

#[derive(Serialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
enum OpJson {
    Put,
    Get { kvs: Vec<JsonKv>, count: u64, more: bool },
    Del { deleted: u64 },
    Incr { previous: u64, value: u64 },
    CounterGet { value: u64, exists: bool },
    CounterSet { previous: u64 },
    CounterDel { deleted: u64 },
    Unknown,
}

impl From<&pb::ResponseOp> for OpJson {
    fn from(r: &pb::ResponseOp) -> Self {
        match &r.response {
            Some(Response::Put(_)) => OpJson::Put,
            Some(Response::Range(r)) => OpJson::Get { kvs: json_kvs(&r.kvs), count: r.count, more: r.more },
            Some(Response::DeleteRange(d)) => OpJson::Del { deleted: d.deleted },
            Some(Response::CounterAdd(a)) => OpJson::Incr { previous: a.previous, value: a.value },
            Some(Response::CounterGet(g)) => OpJson::CounterGet { value: g.value, exists: g.exists },
            Some(Response::CounterSet(s)) => OpJson::CounterSet { previous: s.previous },
            Some(Response::CounterDelete(d)) => OpJson::CounterDel { deleted: u64::from(d.deleted) },
            None => OpJson::Unknown,
        }
    }
}

#[derive(Serialize)]
struct FencingJson<'a> {
    lease: &'a str,
    presented_token: u64,
    current_token: u64,
}

#[derive(Serialize)]
struct TxnJson<'a> {
    succeeded: bool,
    revision: u64,
    responses: Vec<OpJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fencing_failure: Option<FencingJson<'a>>,
}

/// Writes a transaction's outcome; `ops` are the operations of the branch that ran.
pub fn print_response(
    out: &mut dyn Write,
    format: Format,
    resp: &pb::TxnResponse,
    ops: &[pb::RequestOp],
) -> Result<()> {
    if format == Format::Json {
        let responses = resp.responses.iter().map(OpJson::from).collect();
        let revision = resp.header.as_ref().map_or(0, |h| h.revision);
        let fencing_failure = resp.fencing_failure.as_ref().map(|f| FencingJson {
            lease: &f.lease,
            presented_token: f.presented_token,
            current_token: f.current_token,
        });
        return json_line(out, &TxnJson { succeeded: resp.succeeded, revision, responses, fencing_failure });
    }
    writeln!(out, "{}", if resp.succeeded { "SUCCESS" } else { "FAILURE" })?;
    if let Some(f) = &resp.fencing_failure {
        writeln!(
            out,
            "fencing failure: lease {:?} presented token {}, current token {}",
            f.lease, f.presented_token, f.current_token
        )?;
    }
    for (i, r) in resp.responses.iter().enumerate() {
        match &r.response {
            Some(Response::Put(_)) => writeln!(out, "OK")?,
            Some(Response::Range(range)) => {
                let how = match ops.get(i).and_then(|o| o.request.as_ref()) {
                    Some(Request::Range(req)) => TextRange { keys_only: req.keys_only, count_only: req.count_only },
                    _ => TextRange::default(),
                };
                text_range(out, &range.kvs, range.count, how)?;
            }
            Some(Response::DeleteRange(d)) => writeln!(out, "{}", d.deleted)?,
            Some(Response::CounterAdd(a)) => writeln!(out, "{}", a.previous)?,
            Some(Response::CounterGet(g)) => writeln!(out, "{}", g.value)?,
            Some(Response::CounterSet(s)) => writeln!(out, "{}", s.previous)?,
            Some(Response::CounterDelete(d)) => writeln!(out, "{}", u64::from(d.deleted))?,
            None => writeln!(out, "?")?,
        }
    }
    Ok(())
}

/// `txn`.
pub async fn run(g: &Globals, out: &mut dyn Write, a: &TxnArgs) -> Result<()> {
    if a.compares.is_empty() && a.then_ops.is_empty() && a.else_ops.is_empty() {
        bail!("txn: nothing to do; give --compare, --then and/or --else (see conclavectl txn --help)");
    }
    let client = g.client().await?;
    let resp = client.txn(build_request(a)).await.context("txn")?;
    let ops = if resp.succeeded { &a.then_ops } else { &a.else_ops };
    print_response(out, g.format, &resp, ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_of<T: std::fmt::Debug>(r: Result<T>) -> String {
        match r {
            Ok(v) => panic!("expected an error, got {v:?}"),
            Err(e) => format!("{e:#}"),
        }
    }

    fn kc(key: &str, op: pb::CompareOp, target: KeyTarget) -> pb::Compare {
        key_compare(key.into(), op, target)
    }

    #[test]
    fn words() -> Result<()> {
        assert_eq!(split_words("  put  a   b ")?, ["put", "a", "b"]);
        assert_eq!(split_words(r#"put 'a b' "c d""#)?, ["put", "a b", "c d"]);
        assert_eq!(split_words(r#"put k """#)?, ["put", "k", ""]);
        assert_eq!(split_words(r#"put k ''"#)?, ["put", "k", ""]);
        assert_eq!(split_words(r#"a"b c"d"#)?, ["ab cd"]);
        assert_eq!(split_words(r#""say \"hi\" \\ \n""#)?, [r#"say "hi" \ \n"#]);
        assert_eq!(split_words(r#"'it''s' 'a\b'"#)?, ["its", r"a\b"]);
        assert_eq!(split_words(r"a\ b")?, ["a b"]);
        assert_eq!(split_words("ünï cödé")?, ["ünï", "cödé"]);
        assert!(split_words("")?.is_empty());
        assert!(err_of(split_words("put 'a")).contains("unterminated single quote"));
        assert!(err_of(split_words("put \"a")).contains("unterminated double quote"));
        assert!(err_of(split_words("a\\")).contains("backslash"));
        Ok(())
    }

    #[test]
    fn compares() -> Result<()> {
        use pb::CompareOp::*;
        assert_eq!(parse_compare("value(k) = v")?, kc("k", Equal, KeyTarget::Value(b"v".to_vec())));
        assert_eq!(parse_compare("value(k)==v")?, kc("k", Equal, KeyTarget::Value(b"v".to_vec())));
        assert_eq!(parse_compare("value(k) != 'a b'")?, kc("k", NotEqual, KeyTarget::Value(b"a b".to_vec())));
        assert_eq!(parse_compare(r#"value( a/b ) > "x""#)?, kc("a/b", Greater, KeyTarget::Value(b"x".to_vec())));
        assert_eq!(parse_compare("value(k) = ''")?, kc("k", Equal, KeyTarget::Value(Vec::new())));
        assert_eq!(parse_compare("value('a)b') < z")?, kc("a)b", Less, KeyTarget::Value(b"z".to_vec())));
        assert_eq!(parse_compare("version(k) > 3")?, kc("k", Greater, KeyTarget::Version(3)));
        assert_eq!(parse_compare("create(k) = 0")?, kc("k", Equal, KeyTarget::CreateRevision(0)));
        assert_eq!(parse_compare("create_revision(k)=7")?, kc("k", Equal, KeyTarget::CreateRevision(7)));
        assert_eq!(parse_compare("mod(k) < 10")?, kc("k", Less, KeyTarget::ModRevision(10)));
        assert_eq!(parse_compare("  exists(k)  ")?, kc("k", Equal, KeyTarget::Exists(true)));
        assert_eq!(parse_compare("!exists(k)")?, kc("k", Equal, KeyTarget::Exists(false)));
        assert_eq!(parse_compare("! exists ( 'a b' )")?, kc("a b", Equal, KeyTarget::Exists(false)));
        assert_eq!(
            parse_compare("lease(leader) = 42")?,
            pb::Compare { target: Some(CompareTarget::Lease(pb::LeaseCompare { name: "leader".into(), token: 42 })) }
        );
        assert_eq!(
            parse_compare("counter(jobs) = 5")?,
            pb::Compare {
                target: Some(CompareTarget::Counter(pb::CounterCompare {
                    name: "jobs".into(),
                    op: Equal as i32,
                    value: 5
                }))
            }
        );
        Ok(())
    }

    #[test]
    fn compare_errors() {
        let cases = [
            ("", "expected one of value(KEY)"),
            ("= 3", "expected one of value(KEY)"),
            ("size(k) = 3", "unknown compare target \"size\""),
            ("value k = 3", "expected '(' after \"value\""),
            ("value(k = 3", "missing ')'"),
            ("value('k) = 3", "unterminated single quote"),
            ("value('k' = 3", "expected ')' after the quoted argument"),
            ("value() = 3", "the key in value(...) must not be empty"),
            ("counter('') = 3", "the counter name in counter(...) must not be empty"),
            ("value(k)", "missing operator"),
            ("value(k) ~ 3", "expected an operator (=, !=, > or <)"),
            ("version(k) >= 3", "unsupported operator \">=\""),
            ("version(k) <= 3", "unsupported operator \"<=\""),
            ("value(k) =", "missing the operand"),
            ("value(k) = hello world", "quote values that contain spaces"),
            ("value(k) = 'open", "unterminated single quote"),
            ("version(k) = x", "non-negative integer, got \"x\""),
            ("mod(k) = -1", "non-negative integer, got \"-1\""),
            ("counter(c) = 99999999999999999999", "non-negative integer"),
            ("exists(k) = 1", "write exists(KEY) or !exists(KEY)"),
            ("!version(k) = 1", "'!' only negates exists"),
            ("lease(l) > 1", "lease(NAME) only supports ="),
            ("lease(l) = t", "non-negative integer, got \"t\""),
            ("lease() = 1", "the lease name in lease(...) must not be empty"),
        ];
        for (input, want) in cases {
            let got = err_of(parse_compare(input));
            assert!(got.contains(want), "parse_compare({input:?}) = {got:?}, want it to contain {want:?}");
        }
    }

    fn req(s: &str) -> Result<Request> {
        parse_op(s)?.request.ok_or_else(|| anyhow!("no request"))
    }

    #[test]
    fn ops() -> Result<()> {
        let put =
            |k: &str, v: &str| Request::Put(pb::PutRequest { key: k.into(), value: v.into(), ..Default::default() });
        assert_eq!(req("put k v")?, put("k", "v"));
        assert_eq!(req(r#"put "a key" 'a value'"#)?, put("a key", "a value"));
        assert_eq!(req("put k ''")?, put("k", ""));
        assert_eq!(req("put -- --k v")?, put("--k", "v"));

        let range =
            |k: &str, prefix: bool| pb::RangeRequest { range: key_range(k.into(), prefix), ..Default::default() };
        assert_eq!(req("get k")?, Request::Range(range("k", false)));
        assert_eq!(req("get --prefix a/")?, Request::Range(range("a/", true)));
        assert_eq!(req("get a/ --prefix")?, Request::Range(range("a/", true)));
        assert_eq!(req("get --prefix ''")?, Request::Range(range("", true)));
        assert_eq!(
            req("get --prefix --keys-only --count-only --limit 5 a")?,
            Request::Range(pb::RangeRequest { limit: 5, keys_only: true, count_only: true, ..range("a", true) })
        );

        let del = |k: &str, prefix: bool| {
            Request::DeleteRange(pb::DeleteRangeRequest { range: key_range(k.into(), prefix), ..Default::default() })
        };
        assert_eq!(req("del k")?, del("k", false));
        assert_eq!(req("delete k")?, del("k", false));
        assert_eq!(req("del --prefix p/")?, del("p/", true));

        let add =
            |n: &str, delta| Request::CounterAdd(pb::CounterAddRequest { name: n.into(), delta, request_id: None });
        assert_eq!(req("incr c")?, add("c", 1));
        assert_eq!(req("incr c 10")?, add("c", 10));
        assert_eq!(
            req("counter-get c")?,
            Request::CounterGet(pb::CounterGetRequest { name: "c".into(), serializable: false })
        );
        assert_eq!(
            req("counter-set c 42")?,
            Request::CounterSet(pb::CounterSetRequest { name: "c".into(), value: 42, request_id: None })
        );
        assert_eq!(
            req("counter-del 'my counter'")?,
            Request::CounterDelete(pb::CounterDeleteRequest { name: "my counter".into(), request_id: None })
        );
        Ok(())
    }

    #[test]
    fn op_errors() {
        let cases = [
            ("", "empty operation"),
            ("   ", "empty operation"),
            ("set k v", "unknown operation \"set\""),
            ("put k", "put takes 2 argument(s) (put KEY VALUE), got 1"),
            ("put k v w", "got 3"),
            ("put k hello world", "got 3"),
            ("put '' v", "put: KEY must not be empty"),
            ("put --prefix k v", "put takes no options"),
            ("get", "get takes 1 argument(s)"),
            ("get ''", "get: KEY must not be empty"),
            ("get --from k", "unknown option \"--from\""),
            ("get --limit", "--limit needs a number"),
            ("get --limit x k", "--limit takes a non-negative integer"),
            ("del a b", "del takes 1 argument(s)"),
            ("del ''", "KEY must not be empty"),
            ("incr", "incr takes NAME [N], got 0 argument(s)"),
            ("incr ''", "incr: NAME must not be empty"),
            ("incr c x", "N must be a non-negative integer, got \"x\""),
            ("incr c -1", "N must be a non-negative integer, got \"-1\""),
            ("incr c 1 2", "incr takes NAME [N], got 3 argument(s)"),
            ("counter-set c", "counter-set takes 2 argument(s)"),
            ("counter-set c 1.5", "non-negative integer"),
            ("counter-get ''", "NAME must not be empty"),
            ("counter-del", "counter-del takes 1 argument(s)"),
            ("put 'k v", "unterminated single quote"),
        ];
        for (input, want) in cases {
            let got = err_of(parse_op(input));
            assert!(got.contains(want), "parse_op({input:?}) = {got:?}, want it to contain {want:?}");
        }
    }

    #[test]
    fn clap_reports_parse_errors_as_usage_errors() -> Result<()> {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct T {
            #[command(flatten)]
            txn: TxnArgs,
        }
        let t = T::try_parse_from([
            "t",
            "--compare",
            "!exists(lock)",
            "--then",
            "put lock me",
            "--then",
            "incr n",
            "--else",
            "get lock",
        ])?;
        let r = build_request(&t.txn);
        assert_eq!(r.compare.len(), 1);
        assert_eq!(r.success.len(), 2);
        assert_eq!(r.failure.len(), 1);
        let e = T::try_parse_from(["t", "--compare", "value(k) ~ 1"]).err().ok_or_else(|| anyhow!("accepted"))?;
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("expected an operator"), "{e}");
        Ok(())
    }

    #[test]
    fn text_and_json_output() -> Result<()> {
        let kv = pb::KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 1,
            mod_revision: 2,
            version: 1,
            ..Default::default()
        };
        let resp = pb::TxnResponse {
            header: Some(pb::ResponseHeader { revision: 9, ..Default::default() }),
            succeeded: true,
            responses: vec![
                pb::ResponseOp { response: Some(Response::Put(pb::PutResponse::default())) },
                pb::ResponseOp {
                    response: Some(Response::Range(pb::RangeResponse {
                        kvs: vec![kv],
                        count: 1,
                        ..Default::default()
                    })),
                },
                pb::ResponseOp {
                    response: Some(Response::CounterAdd(pb::CounterAddResponse {
                        previous: 4,
                        value: 5,
                        header: None,
                    })),
                },
            ],
            ..Default::default()
        };
        let ops = [parse_op("put k v")?, parse_op("get k")?, parse_op("incr c")?];
        let mut buf = Vec::new();
        print_response(&mut buf, Format::Text, &resp, &ops)?;
        assert_eq!(String::from_utf8(buf)?, "SUCCESS\nOK\nk\nv\n4\n");
        let mut buf = Vec::new();
        print_response(&mut buf, Format::Json, &resp, &ops)?;
        assert_eq!(
            String::from_utf8(buf)?,
            concat!(
                r#"{"succeeded":true,"revision":9,"responses":[{"op":"put"},"#,
                r#"{"op":"get","kvs":[{"key":"k","value":"v","create_revision":1,"mod_revision":2,"version":1}],"count":1,"more":false},"#,
                r#"{"op":"incr","previous":4,"value":5}]}"#,
                "\n"
            )
        );
        let fenced = pb::TxnResponse {
            header: Some(pb::ResponseHeader { revision: 9, ..Default::default() }),
            fencing_failure: Some(pb::FencingFailure { lease: "l".into(), presented_token: 3, current_token: 5 }),
            ..Default::default()
        };
        let mut buf = Vec::new();
        print_response(&mut buf, Format::Text, &fenced, &[])?;
        assert_eq!(
            String::from_utf8(buf)?,
            "FAILURE\nfencing failure: lease \"l\" presented token 3, current token 5\n"
        );
        let mut buf = Vec::new();
        print_response(&mut buf, Format::Json, &fenced, &[])?;
        assert_eq!(
            String::from_utf8(buf)?,
            concat!(
                r#"{"succeeded":false,"revision":9,"responses":[],"#,
                r#""fencing_failure":{"lease":"l","presented_token":3,"current_token":5}}"#,
                "\n"
            )
        );
        Ok(())
    }
}
