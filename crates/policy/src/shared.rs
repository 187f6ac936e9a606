//! [`Shared`]: a value several models hold at once, copied only when one of them changes it.
//!
//! The agent builds a new [`crate::Cluster`] for every policy revision from parts it keeps, and hands it to the
//! compiler, the flow pipeline and the API. The parts a revision did not change (every endpoint when a policy
//! changed, every rule of the policies it did not touch) are shared with the previous revision instead of
//! copied: cloning a `Shared` is a reference count, and two `Shared` that are the same allocation compare equal
//! without looking inside (which is how the compiler finds what did not change). Writing through one
//! (`DerefMut`) copies its value first when another holder shares it, so code that edits a model in place
//! keeps working and never changes another model.

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A value shared between holders, copied on write (see the module docs).
pub struct Shared<T>(Arc<T>);

impl<T> Shared<T> {
    pub fn new(v: T) -> Shared<T> {
        Shared(Arc::new(v))
    }
    /// The same allocation (then the values are equal without comparing them).
    pub fn ptr_eq(a: &Shared<T>, b: &Shared<T>) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Shared<T> {
        Shared(self.0.clone())
    }
}

impl<T: Default> Default for Shared<T> {
    fn default() -> Shared<T> {
        Shared::new(T::default())
    }
}

impl<T> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone> DerefMut for Shared<T> {
    fn deref_mut(&mut self) -> &mut T {
        Arc::make_mut(&mut self.0)
    }
}

impl<T> From<T> for Shared<T> {
    fn from(v: T) -> Shared<T> {
        Shared::new(v)
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Shared<T>) -> bool {
        Shared::ptr_eq(self, other) || *self.0 == *other.0
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<T: serde::Serialize> serde::Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'a, T> IntoIterator for &'a Shared<T>
where
    &'a T: IntoIterator,
{
    type Item = <&'a T as IntoIterator>::Item;
    type IntoIter = <&'a T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        (&*self.0).into_iter()
    }
}

impl<'a, T: Clone> IntoIterator for &'a mut Shared<T>
where
    &'a mut T: IntoIterator,
{
    type Item = <&'a mut T as IntoIterator>::Item;
    type IntoIter = <&'a mut T as IntoIterator>::IntoIter;
    fn into_iter(self) -> Self::IntoIter {
        Arc::make_mut(&mut self.0).into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_copies_a_shared_value_and_leaves_the_other_holder_alone() {
        let a: Shared<Vec<u32>> = vec![1, 2].into();
        let mut b = a.clone();
        assert!(Shared::ptr_eq(&a, &b) && a == b);
        b.push(3);
        for x in &mut b {
            *x += 1;
        }
        assert_eq!(*a, vec![1, 2]);
        assert_eq!(*b, vec![2, 3, 4]);
        assert!(!Shared::ptr_eq(&a, &b) && a != b);
        // Equal values in different allocations still compare equal.
        assert_eq!(a, Shared::new(vec![1, 2]));
        assert_eq!((&a).into_iter().sum::<u32>(), 3);
    }
}
