//! `snapshot save FILE`: a backup of one member's state (the first endpoint given), written
//! atomically and verified against the member's size and CRC-32. Restore it with
//! `conclave restore FILE --data-dir D --node-id N --initial-cluster ...` on every new member.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Subcommand;
use serde::Serialize;

use crate::output::{json_line, Format};
use crate::Globals;

/// `snapshot` subcommands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Streams a consistent snapshot from the first endpoint into FILE (FILE.tmp, then
    /// renamed). Prints `Snapshot saved at FILE: revision R, N bytes, crc32 X` (json:
    /// {"file","revision","size","crc32","index","took_ms"}). The cluster keeps serving.
    Save {
        /// Where to write the backup.
        file: PathBuf,
    },
}

#[derive(Serialize)]
struct SavedJson<'a> {
    file: &'a str,
    revision: u64,
    size: u64,
    crc32: String,
    index: u64,
    took_ms: u64,
}

/// Runs a `snapshot` subcommand.
pub async fn run(g: &Globals, out: &mut dyn Write, cmd: SnapshotCommand) -> Result<()> {
    let SnapshotCommand::Save { file } = cmd;
    let client = g.client().await?;
    let started = Instant::now();
    let s = client.snapshot_save(&g.endpoints[0], &file).await?;
    let took_ms = started.elapsed().as_millis() as u64;
    let name = file.display().to_string();
    match g.format {
        Format::Json => json_line(
            out,
            &SavedJson {
                file: &name,
                revision: s.revision,
                size: s.size,
                crc32: format!("{:08x}", s.crc32),
                index: s.index,
                took_ms,
            },
        )?,
        Format::Text => {
            writeln!(out, "Snapshot saved at {name}: revision {}, {} bytes, crc32 {:08x}", s.revision, s.size, s.crc32)?
        }
    }
    Ok(())
}
