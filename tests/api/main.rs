//! Black-box tests of monolith through HTTP: one binary, so the crate links once.

mod auction;
mod books;
pub mod cli;
mod conditional;
mod connections;
mod deploy;
mod docs;
mod echo;
mod edge;
mod errors;
pub mod feeds;
mod helpers;
mod http2;
mod idempotency;
mod ids;
mod lists;
mod observability;
mod ops;
mod queries;
mod replicas;
mod round_trips;
pub mod server;
mod things;
mod tls;
