//! A client `Connection` fed arbitrary bytes in input-derived chunks; see
//! `tether_proto_fuzz::run_connection` for the input layout and the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_proto::Role;

fuzz_target!(|data: &[u8]| tether_proto_fuzz::run_connection(Role::Client, data));
