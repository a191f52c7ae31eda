//! The conversations of earlier Responses API answers, kept in memory so that a request may
//! go on from one with `previous_response_id`. The store is bounded in entries and in bytes;
//! the oldest conversations leave first. Nothing is written to disk.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;

/// Conversations kept at most.
pub const MAX_RESPONSES: usize = 512;
/// Bytes of conversation (as JSON) kept at most.
pub const MAX_BYTES: usize = 64 << 20;

/// One stored answer: the conversation up to and including it, as chat completions messages
/// (without the request's `instructions`, which a later request does not inherit).
#[derive(Clone, Debug)]
pub struct StoredResponse {
    pub messages: Vec<Value>,
    bytes: usize,
}

#[derive(Default)]
struct Entries {
    by_id: HashMap<String, StoredResponse>,
    order: VecDeque<String>,
    bytes: usize,
}

/// Thread-safe, bounded, oldest out first.
#[derive(Default)]
pub struct ResponseStore {
    entries: Mutex<Entries>,
}

impl ResponseStore {
    /// Keeps `messages` as the conversation of response `id`. A conversation larger than the
    /// whole store is not kept.
    pub fn insert(&self, id: String, messages: Vec<Value>) {
        let bytes = messages.iter().map(|m| m.to_string().len()).sum::<usize>();
        if bytes > MAX_BYTES {
            return;
        }
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        while entries.order.len() >= MAX_RESPONSES || entries.bytes + bytes > MAX_BYTES {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some(old) = entries.by_id.remove(&oldest) {
                entries.bytes -= old.bytes;
            }
        }
        entries.bytes += bytes;
        entries.order.push_back(id.clone());
        entries.by_id.insert(id, StoredResponse { messages, bytes });
    }

    /// The conversation of response `id`, if it is still kept.
    pub fn get(&self, id: &str) -> Option<StoredResponse> {
        self.entries.lock().ok()?.by_id.get(id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_oldest_conversations_leave_first() {
        let store = ResponseStore::default();
        for i in 0..MAX_RESPONSES + 2 {
            store.insert(
                format!("resp_{i}"),
                vec![json!({"role": "user", "content": i})],
            );
        }
        assert!(store.get("resp_0").is_none());
        assert!(store.get("resp_1").is_none());
        assert!(store.get("resp_2").is_some());
        let last = store.get(&format!("resp_{}", MAX_RESPONSES + 1)).unwrap();
        assert_eq!(last.messages[0]["content"], json!(MAX_RESPONSES + 1));
    }

    #[test]
    fn the_store_keeps_to_its_bytes() {
        let store = ResponseStore::default();
        let big = "x".repeat(MAX_BYTES / 4);
        for i in 0..4 {
            store.insert(format!("r{i}"), vec![json!({"content": big})]);
        }
        assert!(store.get("r0").is_none());
        assert!(store.get("r1").is_some());
        assert!(store.get("r3").is_some());
        store.insert(
            "huge".into(),
            vec![json!({"content": "x".repeat(MAX_BYTES)})],
        );
        assert!(store.get("huge").is_none());
        assert!(store.get("r3").is_some());
    }
}
