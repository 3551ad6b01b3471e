//! The `KV` service: ranges, puts, deletes, transactions.

use conclave_proto::v1 as pb;
use conclave_proto::v1::kv_server::Kv;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{convert, unexpected, validate, Api};
use crate::log_entry::auth::PermType;
use crate::state_machine::response::OutcomeBody;

#[tonic::async_trait]
impl Kv for Api {
    async fn range(&self, req: Request<pb::RangeRequest>) -> Result<Response<pb::RangeResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let spec = validate::range(&r)?;
        self.auth.require(&who, PermType::Read, &spec.selector).await?;
        let (result, revision) =
            self.read(r.serializable, r.min_revision, |sm| Ok((sm.range(&spec, r.revision)?, sm.revision()))).await?;
        Ok(Response::new(convert::range(result, self.header(revision))))
    }

    async fn put(&self, req: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let cmd = validate::put(&r)?;
        let outcome = self.write(&who, cmd, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::Put { prev } => Ok(Response::new(pb::PutResponse {
                header: Some(self.header(outcome.revision)),
                prev_kv: prev.map(convert::kv),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn delete_range(
        &self,
        req: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let cmd = validate::delete_range(&r)?;
        let outcome = self.write(&who, cmd, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::DeleteRange { deleted, prev_kvs } => Ok(Response::new(pb::DeleteRangeResponse {
                header: Some(self.header(outcome.revision)),
                deleted,
                prev_kvs: prev_kvs.into_iter().map(convert::kv).collect(),
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn txn(&self, req: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let cmd = validate::txn(&r)?;
        let outcome = self.write(&who, cmd, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::Txn { succeeded, responses, fencing_failure } => {
                let header = self.header(outcome.revision);
                let responses = responses.into_iter().map(|op| convert::op(op, &header)).collect();
                let fencing_failure = fencing_failure.map(|f| pb::FencingFailure {
                    lease: f.lease,
                    presented_token: f.presented_token,
                    current_token: f.current_token,
                });
                Ok(Response::new(pb::TxnResponse { header: Some(header), succeeded, responses, fencing_failure }))
            }
            other => Err(unexpected(&other)),
        }
    }
}
