//! The power-loss model through a real FUSE mount (needs /dev/fuse and root, as CI has).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use conclave_faultfs::{FaultFs, OBJECTS};
use tempfile::TempDir;

struct Mounted {
    fs: Option<FaultFs>,
    backing: PathBuf,
    dir: PathBuf,
    _tmp: TempDir,
}

fn mount() -> Mounted {
    let tmp = TempDir::new().expect("tmp");
    let backing = tmp.path().join("backing");
    let dir = tmp.path().join("mnt");
    let fs = FaultFs::mount(&backing, &dir).expect("mount");
    Mounted { fs: Some(fs), backing, dir, _tmp: tmp }
}

impl Mounted {
    fn fs(&self) -> &FaultFs {
        self.fs.as_ref().expect("mounted")
    }
    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    fn cut(&self) {
        self.fs().power_cut().expect("power cut");
    }
}

fn sync_dir(dir: &Path) {
    File::open(dir).and_then(|d| d.sync_all()).expect("fsync dir");
}

/// Creates `name` with `data`, fsynced, its name made durable.
fn durable_file(m: &Mounted, name: &str, data: &[u8]) {
    let mut f = File::create(m.p(name)).expect("create");
    f.write_all(data).and_then(|()| f.sync_all()).expect("write");
    sync_dir(&m.dir);
}

fn read(path: &Path) -> Option<Vec<u8>> {
    fs::read(path).ok()
}

#[test]
fn unsynced_writes_are_lost_and_synced_writes_kept() {
    let m = mount();
    durable_file(&m, "a", b"durable");
    let mut f = OpenOptions::new().append(true).open(m.p("a")).expect("open");
    f.write_all(b" and lost").expect("write");
    assert_eq!(read(&m.p("a")).as_deref(), Some(&b"durable and lost"[..]), "reads see the cache");
    m.cut();
    assert_eq!(read(&m.p("a")).as_deref(), Some(&b"durable"[..]));
    assert_eq!(read(&m.backing.join("a")).as_deref(), Some(&b"durable"[..]), "the backing dir is the disk");
    // A handle from before the cut is dead, as its process would be.
    assert!(f.write_all(b"x").is_err(), "stale handle");
    let mut f = OpenOptions::new().append(true).open(m.p("a")).expect("open");
    f.write_all(b" and kept").and_then(|()| f.sync_data()).expect("write");
    m.cut();
    assert_eq!(read(&m.p("a")).as_deref(), Some(&b"durable and kept"[..]));
}

#[test]
fn a_new_name_needs_its_directory_fsynced() {
    let m = mount();
    let mut f = File::create(m.p("new")).expect("create");
    f.write_all(b"data").and_then(|()| f.sync_all()).expect("fsync file only");
    fs::create_dir(m.p("sub")).expect("mkdir");
    m.cut();
    assert_eq!(read(&m.p("new")), None, "fsync of the file does not make its name durable");
    assert!(!m.p("sub").exists(), "nor is an unsynced mkdir");
    durable_file(&m, "new", b"data");
    m.cut();
    assert_eq!(read(&m.p("new")).as_deref(), Some(&b"data"[..]));
}

#[test]
fn an_unlink_not_dir_synced_comes_back() {
    let m = mount();
    durable_file(&m, "gone", b"still here");
    fs::remove_file(m.p("gone")).expect("unlink");
    assert!(!m.p("gone").exists());
    m.cut();
    assert_eq!(read(&m.p("gone")).as_deref(), Some(&b"still here"[..]), "unlink was lost");
    fs::remove_file(m.p("gone")).expect("unlink");
    sync_dir(&m.dir);
    m.cut();
    assert!(!m.p("gone").exists(), "a dir-synced unlink stays");
    assert!(!m.backing.join("gone").exists());
}

#[test]
fn rename_is_durable_with_the_directory() {
    let m = mount();
    durable_file(&m, "key", b"old");
    let mut f = File::create(m.p("key.tmp")).expect("create");
    f.write_all(b"new").and_then(|()| f.sync_all()).expect("write");
    fs::rename(m.p("key.tmp"), m.p("key")).expect("rename");
    assert_eq!(read(&m.p("key")).as_deref(), Some(&b"new"[..]));
    m.cut();
    assert_eq!(read(&m.p("key")).as_deref(), Some(&b"old"[..]), "rename lost");
    assert!(!m.p("key.tmp").exists(), "the temp file's name was never durable");
    let mut f = File::create(m.p("key.tmp")).expect("create");
    f.write_all(b"new").and_then(|()| f.sync_all()).expect("write");
    fs::rename(m.p("key.tmp"), m.p("key")).expect("rename");
    sync_dir(&m.dir);
    m.cut();
    assert_eq!(read(&m.p("key")).as_deref(), Some(&b"new"[..]));
    assert!(!m.p("key.tmp").exists());
    // Across directories: each side is durable with its own directory.
    fs::create_dir(m.p("d")).expect("mkdir");
    sync_dir(&m.dir);
    fs::rename(m.p("key"), m.p("d/key")).expect("rename");
    sync_dir(&m.p("d"));
    m.cut();
    assert_eq!(read(&m.p("d/key")).as_deref(), Some(&b"new"[..]), "the target dir was synced");
    assert_eq!(read(&m.p("key")).as_deref(), Some(&b"new"[..]), "the source dir was not");
}

#[test]
fn directory_rename_is_durable_with_the_parent() {
    // etcd's WAL creation: fill `wal.tmp`, fsync it, rename it to `wal`, fsync the parent.
    let m = mount();
    fs::create_dir(m.p("wal.tmp")).expect("mkdir");
    sync_dir(&m.dir);
    durable_file(&m, "wal.tmp/0.wal", b"entries");
    sync_dir(&m.p("wal.tmp"));
    fs::rename(m.p("wal.tmp"), m.p("wal")).expect("rename a directory");
    assert_eq!(read(&m.p("wal/0.wal")).as_deref(), Some(&b"entries"[..]), "readers see the move");
    m.cut();
    assert!(m.p("wal.tmp").is_dir() && !m.p("wal").exists(), "the parent was not synced: old name kept");
    assert_eq!(read(&m.p("wal.tmp/0.wal")).as_deref(), Some(&b"entries"[..]));
    fs::rename(m.p("wal.tmp"), m.p("wal")).expect("rename again");
    sync_dir(&m.dir);
    m.cut();
    assert!(!m.p("wal.tmp").exists(), "the old name went with the synced parent");
    assert_eq!(read(&m.p("wal/0.wal")).as_deref(), Some(&b"entries"[..]), "the new name is durable");
    // Not into its own subtree; not over a non-empty directory.
    fs::create_dir(m.p("other")).expect("mkdir");
    durable_file(&m, "other/x", b"x");
    assert!(fs::rename(m.p("wal"), m.p("wal/sub")).is_err(), "into itself");
    assert!(fs::rename(m.p("wal"), m.p("other")).is_err(), "over a non-empty directory");
}

#[test]
fn truncate_is_durable_with_the_file() {
    let m = mount();
    durable_file(&m, "t", b"0123456789");
    let f = OpenOptions::new().write(true).open(m.p("t")).expect("open");
    f.set_len(4).expect("truncate");
    f.set_len(8).expect("extend");
    assert_eq!(read(&m.p("t")).as_deref(), Some(&b"0123\0\0\0\0"[..]), "cut bytes read as zeros after regrowth");
    m.cut();
    assert_eq!(read(&m.p("t")).as_deref(), Some(&b"0123456789"[..]), "unsynced truncate lost");
    let f = OpenOptions::new().write(true).open(m.p("t")).expect("open");
    f.set_len(4).and_then(|()| f.sync_data()).expect("truncate");
    m.cut();
    assert_eq!(read(&m.p("t")).as_deref(), Some(&b"0123"[..]));
    fs::write(m.p("t"), b"ab").expect("create over an existing file truncates it");
    assert_eq!(read(&m.p("t")).as_deref(), Some(&b"ab"[..]));
}

#[test]
fn writes_across_pages_and_preallocation() {
    let m = mount();
    durable_file(&m, "big", &[]);
    let f = OpenOptions::new().read(true).write(true).open(m.p("big")).expect("open");
    let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    f.write_all_at(&data, 3000).expect("write");
    let mut back = vec![0u8; data.len()];
    f.read_exact_at(&mut back, 3000).expect("read");
    assert_eq!(back, data);
    f.sync_all().expect("fsync");
    m.cut();
    let mut all = Vec::new();
    File::open(m.p("big")).and_then(|mut f| f.read_to_end(&mut all)).expect("read");
    assert_eq!(all.len(), 23_000);
    assert!(all[..3000].iter().all(|b| *b == 0));
    assert_eq!(&all[3000..], &data[..]);
}

#[test]
fn an_armed_cut_happens_instead_of_a_sync() {
    let m = mount();
    durable_file(&m, "x", b"one");
    let before = m.fs().syncs();
    m.fs().power_cut_before_sync(2);
    let mut f = OpenOptions::new().append(true).open(m.p("x")).expect("open");
    f.write_all(b" two").and_then(|()| f.sync_data()).expect("first sync passes");
    f.write_all(b" three").expect("write");
    assert!(f.sync_data().is_err(), "the second sync is where the power goes");
    assert_eq!(m.fs().cuts(), 1);
    assert_eq!(m.fs().syncs(), before + 2);
    assert_eq!(read(&m.p("x")).as_deref(), Some(&b"one two"[..]));
}

#[test]
fn a_clean_unmount_keeps_everything() {
    let mut m = mount();
    fs::create_dir(m.p("d")).expect("mkdir");
    fs::write(m.p("d/f"), b"unsynced").expect("write");
    m.fs.take().expect("mounted").unmount().expect("unmount");
    assert_eq!(read(&m.backing.join("d/f")).as_deref(), Some(&b"unsynced"[..]));
    assert!(!m.backing.join(OBJECTS).exists(), "no objects left behind");
}
