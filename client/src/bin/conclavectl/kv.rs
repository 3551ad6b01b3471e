//! `put`, `get` and `del`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Args;
use conclave_client::proto as pb;
use conclave_client::GetOptions;
use serde::Serialize;

use crate::output::{json_kvs, json_line, text_range, Format, JsonKv, TextRange};
use crate::Globals;

/// `get` flags.
#[derive(Args, Debug)]
pub struct GetArgs {
    /// The key (or prefix with --prefix; `--prefix ""` reads every key).
    pub key: String,
    /// Every key starting with KEY.
    #[arg(long, conflicts_with = "range_end")]
    pub prefix: bool,
    /// Keys in [KEY, END).
    #[arg(long, value_name = "END")]
    pub range_end: Option<String>,
    /// Serve from the contacted node's local state (faster, may be stale).
    #[arg(long)]
    pub serializable: bool,
    /// Read at this past revision (0 = current).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rev: u64,
    /// At most N keys (0 = no limit).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: u64,
    /// Print only the keys.
    #[arg(long)]
    pub keys_only: bool,
    /// Print only the number of keys.
    #[arg(long)]
    pub count_only: bool,
}

#[derive(Serialize)]
struct PutJson {
    revision: u64,
}

#[derive(Serialize)]
struct GetJson {
    revision: u64,
    kvs: Vec<JsonKv>,
    count: u64,
    more: bool,
}

#[derive(Serialize)]
struct DelJson {
    deleted: u64,
    revision: u64,
}

/// `put KEY VALUE [--session ID]`.
pub async fn put(g: &Globals, out: &mut dyn Write, key: &str, value: &str, session: Option<u64>) -> Result<()> {
    let client = g.client().await?;
    let revision = match session {
        Some(id) => {
            client.put_ephemeral(key, value, id).await.with_context(|| format!("put {key:?} --session {id}"))?
        }
        None => client.put(key, value).await.with_context(|| format!("put {key:?}"))?,
    };
    match g.format {
        Format::Text => writeln!(out, "OK")?,
        Format::Json => json_line(out, &PutJson { revision })?,
    }
    Ok(())
}

/// `get KEY [flags]`.
pub async fn get(g: &Globals, out: &mut dyn Write, a: &GetArgs) -> Result<()> {
    let client = g.client().await?;
    let opts = GetOptions {
        prefix: a.prefix,
        range_end: a.range_end.clone().map(String::into_bytes).unwrap_or_default(),
        serializable: a.serializable,
        revision: a.rev,
        limit: a.limit,
        keys_only: a.keys_only,
        count_only: a.count_only,
    };
    let r = client.get_with(&a.key, opts).await.with_context(|| format!("get {:?}", a.key))?;
    match g.format {
        Format::Text => {
            text_range(out, &r.kvs, r.count, TextRange { keys_only: a.keys_only, count_only: a.count_only })?
        }
        Format::Json => {
            json_line(out, &GetJson { revision: r.revision, kvs: json_kvs(&r.kvs), count: r.count, more: r.more })?
        }
    }
    Ok(())
}

/// `del KEY [--prefix]`.
pub async fn del(g: &Globals, out: &mut dyn Write, key: &str, prefix: bool) -> Result<()> {
    let client = g.client().await?;
    let req = pb::DeleteRangeRequest {
        range: Some(pb::KeyRange { key: key.as_bytes().to_vec(), range_end: Vec::new(), prefix }),
        ..Default::default()
    };
    let resp = client.delete_request(req).await.with_context(|| format!("del {key:?}"))?;
    match g.format {
        Format::Text => writeln!(out, "{}", resp.deleted)?,
        Format::Json => {
            json_line(out, &DelJson { deleted: resp.deleted, revision: resp.header.map_or(0, |h| h.revision) })?
        }
    }
    Ok(())
}
