//! Workspace-level tests and the vhost-user frontend harness (arrives with
//! the device issue).

#![deny(missing_docs)]
