//! The facade over the vault: what `kith vault`, `kith backup` and `kith restore` do.

use kith_api as api;
use kith_vault::GetReport;

use crate::facade::absolute;
use crate::{Node, NodeError};

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
        Ok(r)
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

    pub async fn vault_remove(&self, what: &str) -> Result<api::VaultRemoved, NodeError> {
        let id = self.inner.vault.status(what.trim())?.id;
        let released = self.inner.vault.remove(&id).await?;
        Ok(api::VaultRemoved { id, released })
    }

    pub async fn backup(&self, req: &api::BackupRequest) -> Result<api::VaultStored, NodeError> {
        let dir = absolute(&req.dir, "dir")?;
        let v = &self.inner.vault;
        Ok(v.backup(dir, req.every, req.k, req.n).await?)
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
