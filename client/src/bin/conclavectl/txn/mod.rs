//! `txn` and its mini-language: compares (`--compare`) and operations (`--then`, `--else`)
//! written as short strings, parsed into a proto `TxnRequest`.
//!
//! Parsing happens while clap reads the arguments, so a malformed compare or operation is a
//! usage error (exit code 2) and nothing is sent.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::Args;
use conclave_client::proto as pb;
use pb::request_op::Request;
use pb::response_op::Response;
use serde::Serialize;

use crate::output::{json_kvs, json_line, text_range, Format, JsonKv, TextRange};
use crate::Globals;

mod parse;

use parse::{compare_arg, op_arg};
#[cfg(test)]
use parse::{parse_compare, parse_op, split_words};

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
mod tests;
