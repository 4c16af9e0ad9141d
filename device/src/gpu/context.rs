//! Contexts: capsets, creation and teardown, resource attachment, and
//! SUBMIT_3D.

use super::*;

impl VirtioGpu {
    /// Number of capsets offered.
    pub fn num_capsets(&self) -> u32 {
        crate::context::num_capsets(&self.cfg)
    }

    pub(super) fn get_capset_info(&self, index: u32) -> GpuResult<Response> {
        let (capset_id, max_version, max_size) = crate::context::capset_info(&self.cfg, index)
            .ok_or_else(|| GpuError::InvalidParameter(format!("capset index {index}")))?;
        Ok(Response::CapsetInfo {
            capset_id,
            max_version,
            max_size,
        })
    }

    pub(super) fn get_capset(&self, id: u32, version: u32) -> GpuResult<Response> {
        crate::context::capset(&self.cfg, id, version)
            .map(Response::Capset)
            .ok_or_else(|| GpuError::InvalidParameter(format!("capset {id} version {version}")))
    }

    pub(super) fn ctx_create(&mut self, c: &CtxCreate) -> GpuResult<Response> {
        let id = ContextId(c.hdr.ctx_id.get());
        if id.is_zero() || self.contexts.contains_key(&id) {
            return Err(GpuError::InvalidContext(id));
        }
        if self.contexts.len() >= self.cfg.limits.max_contexts {
            return Err(GpuError::OutOfMemory(format!(
                "{} contexts is the per-VM limit",
                self.cfg.limits.max_contexts
            )));
        }
        let backend = crate::context::backend_for(&self.cfg, c.capset_id())?;
        let name = String::from_utf8_lossy(c.debug_name()).into_owned();
        let owner = self
            .bm
            .create_owner(&format!("ctx{id}:{name}"), Some(self.vm))
            .map_err(GpuError::from)?;
        self.contexts.insert(id, Context { owner, backend });
        Ok(Response::OkNoData)
    }

    pub(super) fn ctx_destroy(&mut self, id: ContextId) -> GpuResult<()> {
        let mut ctx = self
            .contexts
            .remove(&id)
            .ok_or(GpuError::InvalidContext(id))?;
        if let Some(backend) = ctx.backend.as_mut() {
            backend.teardown(&self.bm);
        }
        for r in self.resources.values_mut() {
            r.contexts.retain(|c| *c != id);
        }
        // Resources made from the context's objects outlive it; its
        // account goes with the last of them (see `unref`).
        if self.bm.owner_stats(ctx.owner).is_ok_and(|s| s.objects == 0) {
            let _ = self.bm.destroy_owner(ctx.owner);
        } else {
            self.orphaned_accounts.insert(ctx.owner);
        }
        Ok(())
    }

    pub(super) fn ctx_attach_resource(
        &mut self,
        ctx_id: ContextId,
        res_id: ResourceId,
    ) -> GpuResult<Response> {
        self.ctx_attach(ctx_id, res_id, true)
    }

    pub(super) fn ctx_detach_resource(
        &mut self,
        ctx_id: ContextId,
        res_id: ResourceId,
    ) -> GpuResult<Response> {
        self.ctx_attach(ctx_id, res_id, false)
    }

    fn ctx_attach(
        &mut self,
        ctx_id: ContextId,
        res_id: ResourceId,
        attach: bool,
    ) -> GpuResult<Response> {
        if !self.contexts.contains_key(&ctx_id) {
            return Err(GpuError::InvalidContext(ctx_id));
        }
        let r = self
            .resources
            .get_mut(&res_id)
            .ok_or(GpuError::InvalidResource(res_id))?;
        let present = r.contexts.contains(&ctx_id);
        if attach && !present {
            r.contexts.push(ctx_id);
        } else if !attach {
            r.contexts.retain(|c| *c != ctx_id);
        }
        if let Some(backend) = self
            .contexts
            .get_mut(&ctx_id)
            .and_then(|c| c.backend.as_mut())
        {
            backend.attach(res_id, attach);
        }
        Ok(Response::OkNoData)
    }

    pub(super) fn submit_3d(&mut self, ctx_id: ContextId, data: &[u8]) -> Outcome {
        let Some(ctx) = self.contexts.get_mut(&ctx_id) else {
            return Outcome::from(Err(GpuError::InvalidContext(ctx_id)));
        };
        let owner = ctx.owner;
        let Some(backend) = ctx.backend.as_mut() else {
            return Outcome::from(Err(GpuError::InvalidParameter(format!(
                "context {ctx_id} runs no command stream"
            ))));
        };
        let mut env = NativeEnv {
            bm: &self.bm,
            resources: &mut self.resources,
            engine: &mut self.engine,
            cfg: &self.cfg,
            ctx_id,
            owner,
        };
        let outcome = backend.submit(data, &mut env);
        let fence = outcome.fence;
        let result = match outcome.error {
            None => Ok(Response::OkNoData),
            Some(e) => Err(GpuError::Submit(e)),
        };
        Outcome {
            fence,
            ..Outcome::from(result)
        }
    }
}
