//! `counter incr|get|set|del`.

use std::io::Write;

use anyhow::{Context, Result};
use clap::Subcommand;
use serde::Serialize;

use crate::output::{json_line, Format};
use crate::Globals;

/// Counter subcommands.
#[derive(Subcommand, Debug)]
pub enum CounterCommand {
    /// Adds to a counter atomically (exactly once) and prints the PREVIOUS value
    /// (json: {"previous":N,"value":N}).
    Incr {
        /// Counter name.
        name: String,
        /// Amount to add.
        #[arg(long, value_name = "N", default_value_t = 1)]
        by: u64,
    },
    /// Prints a counter's value (0 when it does not exist).
    Get {
        /// Counter name.
        name: String,
        /// Serve from the contacted node's local state (faster, may be stale).
        #[arg(long)]
        serializable: bool,
    },
    /// Sets a counter and prints the previous value.
    Set {
        /// Counter name.
        name: String,
        /// New value.
        value: u64,
    },
    /// Deletes a counter; prints 1 if it existed, else 0.
    Del {
        /// Counter name.
        name: String,
    },
}

#[derive(Serialize)]
struct IncrJson {
    previous: u64,
    value: u64,
}

#[derive(Serialize)]
struct GetJson {
    value: u64,
    exists: bool,
    mod_revision: u64,
    revision: u64,
}

#[derive(Serialize)]
struct SetJson {
    previous: u64,
}

#[derive(Serialize)]
struct DelJson {
    deleted: u64,
}

/// Runs a counter subcommand.
pub async fn run(g: &Globals, out: &mut dyn Write, cmd: CounterCommand) -> Result<()> {
    let client = g.client().await?;
    match cmd {
        CounterCommand::Incr { name, by } => {
            let r = client.counter_add_full(&name, by).await.with_context(|| format!("counter incr {name:?}"))?;
            match g.format {
                Format::Text => writeln!(out, "{}", r.previous)?,
                Format::Json => json_line(out, &IncrJson { previous: r.previous, value: r.value })?,
            }
        }
        CounterCommand::Get { name, serializable } => {
            let r = client.counter_get(&name, serializable).await.with_context(|| format!("counter get {name:?}"))?;
            match g.format {
                Format::Text => writeln!(out, "{}", r.value)?,
                Format::Json => json_line(
                    out,
                    &GetJson {
                        value: r.value,
                        exists: r.exists,
                        mod_revision: r.mod_revision,
                        revision: r.header.map_or(0, |h| h.revision),
                    },
                )?,
            }
        }
        CounterCommand::Set { name, value } => {
            let previous = client.counter_set(&name, value).await.with_context(|| format!("counter set {name:?}"))?;
            match g.format {
                Format::Text => writeln!(out, "{previous}")?,
                Format::Json => json_line(out, &SetJson { previous })?,
            }
        }
        CounterCommand::Del { name } => {
            let existed = client.counter_delete(&name).await.with_context(|| format!("counter del {name:?}"))?;
            let deleted = u64::from(existed);
            match g.format {
                Format::Text => writeln!(out, "{deleted}")?,
                Format::Json => json_line(out, &DelJson { deleted })?,
            }
        }
    }
    Ok(())
}
