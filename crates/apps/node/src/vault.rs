//! The facade over the vault: what `kith vault`, `kith backup` and `kith restore` do.

use kith_api as api;
use kith_vault::{GetReport, ObjectStatus, PutReport};

use crate::facade::absolute;
use crate::{Node, NodeError};

fn stored(r: PutReport) -> api::VaultStored {
    api::VaultStored {
        id: r.id,
        name: r.name,
        k: r.k,
        n: r.n,
        holders: r.holders,
        size: r.size,
        new_bytes: r.new_bytes,
        uploaded: r.uploaded,
        files: r.files,
        index_published: r.index_published,
    }
}

fn object(s: ObjectStatus) -> api::VaultObject {
    api::VaultObject {
        id: s.id,
        name: s.name,
        kind: format!("{:?}", s.kind).to_lowercase(),
        created: s.created,
        size: s.size,
        files: s.files,
        k: s.k,
        n: s.n,
        reachable: s.reachable,
        segments: s.segments,
        last_audit: s.last_audit,
        repairs: s.repairs,
    }
}

fn got(r: GetReport) -> api::VaultGot {
    api::VaultGot {
        id: r.id,
        name: r.name,
        files: r.files,
        bytes: r.bytes,
    }
}

impl Node {
    pub async fn vault_put(&self, req: &api::VaultPut) -> Result<api::VaultStored, NodeError> {
        let path = absolute(&req.path, "path")?;
        let group = self.group_id(req.group.as_deref())?;
        let r = self
            .inner
            .vault
            .put(path, req.name.clone(), group, req.k, req.n)
            .await?;
        Ok(stored(r))
    }

    pub async fn vault_get(
        &self,
        what: &str,
        req: &api::VaultGet,
    ) -> Result<api::VaultGot, NodeError> {
        let out = absolute(&req.out, "out")?;
        let r = self.inner.vault.get(what.trim(), out.clone()).await?;
        self.came_in(out, &r).await?;
        Ok(got(r))
    }

    /// What was restored from a group's object is that group's content: shared again, it
    /// stays in the group.
    async fn came_in(&self, out: std::path::PathBuf, r: &GetReport) -> Result<(), NodeError> {
        if let Some(g) = &r.group {
            self.inner.share.came_in(out, g.clone()).await?;
        }
        Ok(())
    }

    pub fn vault_list(&self) -> Result<Vec<api::VaultObject>, NodeError> {
        Ok(self.inner.vault.list()?.into_iter().map(object).collect())
    }

    pub fn vault_object(&self, what: &str) -> Result<api::VaultObject, NodeError> {
        Ok(object(self.inner.vault.status(what.trim())?))
    }

    pub fn vault_overview(&self) -> Result<api::VaultOverview, NodeError> {
        let s = self.inner.vault.overview()?;
        Ok(api::VaultOverview {
            offered: s.offered,
            held: s.held,
            objects: s.objects,
            stored: s.stored,
            repairs: s.repairs,
            last_audit: s.last_audit,
            peers: s
                .peers
                .into_iter()
                .map(|p| api::VaultPeer {
                    peer: p.peer,
                    holds_for_me: p.holds_for_me,
                    i_hold_for_it: p.i_hold_for_it,
                    audits_passed: p.audits_passed,
                    faults: p.faults,
                })
                .collect(),
        })
    }

    pub async fn vault_remove(&self, what: &str) -> Result<api::VaultRemoved, NodeError> {
        let id = self.inner.vault.status(what.trim())?.id;
        let released = self.inner.vault.remove(&id).await?;
        Ok(api::VaultRemoved { id, released })
    }

    pub async fn backup(&self, req: &api::BackupRequest) -> Result<api::VaultStored, NodeError> {
        let dir = absolute(&req.dir, "dir")?;
        let v = &self.inner.vault;
        Ok(stored(v.backup(dir, req.every, req.k, req.n).await?))
    }

    pub async fn restore(&self, req: &api::VaultGet) -> Result<api::VaultGot, NodeError> {
        let out = absolute(&req.out, "out")?;
        let r = self
            .inner
            .vault
            .restore(req.source.as_deref(), req.at_ms, out.clone())
            .await?;
        self.came_in(out, &r).await?;
        Ok(got(r))
    }
}
