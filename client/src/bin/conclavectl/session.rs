//! `session open|list|info|close`.

use std::io::Write;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use conclave_client::proto as pb;
use conclave_client::{Client, Session, SessionState};
use serde::Serialize;
use tokio::signal::unix::{signal, SignalKind};

use crate::output::{json_line, lossy, table, Format};
use crate::Globals;

/// Session subcommands.
#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// Opens a session and prints its id on the first line (json: {"session_id":N,"ttl_ms":N}).
    /// Without --keepalive it expires after TTL unless something keeps it alive. With
    /// --keepalive, keeps it alive until SIGINT/SIGTERM (then closes it and exits 0);
    /// connection-state changes go to stderr, and an expired session exits 1.
    Open(OpenArgs),
    /// Lists the live sessions: id, TTL, remaining time, number of keys, leases.
    List,
    /// One session's TTL, remaining time, keys and leases (as one `session list` element).
    Info {
        /// Session id.
        id: u64,
    },
    /// Closes a session: deletes its ephemeral keys and releases its leases at once. Prints the
    /// number of keys deleted (json: {"deleted_keys":N,"released_leases":[..],"revision":N}).
    Close {
        /// Session id.
        id: u64,
    },
}

/// `session open` flags.
#[derive(Args, Debug)]
pub struct OpenArgs {
    /// Time to live in seconds (fractions allowed, e.g. 2.5); the cluster decides the valid
    /// range (at least 2 s).
    #[arg(value_name = "TTL", value_parser = parse_ttl_ms)]
    pub ttl_ms: u64,
    /// Stay running and keep the session alive until killed.
    #[arg(long)]
    pub keepalive: bool,
}

/// Seconds (non-negative, fractions allowed) as whole milliseconds (rounded, saturating).
pub fn secs_to_ms(s: &str) -> Result<u64, String> {
    let secs: f64 = s.trim().parse().map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    if !(secs.is_finite() && secs >= 0.0) {
        return Err(format!("{s:?}: expected a non-negative number of seconds"));
    }
    // `as` saturates: an absurd TTL becomes u64::MAX ms, which the server rejects with its range.
    Ok((secs * 1000.0).round() as u64)
}

fn parse_ttl_ms(s: &str) -> Result<u64, String> {
    secs_to_ms(s)
}

/// Milliseconds as seconds for humans: `2s`, `2.5s`, `0.125s`.
pub fn human_secs(ms: u64) -> String {
    match ms % 1000 {
        0 => format!("{}s", ms / 1000),
        frac => format!("{}.{}s", ms / 1000, format!("{frac:03}").trim_end_matches('0')),
    }
}

#[derive(Serialize)]
struct OpenJson {
    session_id: u64,
    ttl_ms: u64,
}

/// One session in JSON (`session list` element, `session info`).
#[derive(Serialize, Debug, PartialEq)]
struct SessionJson {
    session_id: u64,
    ttl_ms: u64,
    remaining_ms: u64,
    keys: Vec<String>,
    leases: Vec<String>,
}

impl From<&pb::SessionStatus> for SessionJson {
    fn from(s: &pb::SessionStatus) -> Self {
        Self {
            session_id: s.session_id,
            ttl_ms: s.ttl_ms,
            remaining_ms: s.remaining_ms,
            keys: s.keys.iter().map(|k| lossy(k)).collect(),
            leases: s.leases.clone(),
        }
    }
}

#[derive(Serialize)]
struct ListJson {
    sessions: Vec<SessionJson>,
}

#[derive(Serialize)]
struct CloseJson {
    deleted_keys: u64,
    released_leases: Vec<String>,
    revision: u64,
}

/// Runs a session subcommand.
pub async fn run(g: &Globals, out: &mut dyn Write, cmd: SessionCommand) -> Result<()> {
    match cmd {
        SessionCommand::Open(a) => open(g, out, &a).await,
        SessionCommand::List => {
            let client = g.client().await?;
            let mut sessions = client.session_list().await.context("session list")?;
            sessions.sort_by_key(|s| s.session_id);
            print_sessions(g, out, &sessions, true)
        }
        SessionCommand::Info { id } => {
            let client = g.client().await?;
            let s = client.session_info(id).await.with_context(|| format!("session info {id}"))?;
            print_sessions(g, out, std::slice::from_ref(&s), false)
        }
        SessionCommand::Close { id } => {
            let client = g.client().await?;
            let r = client.session_close(id).await.with_context(|| format!("session close {id}"))?;
            match g.format {
                Format::Text => writeln!(out, "{}", r.deleted_keys)?,
                Format::Json => json_line(
                    out,
                    &CloseJson {
                        deleted_keys: r.deleted_keys,
                        released_leases: r.released_leases,
                        revision: r.header.map_or(0, |h| h.revision),
                    },
                )?,
            }
            Ok(())
        }
    }
}

fn print_sessions(g: &Globals, out: &mut dyn Write, sessions: &[pb::SessionStatus], list: bool) -> Result<()> {
    match g.format {
        Format::Json if list => {
            json_line(out, &ListJson { sessions: sessions.iter().map(SessionJson::from).collect() })?;
        }
        Format::Json => {
            for s in sessions {
                json_line(out, &SessionJson::from(s))?;
            }
        }
        Format::Text => {
            let rows: Vec<Vec<String>> = sessions
                .iter()
                .map(|s| {
                    vec![
                        s.session_id.to_string(),
                        human_secs(s.ttl_ms),
                        human_secs(s.remaining_ms),
                        s.keys.len().to_string(),
                        if s.leases.is_empty() { "-".into() } else { s.leases.join(",") },
                    ]
                })
                .collect();
            table(out, &["ID", "TTL", "REMAINING", "KEYS", "LEASES"], &rows)?;
        }
    }
    Ok(())
}

/// `session open TTL [--keepalive]`.
async fn open(g: &Globals, out: &mut dyn Write, a: &OpenArgs) -> Result<()> {
    // Signal handlers first: a script may signal as soon as it has read the id.
    let signals = if a.keepalive {
        let int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
        let term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        Some((int, term))
    } else {
        None
    };
    let client = g.client().await?;
    let ttl = Duration::from_millis(a.ttl_ms);
    let id = client.session_open(ttl).await.with_context(|| format!("session open (TTL {})", human_secs(a.ttl_ms)))?;
    match g.format {
        Format::Text => writeln!(out, "{id}")?,
        Format::Json => json_line(out, &OpenJson { session_id: id, ttl_ms: a.ttl_ms })?,
    }
    out.flush()?;
    let Some((mut int, mut term)) = signals else { return Ok(()) };
    keep_alive(&client, id, ttl, &mut int, &mut term).await
}

/// Keeps session `id` alive until a signal (close it, Ok) or its expiry (Err).
async fn keep_alive(
    client: &Client,
    id: u64,
    ttl: Duration,
    int: &mut tokio::signal::unix::Signal,
    term: &mut tokio::signal::unix::Signal,
) -> Result<()> {
    let session = Session::attach(client, id, ttl);
    let mut states = session.subscribe();
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            changed = states.changed() => {
                // A closed channel has no unseen state (an expiry would have been seen first).
                if changed.is_err() {
                    bail!("session {id}: the keep-alive task stopped");
                }
                let state = *states.borrow_and_update();
                match state {
                    SessionState::Expired => bail!(
                        "session {id} expired (no keep-alive succeeded within its TTL, or the cluster dropped it)"
                    ),
                    SessionState::Suspended => {
                        eprintln!("session {id}: suspended (a keep-alive failed; retrying, it may still be alive)")
                    }
                    SessionState::Reconnected => eprintln!("session {id}: reconnected (keep-alives succeed again)"),
                    SessionState::Connected => eprintln!("session {id}: connected"),
                }
            }
        }
    }
    session.close().await.with_context(|| format!("closing session {id}"))?;
    eprintln!("session {id}: closed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_parse_to_millis() {
        assert_eq!(secs_to_ms("2"), Ok(2000));
        assert_eq!(secs_to_ms("2.5"), Ok(2500));
        assert_eq!(secs_to_ms("0.1"), Ok(100));
        assert_eq!(secs_to_ms("0"), Ok(0));
        assert_eq!(secs_to_ms("1e30"), Ok(u64::MAX));
        assert!(secs_to_ms("-1").is_err());
        assert!(secs_to_ms("NaN").is_err());
        assert!(secs_to_ms("inf").is_err());
        assert!(secs_to_ms("two").is_err());
    }

    #[test]
    fn human_seconds() {
        assert_eq!(human_secs(2000), "2s");
        assert_eq!(human_secs(2500), "2.5s");
        assert_eq!(human_secs(125), "0.125s");
        assert_eq!(human_secs(0), "0s");
    }
}
