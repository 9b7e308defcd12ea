//! Everything that crosses to a host: the SSH transport and the host's
//! long-lived shell (`ssh`), shell text built from typed values (`script`),
//! the framing of a request's parts (`frame`), requests of writes
//! (`writes`), the host lock (`lock`), known_hosts (`known_hosts`), bastions (`jump`),
//! passwords (`credentials`) and what a connection carried (`traffic`). russh is confined here; nothing
//! here knows about tasks or modules' decisions.

pub mod credentials;
pub mod frame;
pub mod jump;
pub mod known_hosts;
pub mod lock;
pub mod relay;
pub mod script;
pub mod ssh;
pub mod ssh_config;
pub mod traffic;
pub mod writes;
