//! The compound requests: multi (all-or-nothing writes), multiRead, and setWatches replayed
//! from the client's zxid after a reconnect.

use conclave_proto::zookeeper::{op, Code};

use super::codec::{Reader, Writer};
use super::conn::Conn;
use super::paths::{is_reserved, validate, CONFIG_NODE};
use super::requests::{create_op, node_view, other_op, read_body, result_body, Answer, Fail};
use super::watches::NewWatch;
use crate::error::Error;
use crate::log_entry::zk::ZkOp;
use crate::state_machine::zk_result::{failed_results, ZkOpResult};

impl Conn {
    pub(super) async fn multi(&self, r: &mut Reader<'_>) -> Result<Answer, Fail> {
        let mut ops = Vec::new();
        let mut opcodes = Vec::new();
        let mut invalid = None;
        loop {
            let (opcode, done, _err) = (r.int()?, r.bool()?, r.int()?);
            if done {
                break;
            }
            let parsed = match opcode {
                op::CREATE | op::CREATE2 | op::CREATE_CONTAINER | op::CREATE_TTL => create_op(opcode, r, &self.ids()),
                op::DELETE | op::SET_DATA | op::CHECK => other_op(opcode, r),
                _ => return Err(Code::Unimplemented.into()),
            };
            match parsed {
                Ok(zk_op) => ops.push(zk_op),
                Err(Fail::Code(c)) => {
                    invalid.get_or_insert((opcodes.len(), c));
                    ops.push(ZkOp::Check { path: "/".into(), version: -1 });
                }
                Err(fatal) => return Err(fatal),
            }
            opcodes.push(opcode);
        }
        let (zxid, results) = match invalid {
            Some((idx, code)) => (self.last_zxid, failed_results(ops.len(), idx, code)),
            None if ops.is_empty() => (self.last_zxid, Vec::new()),
            None => self.write(ops).await?,
        };
        let mut w = Writer::default();
        for (opcode, result) in opcodes.iter().zip(&results) {
            match result {
                ZkOpResult::Error { code } => {
                    w.int(-1).bool(false).int(*code).int(*code);
                }
                ok => {
                    w.int(*opcode).bool(false).int(0);
                    let _ = result_body(*opcode, ok, &mut w);
                }
            }
        }
        w.int(-1).bool(true).int(-1);
        Ok((zxid, Ok(w.into_inner())))
    }

    pub(super) async fn multi_read(&self, r: &mut Reader<'_>) -> Result<Answer, Fail> {
        let mut reads = Vec::new();
        loop {
            let (opcode, done, _err) = (r.int()?, r.bool()?, r.int()?);
            if done {
                break;
            }
            if !matches!(opcode, op::GET_DATA | op::GET_CHILDREN) {
                return Err(Code::BadArguments.into());
            }
            let path = r.string()?;
            let _watch = r.bool()?;
            reads.push((opcode, path));
        }
        let ids = self.ids();
        let (zxid, views) = self
            .read(|sm| {
                reads
                    .iter()
                    .map(|(_, p)| validate(p, false).ok().and_then(|()| node_view(sm, p, Some(&ids))))
                    .collect::<Vec<_>>()
            })
            .await?;
        let mut w = Writer::default();
        for ((opcode, _), view) in reads.iter().zip(views) {
            let answer = view.unwrap_or(Err(Code::NoNode));
            match answer.and_then(|(data, stat, children)| read_body(*opcode, &data, &stat, &children)) {
                Ok(b) => {
                    w.int(*opcode).bool(false).int(0).raw(&b);
                }
                Err(code) => {
                    w.int(-1).bool(false).int(code.value()).int(code.value());
                }
            }
        }
        w.int(-1).bool(true).int(-1);
        Ok((zxid, Ok(w.into_inner())))
    }

    /// Re-registers a reconnecting client's watches, first firing what changed since
    /// `relativeZxid` (ZooKeeper's `DataTree.setWatches` rules), so no change is missed.
    pub(super) async fn set_watches(&mut self, opcode: i32, r: &mut Reader<'_>) -> Result<Answer, Fail> {
        use conclave_proto::zookeeper::event;
        let relative = r.long()?.max(0) as u64;
        let (mut data, mut exist, mut child) = (r.strings()?, r.strings()?, r.strings()?);
        let (persistent, recursive) =
            if opcode == op::SET_WATCHES2 { (r.strings()?, r.strings()?) } else { (Vec::new(), Vec::new()) };
        // The reserved nodes are no keys: `/zookeeper/config`'s data or exists watch is set again
        // on the data it holds now (a change while the client was away is not reported: the
        // client's zxid does not order membership changes); the others never change.
        if data.iter().chain(&exist).any(|p| p == CONFIG_NODE) {
            let (now, _) = self.config_node()?;
            self.watches.add(NewWatch::Config(now), CONFIG_NODE.to_string());
        }
        for list in [&mut data, &mut exist, &mut child] {
            list.retain(|p| !is_reserved(p));
        }
        let (zxid, (events, regs)) = self
            .read(|sm| {
                let mut events = Vec::new();
                let mut regs = Vec::new();
                for p in &data {
                    match sm.zk_stat(p) {
                        None => events.push((event::NODE_DELETED, p.clone())),
                        Some(s) if s.mzxid > relative => events.push((event::NODE_DATA_CHANGED, p.clone())),
                        Some(_) => regs.push((NewWatch::Data, p.clone())),
                    }
                }
                for p in &exist {
                    match sm.zk_stat(p) {
                        Some(_) => events.push((event::NODE_CREATED, p.clone())),
                        None => regs.push((NewWatch::Data, p.clone())),
                    }
                }
                for p in &child {
                    match sm.zk_stat(p) {
                        None => events.push((event::NODE_DELETED, p.clone())),
                        Some(s) if s.pzxid > relative => events.push((event::NODE_CHILDREN_CHANGED, p.clone())),
                        Some(_) => regs.push((NewWatch::Child, p.clone())),
                    }
                }
                regs.extend(persistent.iter().map(|p| (NewWatch::Persistent, p.clone())));
                regs.extend(recursive.iter().map(|p| (NewWatch::Recursive, p.clone())));
                (events, regs)
            })
            .await?;
        self.deliver(zxid).await.map_err(|e| Fail::Fatal(Error::Internal(e.to_string())))?;
        for (kind, path) in events {
            self.send_event(zxid, kind, &path).await.map_err(|e| Fail::Fatal(Error::Internal(e.to_string())))?;
        }
        for (kind, path) in regs {
            self.watches.add(kind, path);
        }
        Ok((zxid, Ok(Vec::new())))
    }
}
