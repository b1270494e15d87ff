//! Faults against the real `tether serve` over real sockets (issue 8): backends and upstreams
//! killed mid-stream, running out of file descriptors, and config reload on SIGHUP. In each,
//! the affected clients get a documented answer and everyone else keeps being served.
#![cfg(target_os = "linux")]

#[path = "../support/mod.rs"]
mod support;

mod backends;
mod clients;
mod descriptors;
mod gateway;
mod reload;
