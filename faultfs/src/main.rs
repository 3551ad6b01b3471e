//! `conclave-faultfs mount [--fsync-delay-ms N] BACKING MOUNTPOINT`: mounts the fault
//! filesystem in the foreground (every fsync answered N ms late: a slow disk).
//! SIGUSR1 cuts the power (unsynced changes lost); SIGTERM or SIGINT unmounts cleanly
//! (everything made durable) and exits. See the library documentation for the model.

use std::path::PathBuf;

use nix::sys::signal::{SigSet, Signal};

const USAGE: &str = "usage: conclave-faultfs mount [--fsync-delay-ms N] BACKING MOUNTPOINT\n\
                     SIGUSR1: power cut (unsynced changes lost); SIGTERM/SIGINT: clean unmount";

fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match args.as_slice() {
        [cmd, b, m] if cmd == "mount" => Some((0, b, m)),
        [cmd, flag, ms, b, m] if cmd == "mount" && flag == "--fsync-delay-ms" => ms.parse().ok().map(|ms| (ms, b, m)),
        _ => None,
    };
    let Some((delay_ms, backing, mountpoint)) = parsed else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    let options = conclave_faultfs::Options { fsync_delay: std::time::Duration::from_millis(delay_ms) };
    if let Err(e) = run(PathBuf::from(backing), PathBuf::from(mountpoint), options) {
        eprintln!("conclave-faultfs: {e}");
        std::process::exit(1);
    }
}

fn run(backing: PathBuf, mountpoint: PathBuf, options: conclave_faultfs::Options) -> std::io::Result<()> {
    // Blocked before the FUSE thread starts, so only `wait` below receives them.
    let mut signals = SigSet::empty();
    for s in [Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    signals.thread_block().map_err(std::io::Error::from)?;
    let fs = conclave_faultfs::FaultFs::mount_with(&backing, &mountpoint, options)?;
    println!("mounted {} over {} (pid {})", mountpoint.display(), backing.display(), std::process::id());
    while signals.wait().map_err(std::io::Error::from)? == Signal::SIGUSR1 {
        fs.power_cut()?;
        println!("power cut {}", fs.cuts());
    }
    fs.unmount()?;
    println!("unmounted {}", mountpoint.display());
    Ok(())
}
