//! Runtime plumbing shared by Tributary binaries.
