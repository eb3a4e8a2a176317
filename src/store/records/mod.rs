//! The records every store returns and the rules of what goes in, shared by both engines: checked
//! inputs ([`Name`](auction::Name), [`BookFields`](books::BookFields), ...) and the seed formats.
//! Free of locks, I/O and storage.

pub mod auction;
pub mod books;
pub mod things;
