//! The registry: where each kind's objects live in the store ([`keys`]) and how stored values decode into
//! resources. The engine and the API both use it; it knows nothing of either.

pub mod keys;
