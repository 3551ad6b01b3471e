//! The peer port's framed wire: the peer protocol's unary calls without HTTP/2.
//!
//! Why: one peer round trip over gRPC cost ~135 µs on the benchmark machine against ~75 µs for
//! the same bytes over a bare TCP connection (`hop` in docs/design.md, "The peer wire"): the
//! difference is HTTP/2 and gRPC framing in user space on both ends. Every Raft round crosses the
//! peer port twice and every write through a follower twice more.
//!
//! What: a connection opens with [`MAGIC`]; the peer port tells it from HTTP/2 (whose preface is
//! `PRI * HTTP/2.0...`) by its first bytes, so both share one port. Then frames, each
//! `[u32 length][u32 header length][header][payload]` (big-endian lengths; the header is a
//! bincode [`Header`], the payload the call's `RaftMessage.payload` as is). A call is a
//! [`Header::Request`] answered by a [`Header::Response`] with the same id, in any order; a
//! response carries the gRPC status a failed call would have had (code, message, details and
//! metadata), so callers see exactly what they would over gRPC. [`Header::Ping`] is answered
//! with [`Header::Pong`] at once (the client's keep-alive).
//!
//! Limits: a frame is at most `MAX_PEER_MESSAGE` plus [`MAX_HEADER`]; anything longer, or a
//! header that does not decode, ends the connection (logged), never the member.
//!
//! Compatibility: a member tells that it serves this wire in every peer reply
//! ([`advertise`]); a member uses it toward a peer only after hearing that, and only on a plain
//! TCP peer link (with peer TLS every call stays on gRPC). A member of an older build is never
//! sent it.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncReadExt, BufReader};
use tonic::metadata::{KeyAndValueRef, MetadataKey, MetadataMap, MetadataValue};

use super::MAX_PEER_MESSAGE;
use crate::log_entry::{decode, encode};

/// The first bytes a client sends on a framed connection.
pub const MAGIC: &[u8; 8] = b"CNCLPW1\n";
/// Longest frame header (metadata and a status message).
pub const MAX_HEADER: usize = 64 * 1024;
/// The reply metadata key by which a member tells that its peer port serves this wire.
pub const ADVERTISE_METADATA: &str = "conclave-peer-wire";

/// A peer call on the framed wire (the gRPC service's methods; the numbering is the wire's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// openraft's AppendEntries (heartbeats included).
    AppendEntries,
    /// openraft's Vote.
    Vote,
    /// A forwarded write.
    Propose,
    /// Forwarded writes, answered together.
    ProposeBatch,
    /// A read index asked of the leader.
    ReadIndex,
    /// Session times asked of (or renewed on) the leader.
    Sessions,
    /// The prompt-election probe.
    ElectionProbe,
    /// Leader transfer's TimeoutNow.
    TimeoutNow,
}

/// A failed call's gRPC status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WireStatus {
    /// The gRPC code.
    pub code: i32,
    /// The message.
    pub message: String,
    /// The details (Conclave's error contract puts its machine-readable reason there).
    pub details: Vec<u8>,
    /// The status's metadata (e.g. the write's outcome).
    pub metadata: Vec<(String, String)>,
}

/// A frame's header; the payload follows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Header {
    /// A call.
    Request {
        /// Unique among the connection's calls in flight.
        id: u64,
        /// Which call.
        method: Method,
        /// The request's metadata (cluster id, log format level).
        metadata: Vec<(String, String)>,
        /// `RaftMessage.format` of the payload.
        format: u32,
    },
    /// The answer to a call.
    Response {
        /// The call's id.
        id: u64,
        /// `None`: answered (the payload follows); else the failure's status (no payload).
        status: Option<WireStatus>,
        /// The reply's metadata.
        metadata: Vec<(String, String)>,
        /// `RaftMessage.format` of the payload.
        format: u32,
    },
    /// Answer me (keep-alive).
    Ping,
    /// The answer to a ping.
    Pong,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// Reading or writing the connection failed.
    #[error("peer connection: {0}")]
    Io(#[from] std::io::Error),
    /// The frame is longer than any the wire sends.
    #[error("peer frame of {0} bytes is over the limit ({MAX_PEER_MESSAGE} bytes of payload)")]
    TooLarge(usize),
    /// The frame's lengths or header do not decode.
    #[error("malformed peer frame: {0}")]
    Malformed(String),
}

/// One frame, encoded.
///
/// # Errors
/// When the header cannot be encoded (never for the types above).
pub fn frame(header: &Header, payload: &[u8]) -> Result<Vec<u8>, FrameError> {
    let head = encode(header).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let len = 4 + head.len() + payload.len();
    let mut out = Vec::with_capacity(4 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(&(head.len() as u32).to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Bytes a connection's reader takes from the socket at once.
pub const READ_BUFFER: usize = 64 * 1024;

/// The reading end of a connection, buffered: [`read_frame`] reads a frame's lengths, header and
/// payload one after the other, and unbuffered each was a `recv` system call of its own (four
/// per frame, measured with `strace`), though the peer writes frames together. Payloads of
/// [`READ_BUFFER`] or more are read straight into their own buffer.
pub fn reader<R: AsyncRead>(r: R) -> BufReader<R> {
    BufReader::with_capacity(READ_BUFFER, r)
}

/// Reads one frame; `Ok(None)` at a clean end of stream between frames. Buffered input only (a
/// connection's [`reader`]): a frame is four reads.
///
/// # Errors
/// An I/O error, a frame over the limits, or a header that does not decode.
pub async fn read_frame<R: AsyncBufRead + Unpin>(r: &mut R) -> Result<Option<(Header, Vec<u8>)>, FrameError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_PEER_MESSAGE + MAX_HEADER + 4 {
        return Err(FrameError::TooLarge(len));
    }
    if len < 4 {
        return Err(FrameError::Malformed(format!("frame length {len} leaves no room for its header length")));
    }
    let mut head_len = [0u8; 4];
    r.read_exact(&mut head_len).await?;
    let head_len = u32::from_be_bytes(head_len) as usize;
    if head_len > MAX_HEADER || 4 + head_len > len {
        return Err(FrameError::Malformed(format!("header length {head_len} in a frame of {len} bytes")));
    }
    let mut head = vec![0u8; head_len];
    r.read_exact(&mut head).await?;
    let header: Header = decode(&head).map_err(|e| FrameError::Malformed(e.to_string()))?;
    let mut payload = vec![0u8; len - 4 - head_len];
    r.read_exact(&mut payload).await?;
    Ok(Some((header, payload)))
}

/// The ASCII entries of `map` (binary ones are not used by the peer protocol and are dropped).
pub fn from_metadata(map: &MetadataMap) -> Vec<(String, String)> {
    map.iter()
        .filter_map(|kv| match kv {
            KeyAndValueRef::Ascii(k, v) => v.to_str().ok().map(|v| (k.as_str().to_owned(), v.to_owned())),
            KeyAndValueRef::Binary(..) => None,
        })
        .collect()
}

/// A metadata map of `entries` (entries that are not valid metadata are skipped).
pub fn to_metadata(entries: Vec<(String, String)>) -> MetadataMap {
    let mut map = MetadataMap::new();
    for (k, v) in entries {
        if let (Ok(k), Ok(v)) = (MetadataKey::from_bytes(k.as_bytes()), v.parse::<MetadataValue<_>>()) {
            map.append(k, v);
        }
    }
    map
}

/// A status as it travels.
pub fn from_status(s: &tonic::Status) -> WireStatus {
    WireStatus {
        code: s.code() as i32,
        message: s.message().to_owned(),
        details: s.details().to_vec(),
        metadata: from_metadata(s.metadata()),
    }
}

/// The status a [`WireStatus`] stands for.
pub fn to_status(s: WireStatus) -> tonic::Status {
    tonic::Status::with_details_and_metadata(
        tonic::Code::from_i32(s.code),
        s.message,
        s.details.into(),
        to_metadata(s.metadata),
    )
}

/// Tells the caller that this member's peer port serves the framed wire.
pub fn advertise(metadata: &mut MetadataMap) {
    metadata.insert(ADVERTISE_METADATA, MetadataValue::from_static("1"));
}

/// Whether a reply's sender serves the framed wire.
pub fn advertised(metadata: &MetadataMap) -> bool {
    metadata.get(ADVERTISE_METADATA).is_some_and(|v| v.as_bytes() == b"1")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip() {
        let status = WireStatus {
            code: tonic::Code::FailedPrecondition as i32,
            message: "not the leader".into(),
            details: vec![1, 2, 3],
            metadata: vec![("x-conclave-outcome".into(), "NOT_APPLIED".into())],
        };
        let frames = [
            (
                Header::Request {
                    id: 7,
                    method: Method::ProposeBatch,
                    metadata: vec![("a".into(), "b".into())],
                    format: 1,
                },
                vec![9u8; 300],
            ),
            (Header::Response { id: 7, status: None, metadata: vec![], format: 1 }, vec![1, 2]),
            (Header::Response { id: 8, status: Some(status), metadata: vec![], format: 0 }, vec![]),
            (Header::Ping, vec![]),
            (Header::Pong, vec![]),
        ];
        let mut bytes = Vec::new();
        for (h, p) in &frames {
            bytes.extend(frame(h, p).expect("frame"));
        }
        let mut r = &bytes[..];
        for expected in frames {
            assert_eq!(read_frame(&mut r).await.expect("read"), Some(expected));
        }
        assert_eq!(read_frame(&mut r).await.expect("end"), None);
    }

    /// A byte source that counts how often it is read (each read is a `recv` on a socket).
    struct CountingReads<'a> {
        bytes: &'a [u8],
        reads: usize,
    }

    impl tokio::io::AsyncRead for CountingReads<'_> {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            self.reads += 1;
            let n = buf.remaining().min(self.bytes.len());
            buf.put_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_that_arrive_together_are_taken_from_the_socket_in_one_read() {
        let mut bytes = Vec::new();
        for id in 0..8 {
            let header = Header::Request { id, method: Method::Propose, metadata: vec![], format: 1 };
            bytes.extend(frame(&header, &[7u8; 300]).expect("frame"));
        }
        let mut r = reader(CountingReads { bytes: &bytes, reads: 0 });
        for _ in 0..8 {
            assert!(read_frame(&mut r).await.expect("read").is_some());
        }
        assert_eq!(r.get_ref().reads, 1, "eight frames, one read of the socket");
        // A payload larger than the buffer still arrives whole.
        let big = frame(&Header::Pong, &vec![3u8; 3 * READ_BUFFER]).expect("frame");
        let mut r = reader(CountingReads { bytes: &big, reads: 0 });
        let (_, payload) = read_frame(&mut r).await.expect("read").expect("a frame");
        assert_eq!(payload.len(), 3 * READ_BUFFER);
    }

    #[tokio::test]
    async fn an_oversized_or_malformed_frame_is_refused_without_reading_it() {
        let huge = ((MAX_PEER_MESSAGE + MAX_HEADER + 5) as u32).to_be_bytes();
        assert!(matches!(read_frame(&mut &huge[..]).await, Err(FrameError::TooLarge(_))));
        let mut bad = 12u32.to_be_bytes().to_vec();
        bad.extend(100u32.to_be_bytes());
        bad.extend([0u8; 8]);
        assert!(matches!(read_frame(&mut &bad[..]).await, Err(FrameError::Malformed(_))));
        let mut garbage = 8u32.to_be_bytes().to_vec();
        garbage.extend(4u32.to_be_bytes());
        garbage.extend([0xffu8; 4]);
        assert!(matches!(read_frame(&mut &garbage[..]).await, Err(FrameError::Malformed(_))));
    }

    #[test]
    fn a_status_keeps_its_code_details_and_outcome() {
        let s = conclave_proto::errors::status(
            tonic::Code::Unavailable,
            String::from("gone"),
            conclave_proto::errors::Reason::Unavailable,
            conclave_proto::errors::Outcome::NotApplied,
        );
        let back = to_status(from_status(&s));
        assert_eq!((back.code(), back.message(), back.details()), (s.code(), s.message(), s.details()));
        assert_eq!(conclave_proto::errors::outcome_of(&back), conclave_proto::errors::Outcome::NotApplied);
    }
}
