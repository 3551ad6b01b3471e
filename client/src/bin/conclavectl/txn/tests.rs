//! Parser and request-building tests of `conclavectl txn`.

use super::parse::{key_compare, key_range};
use super::*;
use anyhow::anyhow;
use pb::compare::Target as CompareTarget;
use pb::key_compare::Target as KeyTarget;

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
    let put = |k: &str, v: &str| Request::Put(pb::PutRequest { key: k.into(), value: v.into(), ..Default::default() });
    assert_eq!(req("put k v")?, put("k", "v"));
    assert_eq!(req(r#"put "a key" 'a value'"#)?, put("a key", "a value"));
    assert_eq!(req("put k ''")?, put("k", ""));
    assert_eq!(req("put -- --k v")?, put("--k", "v"));

    let range = |k: &str, prefix: bool| pb::RangeRequest { range: key_range(k.into(), prefix), ..Default::default() };
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

    let add = |n: &str, delta| Request::CounterAdd(pb::CounterAddRequest { name: n.into(), delta, request_id: None });
    assert_eq!(req("incr c")?, add("c", 1));
    assert_eq!(req("incr c 10")?, add("c", 10));
    assert_eq!(
        req("counter-get c")?,
        Request::CounterGet(pb::CounterGetRequest { name: "c".into(), serializable: false, min_revision: 0 })
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
                response: Some(Response::Range(pb::RangeResponse { kvs: vec![kv], count: 1, ..Default::default() })),
            },
            pb::ResponseOp {
                response: Some(Response::CounterAdd(pb::CounterAddResponse { previous: 4, value: 5, header: None })),
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
    assert_eq!(String::from_utf8(buf)?, "FAILURE\nfencing failure: lease \"l\" presented token 3, current token 5\n");
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
