//! Generated etcd v3 API types and gRPC clients (from the trimmed protos in `benches/proto/etcd`).
#![allow(missing_docs, clippy::all, clippy::pedantic)]

/// etcd's storage types (`mvccpb`).
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's v3 API (`etcdserverpb`).
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// etcd's election service (`v3electionpb`).
pub mod v3electionpb {
    tonic::include_proto!("v3electionpb");
}
