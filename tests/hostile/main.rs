//! Hostile tests: attack programs (in `fixtures/`) run through the real
//! `warden run` binary, and attacks on live warm boxes (`warm`) and on a
//! session's file API (`sessions`) through the real `warden serve`. Each test asserts how the run ended *and* that
//! the host is untouched: no file written, no process left, no listener
//! reached, no execution left running.
//!
//! The jail needs root (or the rootless test's unprivileged user), so these
//! tests refuse to run as anyone else rather than pass vacuously.

mod harness;
#[path = "../support/platform.rs"]
mod platform;

mod compat;
mod filesystem;
mod kernel;
mod lifecycle;
mod network;
mod resources;
mod rootless;
mod sessions;
mod warm;
