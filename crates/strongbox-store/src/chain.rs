//! The per-vault audit hash chain: `hash[n] = SHA-256(hash[n-1] || n || record_json)`, with
//! `hash[0]` = 32 zero bytes. Editing, removing or reordering a record breaks every later link;
//! the head kept beside the records shows a cut tail.

use crate::AuditRow;
use sha2::{Digest, Sha256};

pub const GENESIS: [u8; 32] = [0u8; 32];

pub fn link(prev_hash: &[u8], seq: i64, record_json: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev_hash);
    h.update(seq.to_be_bytes());
    h.update(record_json.as_bytes());
    h.finalize().to_vec()
}

/// Where and how a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chain broken at record {}: {}", self.seq, self.reason)
    }
}

/// Incremental verifier: feed rows in seq order, then `finish` with the stored head.
#[derive(Debug)]
pub struct Verifier {
    expected_seq: i64,
    prev: Vec<u8>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            expected_seq: 1,
            prev: GENESIS.to_vec(),
        }
    }
}

impl Verifier {
    pub fn push(&mut self, row: &AuditRow) -> Result<(), ChainBreak> {
        let brk = |reason: &str| ChainBreak {
            seq: row.seq,
            reason: reason.to_string(),
        };
        if row.seq != self.expected_seq {
            return Err(ChainBreak {
                seq: self.expected_seq,
                reason: format!("record missing (next present is {})", row.seq),
            });
        }
        if row.prev_hash != self.prev {
            return Err(brk("previous-hash link does not match"));
        }
        if link(&self.prev, row.seq, &row.entry.record_json) != row.hash {
            return Err(brk("record content does not match its hash"));
        }
        self.prev = row.hash.clone();
        self.expected_seq += 1;
        Ok(())
    }

    /// Checks the stored head against the last record; returns how many records were checked.
    pub fn finish(self, head: Option<(i64, Vec<u8>)>) -> Result<i64, ChainBreak> {
        let count = self.expected_seq - 1;
        match head {
            None if count == 0 => Ok(0),
            None => Err(ChainBreak {
                seq: count,
                reason: "chain head is missing".into(),
            }),
            Some((seq, hash)) if seq == count && hash == self.prev => Ok(count),
            Some((seq, _)) if seq > count => Err(ChainBreak {
                seq: count + 1,
                reason: format!("records {}..={} are missing from the tail", count + 1, seq),
            }),
            Some(_) => Err(ChainBreak {
                seq: count,
                reason: "chain head does not match the last record".into(),
            }),
        }
    }
}
