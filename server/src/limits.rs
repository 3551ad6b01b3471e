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
/// Most apply work one transaction may cost (see [`txn_cost`](crate::service::validate::txn_cost)):
/// each compare or operation on one key costs 1, a `children` compare costs `count + 1` (apply
/// stops counting there), a range or delete over a prefix or interval costs
/// [`TXN_SCAN_COST`] (it visits every key in it). Bounds the work every member does in apply
/// for one entry, not only the number of compares.
pub const MAX_TXN_COST: u64 = 8 * 1024;
/// Cost of one range or delete over a prefix or interval inside a transaction: at most 8 per
/// transaction.
pub const TXN_SCAN_COST: u64 = 1024;
/// gRPC decoding cap: above [`MAX_REQUEST_BYTES`] so oversized requests still reach the
/// limit check and get its message; beyond this, tonic itself rejects the message.
pub const GRPC_MAX_DECODE_BYTES: usize = 8 * 1024 * 1024;
/// gRPC encoding cap of the client port (largest response message, e.g. a range or a
/// snapshot chunk): beyond it the call fails with RESOURCE_EXHAUSTED; page ranges with `limit`.
pub const GRPC_MAX_ENCODE_BYTES: usize = 256 * 1024 * 1024;
