//! Jute, ZooKeeper's wire encoding: big-endian integers, length-prefixed buffers, strings and
//! vectors (-1 = null), and the records the front end reads and writes. Frames are a 4-byte
//! big-endian length followed by the record bytes. Decoding never panics: a short or malformed
//! record is a [`CodecError`].

use conclave_proto::zookeeper::op;

use crate::state_machine::zk_result::ZStat;

/// Largest frame accepted or sent: ZooKeeper's default `jute.maxbuffer` (1 MiB) plus room for
/// the request header and path.
pub const MAX_FRAME: usize = 1024 * 1024 + 64 * 1024;

/// A malformed record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The record ended early.
    #[error("record truncated at byte {0}")]
    Truncated(usize),
    /// A negative (other than -1) or oversized length.
    #[error("bad length {0}")]
    BadLength(i32),
    /// A string that is not UTF-8.
    #[error("string is not UTF-8")]
    BadUtf8,
}

/// Reads jute primitives from a record.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Reads `buf` from its start.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.buf.len()).ok_or(CodecError::Truncated(self.pos))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// `int`.
    pub fn int(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().map_err(|_| CodecError::Truncated(self.pos))?))
    }

    /// `long`.
    pub fn long(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().map_err(|_| CodecError::Truncated(self.pos))?))
    }

    /// `boolean`.
    pub fn bool(&mut self) -> Result<bool, CodecError> {
        Ok(self.take(1)?[0] != 0)
    }

    /// `buffer` (`None`: null).
    pub fn buffer(&mut self) -> Result<Option<&'a [u8]>, CodecError> {
        match self.int()? {
            -1 => Ok(None),
            n if n < 0 || n as usize > MAX_FRAME => Err(CodecError::BadLength(n)),
            n => self.take(n as usize).map(Some),
        }
    }

    /// `ustring` (null reads as empty).
    pub fn string(&mut self) -> Result<String, CodecError> {
        let bytes = self.buffer()?.unwrap_or_default();
        String::from_utf8(bytes.to_vec()).map_err(|_| CodecError::BadUtf8)
    }

    /// `vector<ustring>` (null reads as empty).
    pub fn strings(&mut self) -> Result<Vec<String>, CodecError> {
        let n = self.vec_len()?;
        (0..n).map(|_| self.string()).collect()
    }

    /// A vector's element count (null: 0).
    pub fn vec_len(&mut self) -> Result<usize, CodecError> {
        match self.int()? {
            -1 => Ok(0),
            n if n < 0 || n as usize > self.remaining() => Err(CodecError::BadLength(n)),
            n => Ok(n as usize),
        }
    }

    /// `vector<ACL>`: (perms, scheme, id) triples.
    pub fn acls(&mut self) -> Result<Vec<Acl>, CodecError> {
        let n = self.vec_len()?;
        (0..n).map(|_| Ok(Acl { perms: self.int()?, scheme: self.string()?, id: self.string()? })).collect()
    }
}

/// One ACL entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    /// Permission bits (READ 1, WRITE 2, CREATE 4, DELETE 8, ADMIN 16).
    pub perms: i32,
    /// Scheme (`world`, `digest`, `auth`, `ip`...).
    pub scheme: String,
    /// Identity within the scheme.
    pub id: String,
}

/// `world:anyone` with every permission (`OPEN_ACL_UNSAFE`).
pub fn open_acl() -> Acl {
    Acl { perms: 31, scheme: "world".into(), id: "anyone".into() }
}

/// Writes jute primitives.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// The bytes written.
    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Bytes already encoded.
    pub fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// `int`.
    pub fn int(&mut self, v: i32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `long`.
    pub fn long(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// `boolean`.
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.buf.push(u8::from(v));
        self
    }

    /// `buffer`.
    pub fn buffer(&mut self, v: &[u8]) -> &mut Self {
        self.int(v.len() as i32);
        self.buf.extend_from_slice(v);
        self
    }

    /// `ustring`.
    pub fn string(&mut self, v: &str) -> &mut Self {
        self.buffer(v.as_bytes())
    }

    /// `vector<ustring>`.
    pub fn strings<S: AsRef<str>>(&mut self, v: &[S]) -> &mut Self {
        self.int(v.len() as i32);
        for s in v {
            self.string(s.as_ref());
        }
        self
    }

    /// `vector<ACL>`.
    pub fn acls(&mut self, v: &[Acl]) -> &mut Self {
        self.int(v.len() as i32);
        for a in v {
            self.int(a.perms).string(&a.scheme).string(&a.id);
        }
        self
    }

    /// `Stat`.
    pub fn stat(&mut self, s: &ZStat) -> &mut Self {
        self.long(s.czxid as i64)
            .long(s.mzxid as i64)
            .long(s.ctime as i64)
            .long(s.mtime as i64)
            .int(s.version)
            .int(s.cversion)
            .int(s.aversion)
            .long(s.ephemeral_owner as i64)
            .int(s.data_length)
            .int(s.num_children)
            .long(s.pzxid as i64)
    }

    /// A reply header.
    pub fn reply_header(&mut self, xid: i32, zxid: i64, err: i32) -> &mut Self {
        self.int(xid).long(zxid).int(err)
    }
}

/// The first record a client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Protocol version (0).
    pub protocol_version: i32,
    /// The highest zxid the client has seen.
    pub last_zxid_seen: i64,
    /// Requested session timeout, ms.
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to re-attach.
    pub session_id: i64,
    /// The session's password (16 bytes; zeros for a new session).
    pub passwd: Vec<u8>,
    /// The client accepts a read-only server (optional trailing field).
    pub read_only: bool,
}

impl ConnectRequest {
    /// Decodes the record (the trailing `readOnly` is optional, as old clients omit it).
    ///
    /// # Errors
    /// When the record is malformed.
    pub fn decode(buf: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(buf);
        let protocol_version = r.int()?;
        let last_zxid_seen = r.long()?;
        let timeout_ms = r.int()?;
        let session_id = r.long()?;
        let passwd = r.buffer()?.unwrap_or_default().to_vec();
        let read_only = r.remaining() > 0 && r.bool()?;
        Ok(Self { protocol_version, last_zxid_seen, timeout_ms, session_id, passwd, read_only })
    }

    /// Encodes the record (with `readOnly`).
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(self.protocol_version)
            .long(self.last_zxid_seen)
            .int(self.timeout_ms)
            .long(self.session_id)
            .buffer(&self.passwd)
            .bool(self.read_only);
        w.into_inner()
    }
}

/// The server's answer to [`ConnectRequest`]; `timeout_ms` 0 means the session expired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectResponse {
    /// Protocol version (0).
    pub protocol_version: i32,
    /// Negotiated timeout, ms (0: expired).
    pub timeout_ms: i32,
    /// The session id.
    pub session_id: i64,
    /// Its password.
    pub passwd: Vec<u8>,
    /// Whether this server is read-only.
    pub read_only: bool,
}

impl ConnectResponse {
    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(self.protocol_version)
            .int(self.timeout_ms)
            .long(self.session_id)
            .buffer(&self.passwd)
            .bool(self.read_only);
        w.into_inner()
    }

    /// Decodes the record.
    ///
    /// # Errors
    /// When the record is malformed.
    pub fn decode(buf: &[u8]) -> Result<Self, CodecError> {
        let mut r = Reader::new(buf);
        Ok(Self {
            protocol_version: r.int()?,
            timeout_ms: r.int()?,
            session_id: r.long()?,
            passwd: r.buffer()?.unwrap_or_default().to_vec(),
            read_only: r.remaining() > 0 && r.bool()?,
        })
    }
}

/// Whether a request frame is a single write that may share a log entry with the writes
/// pipelined right after it (create, create2, createContainer, delete, setData).
pub fn batchable(frame: &[u8]) -> bool {
    frame.get(4..8).and_then(|b| b.try_into().ok()).map(i32::from_be_bytes).is_some_and(|opcode| {
        matches!(opcode, op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::DELETE | op::SET_DATA)
    })
}

/// Prefixes a record with its 4-byte length.
pub fn frame(record: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(record.len() + 4);
    out.extend_from_slice(&(record.len() as i32).to_be_bytes());
    out.extend_from_slice(record);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The connect frame kazoo 2.x sends for a new session with a 10 s timeout (hand-assembled
    /// from its `Connect` serializer: version, last zxid, timeout, session id, 16-byte zero
    /// password, read_only).
    const KAZOO_CONNECT: &[u8] = &[
        0, 0, 0, 0, // protocolVersion
        0, 0, 0, 0, 0, 0, 0, 0, // lastZxidSeen
        0, 0, 0x27, 0x10, // timeOut 10000
        0, 0, 0, 0, 0, 0, 0, 0, // sessionId
        0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // passwd
        0, // readOnly
    ];

    #[test]
    fn connect_request_decodes_a_client_frame_and_round_trips() {
        let req = ConnectRequest::decode(KAZOO_CONNECT).expect("decodes");
        assert_eq!((req.timeout_ms, req.session_id, req.passwd.len(), req.read_only), (10_000, 0, 16, false));
        assert_eq!(req.encode(), KAZOO_CONNECT);
        // Clients before 3.4 omit readOnly.
        let old = ConnectRequest::decode(&KAZOO_CONNECT[..KAZOO_CONNECT.len() - 1]).expect("decodes");
        assert_eq!(old, req);
    }

    #[test]
    fn connect_response_round_trips() {
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms: 4000,
            session_id: 7,
            passwd: vec![9; 16],
            read_only: false,
        };
        assert_eq!(ConnectResponse::decode(&resp.encode()), Ok(resp));
    }

    #[test]
    fn malformed_records_are_errors_not_panics() {
        assert_eq!(
            ConnectRequest::decode(&KAZOO_CONNECT[..10]),
            Err(CodecError::Truncated(4)),
            "the lastZxidSeen long starts at byte 4"
        );
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xfe]);
        assert_eq!(r.buffer(), Err(CodecError::BadLength(-2)));
        let mut r = Reader::new(&[0, 0, 0, 2, 0xff, 0xfe]);
        assert_eq!(r.string(), Err(CodecError::BadUtf8));
        let mut r = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(r.strings().is_err(), "a vector longer than the record is refused before allocating");
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(r.buffer(), Ok(None));
    }

    #[test]
    fn stat_and_header_layout() {
        let stat = ZStat {
            czxid: 1,
            mzxid: 2,
            ctime: 3,
            mtime: 4,
            version: 5,
            cversion: 6,
            aversion: 7,
            ephemeral_owner: 8,
            data_length: 9,
            num_children: 10,
            pzxid: 11,
        };
        let mut w = Writer::default();
        w.reply_header(5, 42, -101).stat(&stat);
        let bytes = w.into_inner();
        assert_eq!(bytes.len(), 16 + 68, "ReplyHeader 16 bytes, Stat 68 bytes");
        let mut r = Reader::new(&bytes);
        assert_eq!((r.int(), r.long(), r.int()), (Ok(5), Ok(42), Ok(-101)));
        assert_eq!((r.long(), r.long(), r.long(), r.long()), (Ok(1), Ok(2), Ok(3), Ok(4)));
        assert_eq!((r.int(), r.int(), r.int(), r.long()), (Ok(5), Ok(6), Ok(7), Ok(8)));
        assert_eq!((r.int(), r.int(), r.long()), (Ok(9), Ok(10), Ok(11)));
        assert_eq!(frame(&[1, 2]), vec![0, 0, 0, 2, 1, 2]);
    }
}
