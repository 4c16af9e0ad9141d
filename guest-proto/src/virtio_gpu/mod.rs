//! The virtio-gpu device type: numbers, wire structs, the request decoder
//! and the response encoder.

pub mod build;
mod command;
mod consts;
mod error;
mod response;
mod wire;

pub use command::*;
pub use consts::*;
pub use error::*;
pub use response::*;
pub use wire::*;
