//! The subtests, one file each.

pub mod bench;
pub mod kms;
pub mod native;
pub mod params;
pub mod timed;
