//! Black-box tests of monolith through HTTP: one binary, so the crate links once.

mod auction;
mod books;
mod cli;
mod docs;
mod errors;
mod helpers;
mod ops;
mod server;
mod things;
