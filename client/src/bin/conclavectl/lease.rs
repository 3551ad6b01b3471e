//! `lease acquire|get|release`.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use conclave_client::Client;
use serde::Serialize;

use crate::output::{json_line, lossy, Format};
use crate::session::secs_to_ms;
use crate::{Globals, Reported};

/// Lease subcommands.
#[derive(Subcommand, Debug)]
pub enum LeaseCommand {
    /// Acquires a lease for a session; prints the fencing token (json:
    /// {"granted":true,"token":N,"holder":SESSION,"holder_info":..,"revision":N}). If another
    /// session holds it: `held by session S (token T)` on stderr (json: "granted":false with the
    /// other holder on stdout) and exit 1.
    Acquire(AcquireArgs),
    /// Shows a lease's holder (json: {"held","holder","holder_info","token","revision",
    /// "transitions"}; holder and holder_info are null when it is free).
    Get {
        /// Lease name.
        name: String,
        /// Serve from the contacted node's local state (faster, may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Releases a lease held with TOKEN; prints `OK` (json: {"revision":N}).
    Release {
        /// Lease name.
        name: String,
        /// The fencing token of the grant.
        #[arg(long, value_name = "T")]
        token: u64,
    },
}

/// `lease acquire` flags.
#[derive(Args, Debug)]
pub struct AcquireArgs {
    /// Lease name.
    pub name: String,
    /// The session that will hold it (see `session open`).
    #[arg(long, value_name = "ID")]
    pub session: u64,
    /// Free-form description of the holder (address, process id, ...).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub info: String,
    /// If another session holds it, wait up to SECS for its release (fractions allowed).
    #[arg(long, value_name = "SECS", value_parser = secs_to_ms, default_value = "0")]
    pub wait: u64,
}

#[derive(Serialize)]
struct AcquireJson {
    granted: bool,
    token: u64,
    holder: u64,
    holder_info: String,
    revision: u64,
}

#[derive(Serialize, Debug, PartialEq)]
struct GetJson {
    held: bool,
    holder: Option<u64>,
    holder_info: Option<String>,
    token: u64,
    revision: u64,
    transitions: u64,
}

#[derive(Serialize)]
struct ReleaseJson {
    revision: u64,
}

/// Runs a lease subcommand.
pub async fn run(g: &Globals, out: &mut dyn Write, cmd: LeaseCommand) -> Result<()> {
    match cmd {
        LeaseCommand::Acquire(a) => acquire(g, out, &a).await,
        LeaseCommand::Get { name, serializable } => {
            let client = g.client().await?;
            let r = client.lease_get(&name, serializable).await.with_context(|| format!("lease get {name:?}"))?;
            let holder = r.holder.filter(|_| r.held);
            let j = GetJson {
                held: r.held,
                holder: holder.as_ref().map(|h| h.session_id),
                holder_info: holder.as_ref().map(|h| lossy(&h.holder_info)),
                token: holder.as_ref().map_or(0, |h| h.token),
                revision: holder.as_ref().map_or(0, |h| h.grant_revision),
                transitions: r.transitions,
            };
            match g.format {
                Format::Json => json_line(out, &j)?,
                Format::Text => match (&j.holder, &j.holder_info) {
                    (Some(session), info) => {
                        let info = info.as_deref().filter(|i| !i.is_empty()).map(|i| format!(", info {i:?}"));
                        writeln!(
                            out,
                            "held by session {session} (token {}, granted at revision {}, {} transitions{})",
                            j.token,
                            j.revision,
                            j.transitions,
                            info.unwrap_or_default()
                        )?
                    }
                    (None, _) => writeln!(out, "free ({} transitions, last token {})", j.transitions, r.last_token)?,
                },
            }
            Ok(())
        }
        LeaseCommand::Release { name, token } => {
            let client = g.client().await?;
            let revision = client
                .lease_release(&name, token)
                .await
                .with_context(|| format!("lease release {name:?} --token {token}"))?;
            match g.format {
                Format::Text => writeln!(out, "OK")?,
                Format::Json => json_line(out, &ReleaseJson { revision })?,
            }
            Ok(())
        }
    }
}

/// `lease acquire NAME --session ID [--info TEXT] [--wait SECS]`.
async fn acquire(g: &Globals, out: &mut dyn Write, a: &AcquireArgs) -> Result<()> {
    // The server may hold the call for up to --wait: give attempts (and, unless --timeout was
    // given, the whole call) that much more time.
    let wait = Duration::from_millis(a.wait);
    let mut config = g.config();
    config.attempt_timeout += wait;
    match g.timeout {
        Some(t) => config.attempt_timeout = config.attempt_timeout.min(t),
        None => config.call_timeout += wait,
    }
    let client = Client::with_config(config).await?;
    let r = client
        .lease_acquire(&a.name, a.session, a.info.as_bytes(), a.wait)
        .await
        .with_context(|| format!("lease acquire {:?} --session {}", a.name, a.session))?;
    let holder = r.holder.unwrap_or_default();
    let j = AcquireJson {
        granted: r.granted,
        token: holder.token,
        holder: holder.session_id,
        holder_info: lossy(&holder.holder_info),
        revision: r.header.map_or(0, |h| h.revision),
    };
    match g.format {
        Format::Json => json_line(out, &j)?,
        Format::Text if r.granted => writeln!(out, "{}", j.token)?,
        Format::Text => {}
    }
    if !r.granted {
        out.flush()?;
        eprintln!("held by session {} (token {})", j.holder, j.token);
        return Err(Reported.into());
    }
    Ok(())
}
