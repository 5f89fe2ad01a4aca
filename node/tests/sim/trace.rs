//! The trace: one line per thing that happened, and its digest (equal for
//! equal seeds).

use super::*;

pub(super) fn digest(trace: &[String]) -> u64 {
    use sha3::{Digest, Sha3_256};
    let mut hasher = Sha3_256::new();
    for line in trace {
        hasher.update(line.as_bytes());
        hasher.update(b"\n");
    }
    u64::from_be_bytes(hasher.finalize()[..8].try_into().unwrap())
}

pub(super) fn job_text(job: &Job) -> String {
    match job {
        Job::Keygen { attempt, .. } => format!("keygen@{attempt}"),
        Job::Reshare { attempt, .. } => format!("reshare@{attempt}"),
        Job::Triple { id } => format!("triple {id}"),
        Job::Presign { id, .. } => format!("presign {id}"),
        Job::Sign { presignature, .. } => format!("sign with {presignature}"),
    }
}

pub(super) fn message_text(message: &NodeMessage) -> String {
    match message {
        NodeMessage::Start(start) => format!("start {}", job_text(&start.job)),
        NodeMessage::Protocol(bytes) => match threshold::wire::Header::decode(bytes) {
            Ok((header, _)) => format!("protocol {:?}", header.kind),
            Err(_) => "protocol ?".into(),
        },
        NodeMessage::Ping => "ping".into(),
        NodeMessage::Decline { job, .. } => format!("decline {}", job_text(job)),
        NodeMessage::StoredTriple(id) => format!("stored triple {id}"),
        NodeMessage::StoredPresignature(id) => format!("stored presignature {id}"),
        NodeMessage::RetireTriple(id) => format!("retire triple {id}"),
        NodeMessage::RetirePresignature(id) => format!("retire presignature {id}"),
        NodeMessage::Leading(id) => format!("leading {}", hex::encode(&id[..4])),
        NodeMessage::Passing(id) => format!("passing {}", hex::encode(&id[..4])),
        NodeMessage::Waiting(job) => format!("waiting in {}", job_text(job)),
        NodeMessage::Abandoned { job, .. } => format!("abandoned {}", job_text(job)),
        NodeMessage::Answer { request_id, .. } => {
            format!("answer {}", hex::encode(&request_id[..4]))
        }
    }
}

impl<S: Suite> World<S> {
    pub(super) fn note(&mut self, line: String) {
        self.trace.push(format!(
            "{} t={}ms {line}",
            self.step,
            self.now() / 1_000_000
        ));
    }
}
