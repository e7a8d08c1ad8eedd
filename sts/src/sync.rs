//! Locks that cannot poison. A thread that panicked while holding one (a bug, caught by hyper's
//! connection task) must not turn every later request into a panic too: the data behind these
//! locks is only ever replaced whole or updated by single statements, so it is consistent
//! whatever happened to the thread that held it last.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

pub trait Locked<T: ?Sized> {
    /// The guard, whether or not a previous holder panicked.
    fn locked(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Locked<T> for Mutex<T> {
    fn locked(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

pub trait ReadWrite<T: ?Sized> {
    /// Shared access, whether or not a previous holder panicked.
    fn reading(&self) -> RwLockReadGuard<'_, T>;
    /// Exclusive access, whether or not a previous holder panicked.
    fn writing(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> ReadWrite<T> for RwLock<T> {
    fn reading(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(PoisonError::into_inner)
    }
    fn writing(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, RwLock};

    use super::{Locked, ReadWrite};

    #[test]
    fn a_panic_while_holding_a_lock_does_not_spread() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let _ = std::thread::spawn(move || {
            let _g = m2.lock();
            let _w = l2.write();
            panic!("a bug while holding both");
        })
        .join();
        assert!(m.is_poisoned() && l.is_poisoned());
        *m.locked() += 1;
        *l.writing() += 1;
        assert_eq!((*m.locked(), *l.reading()), (2, 2));
    }
}
