//! The only code that prints a run: the sink consumes the engine's events,
//! redacts once, renders them (`report`) and journals them.

pub mod out;
pub mod progress;
pub mod redact;
pub mod report;
pub mod sink;
pub mod table;
pub mod timeline;
