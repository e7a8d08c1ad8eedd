//! Concurrent misses for one exchange make one STS call: the first request dispatches, the others
//! wait for its answer. Per worker (each worker is its own VM); across workers the shared cache
//! collapses later misses.

use std::collections::HashMap;

#[derive(Debug, Default)]
pub struct Inflight {
    waiting: HashMap<String, Vec<u32>>,
}

impl Inflight {
    /// Registers `context` for `key`. True if it is the first and must make the call.
    pub fn join(&mut self, key: &str, context: u32) -> bool {
        match self.waiting.get_mut(key) {
            Some(w) => {
                w.push(context);
                false
            }
            None => {
                self.waiting.insert(key.to_string(), Vec::new());
                true
            }
        }
    }

    /// The call for `key` has been answered: the contexts that waited for it.
    pub fn finish(&mut self, key: &str) -> Vec<u32> {
        self.waiting.remove(key).unwrap_or_default()
    }

    pub fn in_flight(&self) -> usize {
        self.waiting.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_leader_many_followers() {
        let mut f = Inflight::default();
        assert!(f.join("k", 1));
        assert!(!f.join("k", 2));
        assert!(!f.join("k", 3));
        assert!(f.join("other", 4));
        assert_eq!(f.finish("k"), vec![2, 3]);
        assert!(f.join("k", 5));
        assert_eq!(f.in_flight(), 2);
    }
}
