//! Request limits, checked before anything is proposed. Each violation is rejected with a
//! status whose message names the limit (see `error.rs` for the codes).

/// Largest key (and counter name), in bytes.
pub const MAX_KEY_BYTES: usize = 4 * 1024;
/// Largest value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Largest encoded request, in bytes.
pub const MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// Most compares plus operations in one transaction.
pub const MAX_TXN_OPS: usize = 128;
/// gRPC decoding cap: above [`MAX_REQUEST_BYTES`] so oversized requests still reach the
/// limit check and get its message; beyond this, tonic itself rejects the message.
pub const GRPC_MAX_DECODE_BYTES: usize = 8 * 1024 * 1024;
