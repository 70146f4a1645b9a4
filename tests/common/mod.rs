//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

pub mod daemon;
pub mod pair;
pub mod remote;
pub mod scenario;
pub mod server;
