//! Signing: the requests this node saw on the chain (the only ones it signs),
//! invitations to sign held until the request shows up here, and leading a
//! signature with one of this node's own presignatures.

use super::instance::Output;
use super::stock::UsableRecord;
use super::{Engine, EngineError, Job, NodeMessage, RecordId, Scheme};
use primitives::{PendingRequest, RequestId, SignatureResponse};
use threshold::{ParticipantId, Participants};

impl<S: Scheme> Engine<S> {
    pub(super) fn add_request(&mut self, request: &PendingRequest) -> Result<(), String> {
        let task = S::sign_task(request)?;
        let request_id = request.request_id;
        self.requests.insert(request_id, task);
        let waiting: Vec<(RequestId, ParticipantId)> = self
            .deferred
            .keys()
            .filter(|(id, _)| *id == request_id)
            .copied()
            .collect();
        for key in waiting {
            let (_, start) = self.deferred.remove(&key).expect("listed above");
            let job = start.job.clone();
            if let Err(e) = self.handle_start(key.1, start) {
                tracing::debug!(error = %e, "a deferred invitation to sign was refused");
                if let EngineError::Refused(reason) = e {
                    self.decline(key.1, job, reason);
                }
            }
        }
        Ok(())
    }

    pub(super) fn remove_request(&mut self, request_id: &RequestId) {
        self.requests.remove(request_id);
    }

    pub(super) fn check_answer(
        &self,
        request_id: &RequestId,
        response: &SignatureResponse,
    ) -> Option<Result<(), String>> {
        let key = self.key.as_ref()?;
        let task = self.requests.get(request_id)?;
        Some(S::check_response(key, task, response))
    }

    pub(super) fn propose_sign(
        &mut self,
        request_id: RequestId,
        live: &Participants,
    ) -> Result<Option<RecordId>, EngineError> {
        let Some(UsableRecord {
            id: presignature,
            holders,
        }) = self
            .own_confirmed(self.store.records(S::PRESIGNATURES)?, live)
            .into_iter()
            .next()
        else {
            return Ok(None);
        };
        let others = holders.into_iter().filter(|p| *p != self.me);
        let signers =
            Participants::new(std::iter::once(self.me).chain(others.take(self.threshold - 1)))?;
        let job = Job::Sign {
            request_id: request_id.0,
            presignature,
        };
        self.retire_elsewhere(
            S::PRESIGNATURES,
            presignature,
            &signers,
            NodeMessage::RetirePresignature(presignature),
        )?;
        self.acks.remove(&presignature);
        let output = self.join_sign(&job, &signers, request_id, presignature)?;
        self.launch(job, signers, true, output);
        Ok(Some(presignature))
    }

    pub(super) fn join_sign(
        &self,
        job: &Job,
        signers: &Participants,
        request_id: RequestId,
        presignature: RecordId,
    ) -> Result<Output<S>, EngineError> {
        let key = self.key.as_ref().ok_or(EngineError::NoKey)?;
        let task = self.requests.get(&request_id).ok_or_else(|| {
            EngineError::Refused(format!(
                "request {request_id} is not pending on the chain as seen here"
            ))
        })?;
        // Taken (and retired) before any signature share leaves this node.
        let (epoch, presig) = self
            .store
            .take_record::<S::Presignature>(S::PRESIGNATURES, presignature)?
            .ok_or_else(|| {
                EngineError::Refused(format!("presignature {presignature} is not available here"))
            })?;
        if epoch != self.epoch {
            return Err(EngineError::Refused(format!(
                "presignature {presignature} belongs to epoch {epoch}"
            )));
        }
        Ok(Output::Sign(S::sign(
            self.instance_of(job),
            self.me,
            signers.clone(),
            key,
            presig,
            task,
        )?))
    }
}
