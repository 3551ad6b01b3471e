//! The `Counter` service: atomic get-and-add, get, set, delete.

use conclave_proto::v1 as pb;
use conclave_proto::v1::counter_server::Counter;
use prost::Message;
use tonic::{Request, Response, Status};

use super::{unexpected, validate, Api};
use crate::log_entry::auth::PermType;
use crate::log_entry::KeySelector;
use crate::state_machine::response::OutcomeBody;

#[tonic::async_trait]
impl Counter for Api {
    async fn add(&self, req: Request<pb::CounterAddRequest>) -> Result<Response<pb::CounterAddResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let outcome = self.write(&who, validate::counter_add(&r)?, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::CounterAdd { previous, value } => Ok(Response::new(pb::CounterAddResponse {
                header: Some(self.header(outcome.revision)),
                previous,
                value,
            })),
            other => Err(unexpected(&other)),
        }
    }

    async fn get(&self, req: Request<pb::CounterGetRequest>) -> Result<Response<pb::CounterGetResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        validate::counter_get(&r)?;
        self.auth.require(&who, PermType::Read, &KeySelector::Key(r.name.as_bytes().to_vec())).await?;
        let (counter, revision) =
            self.read(r.serializable, r.min_revision, |sm| Ok((sm.counters().get(&r.name), sm.revision()))).await?;
        Ok(Response::new(pb::CounterGetResponse {
            header: Some(self.header(revision)),
            value: counter.map_or(0, |c| c.value),
            exists: counter.is_some(),
            mod_revision: counter.map_or(0, |c| c.mod_revision),
        }))
    }

    async fn set(&self, req: Request<pb::CounterSetRequest>) -> Result<Response<pb::CounterSetResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let outcome = self.write(&who, validate::counter_set(&r)?, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::CounterSet { previous } => {
                Ok(Response::new(pb::CounterSetResponse { header: Some(self.header(outcome.revision)), previous }))
            }
            other => Err(unexpected(&other)),
        }
    }

    async fn delete(
        &self,
        req: Request<pb::CounterDeleteRequest>,
    ) -> Result<Response<pb::CounterDeleteResponse>, Status> {
        let who = self.caller(&req).await?;
        let r = req.into_inner();
        let outcome = self.write(&who, validate::counter_delete(&r)?, r.request_id.as_ref(), r.encoded_len()).await?;
        match outcome.body {
            OutcomeBody::CounterDelete { deleted } => {
                Ok(Response::new(pb::CounterDeleteResponse { header: Some(self.header(outcome.revision)), deleted }))
            }
            other => Err(unexpected(&other)),
        }
    }
}
