//! Unit tests of the segment-file engine: the trait contract, reopening, and crash recovery.

use std::io::Write;

use tempfile::TempDir;

use super::*;

fn entry(i: u64) -> (u64, Vec<u8>) {
    (i, format!("entry-{i}").into_bytes().repeat(1 + (i % 5) as usize))
}

fn entries(range: std::ops::RangeInclusive<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(entry).collect()
}

fn indexes(v: Vec<(u64, Vec<u8>)>) -> Vec<u64> {
    v.into_iter().map(|(i, _)| i).collect()
}

/// Appends one entry a call (a segment rotates only between appends).
fn append_each(e: &FileEngine, range: std::ops::RangeInclusive<u64>) {
    for i in range {
        e.append(vec![entry(i)]).expect("append");
    }
}

fn small(dir: &TempDir) -> FileEngine {
    // ~3 entries a segment, so tests cross segment boundaries.
    FileEngine::open_with_segment_bytes(dir.path(), 100).expect("open")
}

fn segment_files(dir: &TempDir) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir.path().join("log"))
        .expect("list")
        .filter_map(|e| e.ok().and_then(|e| e.file_name().to_str().map(str::to_owned)))
        .collect();
    v.sort();
    v
}

#[test]
fn append_range_last_across_segments_and_reopen() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    assert_eq!(e.last().expect("last"), None);
    append_each(&e, 1..=20);
    e.append(entries(21..=25)).expect("append batch");
    assert!(segment_files(&dir).len() > 3, "rotated: {:?}", segment_files(&dir));
    assert_eq!(e.range(1, 26).expect("range"), entries(1..=25));
    assert_eq!(indexes(e.range(7, 12).expect("range")), (7..12).collect::<Vec<_>>());
    assert_eq!(indexes(e.range(24, 100).expect("range")), vec![24, 25]);
    assert_eq!(e.last().expect("last"), Some(entry(25)));
    drop(e);
    let e = small(&dir);
    assert_eq!(e.range(0, u64::MAX).expect("range"), entries(1..=25));
    assert_eq!(e.last().expect("last"), Some(entry(25)));
}

#[test]
fn overwrite_and_truncate_are_durable() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    e.append(entries(1..=12)).expect("append");
    // A new leader overwrites from 8 with different entries.
    let new: Vec<(u64, Vec<u8>)> = (8..=9).map(|i| (i, b"new".to_vec())).collect();
    e.append(new.clone()).expect("overwrite");
    assert_eq!(e.last().expect("last"), Some((9, b"new".to_vec())));
    e.truncate_from(9).expect("truncate");
    e.truncate_from(50).expect("truncate past the end is a no-op");
    drop(e);
    let e = small(&dir);
    let mut expected = entries(1..=7);
    expected.push(new[0].clone());
    assert_eq!(e.range(0, 100).expect("range"), expected);
    e.append(vec![entry(9)]).expect("append after truncate");
    assert_eq!(e.last().expect("last"), Some(entry(9)));
}

#[test]
fn non_consecutive_appends_are_refused() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    e.append(entries(1..=3)).expect("append");
    assert!(e.append(vec![entry(5)]).is_err(), "a gap");
    assert!(e.append(vec![entry(4), entry(6)]).is_err(), "a gap inside the batch");
    assert_eq!(e.last().expect("last"), Some(entry(3)));
}

#[test]
fn purge_drops_whole_segments_and_survives_reopen() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    append_each(&e, 1..=30);
    let before = segment_files(&dir).len();
    e.purge_upto(20).expect("purge");
    assert!(segment_files(&dir).len() < before, "old segments deleted");
    assert_eq!(indexes(e.range(0, 100).expect("range")), (21..=30).collect::<Vec<_>>());
    drop(e);
    // A segment partly purged still holds some purged entries: they come back on reopen
    // (the log store re-purges from its durable purge point), never entries after a hole.
    let e = small(&dir);
    let back = indexes(e.range(0, 100).expect("range"));
    assert_eq!(back.last(), Some(&30));
    assert!(back.windows(2).all(|w| w[1] == w[0] + 1), "consecutive: {back:?}");
    e.purge_upto(20).expect("purge again");
    assert_eq!(indexes(e.range(0, 100).expect("range")), (21..=30).collect::<Vec<_>>());
}

#[test]
fn purge_beyond_the_end_then_append_later_index() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    e.append(entries(1..=5)).expect("append");
    e.purge_upto(100).expect("purge everything");
    assert_eq!(e.last().expect("last"), None);
    e.append(entries(101..=103)).expect("append after a snapshot install");
    drop(e);
    let e = small(&dir);
    assert_eq!(e.range(0, u64::MAX).expect("range"), entries(101..=103));
}

#[test]
fn stale_segments_before_a_hole_are_dropped_on_reopen() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    e.append(entries(1..=5)).expect("append");
    let stale: Vec<(String, Vec<u8>)> = segment_files(&dir)
        .into_iter()
        .map(|f| {
            let bytes = fs::read(dir.path().join("log").join(&f)).expect("read");
            (f, bytes)
        })
        .collect();
    e.purge_upto(100).expect("purge");
    e.append(entries(101..=102)).expect("append");
    drop(e);
    // A crash undid the (non-durable) deletion of the purged segments.
    for (f, bytes) in stale {
        fs::write(dir.path().join("log").join(f), bytes).expect("restore");
    }
    let e = small(&dir);
    assert_eq!(e.range(0, u64::MAX).expect("range"), entries(101..=102));
}

#[test]
fn torn_tail_of_the_newest_segment_is_cut() {
    for damage in ["chop", "garbage", "bad crc"] {
        let dir = TempDir::new().expect("tmp");
        let e = FileEngine::open(dir.path()).expect("open");
        e.append(entries(1..=4)).expect("append");
        e.append(vec![entry(5)]).expect("append");
        drop(e);
        let path = dir.path().join("log").join(segment_files(&dir).pop().expect("a segment"));
        let mut bytes = fs::read(&path).expect("read");
        // The records end at the last non-zero byte (payloads end in ASCII); zeros of the
        // preallocated space follow.
        let end = data_end(&bytes);
        match damage {
            // A torn append: its last bytes never reached the disk.
            "chop" => bytes[end - 3..end].fill(0),
            "garbage" => bytes.splice(end..end + 40, [0xff; 40]).for_each(drop),
            _ => bytes[end - 1] ^= 0x55,
        }
        fs::write(&path, &bytes).expect("write");
        let e = FileEngine::open(dir.path()).expect("reopen");
        let expected = if damage == "garbage" { entries(1..=5) } else { entries(1..=4) };
        assert_eq!(e.range(0, 100).expect("range"), expected, "{damage}");
        // The log goes on from there.
        let next = expected.len() as u64 + 1;
        e.append(vec![entry(next)]).expect("append after recovery");
        drop(e);
        let e = FileEngine::open(dir.path()).expect("reopen");
        assert_eq!(e.last().expect("last"), Some(entry(next)), "{damage}");
    }
}

fn data_end(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(0, |p| p + 1)
}

#[test]
fn a_segment_is_preallocated_and_its_zeros_end_the_log() {
    let dir = TempDir::new().expect("tmp");
    let e = FileEngine::open(dir.path()).expect("open");
    e.append(entries(1..=3)).expect("append");
    let path = dir.path().join("log").join(segment_files(&dir).pop().expect("a segment"));
    // Every filesystem a data dir lives on in practice (ext4, xfs, btrfs, tmpfs) can fallocate.
    assert_eq!(fs::metadata(&path).expect("stat").len(), SEGMENT_BYTES, "preallocated");
    let written = data_end(&fs::read(&path).expect("read"));
    drop(e);
    let e = FileEngine::open(dir.path()).expect("reopen");
    assert_eq!(e.range(0, 100).expect("range"), entries(1..=3));
    // Appends go on right after the records, inside the preallocated space.
    e.append(vec![entry(4)]).expect("append");
    drop(e);
    let bytes = fs::read(&path).expect("read");
    assert_eq!(bytes.len() as u64, SEGMENT_BYTES, "the file did not grow");
    assert_eq!(data_end(&bytes), written + HEADER as usize + entry(4).1.len());
    let e = FileEngine::open(dir.path()).expect("reopen");
    assert_eq!(e.range(0, 100).expect("range"), entries(1..=4));
}

#[test]
fn bytes_after_zeros_in_an_older_segment_are_corruption() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    append_each(&e, 1..=20);
    drop(e);
    let first = dir.path().join("log").join(segment_files(&dir).remove(0));
    let mut bytes = fs::read(&first).expect("read");
    // A zeroed record header with data after it is a hole, not the end of the records.
    bytes[..HEADER as usize].fill(0);
    fs::write(&first, bytes).expect("write");
    let err = FileEngine::open_with_segment_bytes(dir.path(), 100).err().expect("refused");
    assert!(err.0.contains("corrupt"), "{err}");
}

#[test]
fn corruption_in_an_older_segment_fails_open() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    append_each(&e, 1..=20);
    drop(e);
    let first = dir.path().join("log").join(segment_files(&dir).remove(0));
    let mut f = fs::OpenOptions::new().append(true).open(&first).expect("open");
    f.write_all(b"junk").expect("write");
    drop(f);
    let err = FileEngine::open_with_segment_bytes(dir.path(), 100).err().expect("refused");
    assert!(err.0.contains("corrupt"), "{err}");
}

#[test]
fn meta_round_trips_and_survives_reopen() {
    let dir = TempDir::new().expect("tmp");
    let e = small(&dir);
    assert_eq!(e.get_meta("vote").expect("get"), None);
    e.put_meta("vote", b"v1", true).expect("put");
    e.put_meta("committed", b"c1", false).expect("put");
    e.put_meta("vote", b"v2", true).expect("replace");
    e.put_meta("committed", b"longer value", false).expect("put");
    e.put_meta("committed", b"c2", false).expect("shorter value in place");
    assert_eq!(e.get_meta("committed").expect("get"), Some(b"c2".to_vec()));
    // A durable write replaces the file the in-place writes go to; later in-place writes must
    // land in the new file, not in the replaced one held open.
    e.put_meta("committed", b"durable", true).expect("durable over in place");
    assert_eq!(e.get_meta("committed").expect("get"), Some(b"durable".to_vec()));
    e.put_meta("committed", b"c2", false).expect("in place again");
    assert_eq!(e.get_meta("committed").expect("get"), Some(b"c2".to_vec()));
    drop(e);
    let e = small(&dir);
    assert_eq!(e.get_meta("vote").expect("get"), Some(b"v2".to_vec()));
    assert_eq!(e.get_meta("committed").expect("get"), Some(b"c2".to_vec()));
    drop(e);
    // A torn in-place write reads as never written.
    let path = dir.path().join("meta").join("committed");
    let mut bytes = fs::read(&path).expect("read");
    bytes[9] ^= 0xff;
    fs::write(&path, bytes).expect("write");
    let e = small(&dir);
    assert_eq!(e.get_meta("committed").expect("get"), None);
}

/// Offset of entry `i`'s record in a segment starting at 1 written with `entries(1..)`.
fn record_offset(i: u64) -> usize {
    (1..i).map(|j| HEADER as usize + entry(j).1.len()).sum()
}

/// A data dir with entries 1..=6 in one (preallocated) segment: its path and bytes.
fn six_records() -> (TempDir, PathBuf, Vec<u8>) {
    let dir = TempDir::new().expect("tmp");
    let e = FileEngine::open(dir.path()).expect("open");
    append_each(&e, 1..=6);
    drop(e);
    let path = dir.path().join("log").join(segment_files(&dir).pop().expect("a segment"));
    let bytes = fs::read(&path).expect("read");
    (dir, path, bytes)
}

#[test]
fn a_bad_record_followed_by_valid_ones_in_the_newest_segment_refuses_to_start() {
    for damage in ["payload bit flip", "zeroed header"] {
        let (dir, path, mut bytes) = six_records();
        let at = record_offset(3);
        match damage {
            "payload bit flip" => bytes[at + HEADER as usize + 2] ^= 0x01,
            _ => bytes[at..at + HEADER as usize].fill(0),
        }
        fs::write(&path, &bytes).expect("write");
        let err = FileEngine::open(dir.path()).err().expect("a bad record with valid records after it is refused");
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "names the file: {msg}");
        assert!(msg.contains(&format!("offset {at}")), "names the offset: {msg}");
        assert!(msg.contains("corrupt") && msg.contains("index 4"), "says why: {msg}");
        assert!(msg.contains("data dir"), "says what to do: {msg}");
        assert_eq!(fs::read(&path).expect("read"), bytes, "{damage}: the segment is left as found");
    }
}

#[test]
fn a_bad_last_record_in_the_newest_segment_is_a_torn_append() {
    let (dir, path, mut bytes) = six_records();
    // Records 5 and 6 half written: 5's payload torn, 6 never reached the disk.
    let at = record_offset(5);
    bytes[at + HEADER as usize + 1..].fill(0);
    fs::write(&path, &bytes).expect("write");
    let e = FileEngine::open(dir.path()).expect("a torn tail is cut");
    assert_eq!(e.range(0, 100).expect("range"), entries(1..=4));
}
