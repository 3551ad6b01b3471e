//! `member add | promote | remove` and `move-leader`: membership changes and leadership
//! transfer (leader only; the client follows it).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use conclave_client::{Error, Reason};
use serde::Serialize;

use crate::output::{json_line, Format};
use crate::Globals;

/// `member add` arguments.
#[derive(Args, Debug)]
pub struct AddArgs {
    /// The new member's id (never reused).
    pub id: u64,
    /// Its peer (Raft) address, host:port.
    pub peer_addr: String,
    /// Its client address, shown in member lists before it starts.
    #[arg(long, value_name = "HOST:PORT", default_value = "")]
    pub client_addr: String,
    /// Keep it a learner (promote later with `member promote`).
    #[arg(long)]
    pub learner: bool,
    /// Without --learner: how long to wait for it to catch up before promoting it, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    pub promote_wait: u64,
}

#[derive(Serialize)]
struct Done<'a> {
    id: u64,
    action: &'a str,
}

fn done(g: &Globals, out: &mut dyn Write, id: u64, action: &str, text: &str) -> Result<()> {
    match g.format {
        Format::Json => json_line(out, &Done { id, action }),
        Format::Text => Ok(writeln!(out, "{text}")?),
    }
}

/// `member add`.
pub async fn add(g: &Globals, out: &mut dyn Write, args: &AddArgs) -> Result<()> {
    let client = g.client().await?;
    client.member_add(args.id, &args.peer_addr, &args.client_addr).await.context("member add")?;
    if args.learner {
        return done(
            g,
            out,
            args.id,
            "added-learner",
            &format!(
                "Member {} added as a learner. Start it with an empty data dir and \
                 `conclave serve --node-id {} --peer-addr {} --join {}`, then `conclavectl member promote {}`.",
                args.id,
                args.id,
                args.peer_addr,
                g.endpoints.join(","),
                args.id
            ),
        );
    }
    eprintln!(
        "member {} added as a learner; start it with --join {} and an empty data dir; waiting up to {} s to promote it",
        args.id,
        g.endpoints.join(","),
        args.promote_wait
    );
    let deadline = Instant::now() + Duration::from_secs(args.promote_wait);
    loop {
        match client.member_promote(args.id).await {
            Ok(_) => return done(g, out, args.id, "added-voter", &format!("Member {} added and promoted to a voter.", args.id)),
            Err(e) if e.reason() == Some(Reason::LearnerNotReady) && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e @ Error::Status { .. }) if e.reason() == Some(Reason::LearnerNotReady) => bail!(
                "member {} stays a learner: it has not caught up within {} s ({e}); run `conclavectl member promote {}` once it has",
                args.id,
                args.promote_wait,
                args.id
            ),
            Err(e) => return Err(e).context("member promote"),
        }
    }
}

/// `member promote`.
pub async fn promote(g: &Globals, out: &mut dyn Write, id: u64) -> Result<()> {
    g.client().await?.member_promote(id).await.context("member promote")?;
    done(g, out, id, "promoted", &format!("Member {id} promoted to a voter."))
}

/// `member remove`.
pub async fn remove(g: &Globals, out: &mut dyn Write, id: u64, force: bool) -> Result<()> {
    g.client().await?.member_remove(id, force).await.context("member remove")?;
    done(g, out, id, "removed", &format!("Member {id} removed."))
}

#[derive(Serialize)]
struct Moved {
    leader: u64,
}

/// `move-leader`.
pub async fn move_leader(g: &Globals, out: &mut dyn Write, target: Option<u64>) -> Result<()> {
    let leader = g.client().await?.move_leader(target).await.context("move-leader")?;
    match g.format {
        Format::Json => json_line(out, &Moved { leader }),
        Format::Text => Ok(writeln!(out, "Leadership moved to member {leader}.")?),
    }
}
