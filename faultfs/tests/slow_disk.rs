//! The fsync delay through a real FUSE mount (needs /dev/fuse and root, as CI has).

use std::fs::{self, File};
use std::io::Write;
use std::time::{Duration, Instant};

use conclave_faultfs::{FaultFs, Options};
use tempfile::TempDir;

const DELAY: Duration = Duration::from_millis(400);

fn mount(tmp: &TempDir) -> FaultFs {
    let options = Options { fsync_delay: DELAY };
    FaultFs::mount_with(&tmp.path().join("backing"), &tmp.path().join("mnt"), options).expect("mount")
}

#[test]
fn syncs_answer_after_the_delay_and_stay_durable() {
    let tmp = TempDir::new().expect("tmp");
    let fs = mount(&tmp);
    let path = fs.mountpoint().join("log");
    let mut f = File::create(&path).expect("create");
    f.write_all(b"entry").expect("write");
    let t = Instant::now();
    f.sync_data().expect("fdatasync");
    assert!(t.elapsed() >= DELAY, "fdatasync answered after {:?}", t.elapsed());
    let t = Instant::now();
    File::open(fs.mountpoint()).and_then(|d| d.sync_all()).expect("fsync dir");
    assert!(t.elapsed() >= DELAY, "directory fsync answered after {:?}", t.elapsed());
    drop(f);
    fs.power_cut().expect("power cut");
    assert_eq!(fs::read(&path).expect("read after cut"), b"entry", "the delayed sync was durable");
}

#[test]
fn other_requests_are_served_while_a_sync_waits() {
    let tmp = TempDir::new().expect("tmp");
    let fs = mount(&tmp);
    let (a, b) = (fs.mountpoint().join("a"), fs.mountpoint().join("b"));
    fs::write(&b, b"other file").expect("write b");
    let mut f = File::create(&a).expect("create a");
    f.write_all(b"x").expect("write a");
    let syncing = std::thread::spawn(move || f.sync_all());
    // Wait (bounded) until the sync is queued, then use the mount while it waits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fs.syncs() == 0 {
        assert!(Instant::now() < deadline, "the fsync never reached the filesystem");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(fs::read(&b).expect("read b"), b"other file");
    fs::write(fs.mountpoint().join("c"), b"new").expect("write c");
    assert!(!syncing.is_finished(), "the other requests waited for the delayed fsync");
    syncing.join().expect("join").expect("fsync");
}
