//! Pairing a laptop with the hub by a short code: the codes (`code`), the key exchange both
//! ends run inside an SSH connection (`protocol`), its framing (`wire`), and the laptop's side
//! of it, which writes known_hosts (`known_hosts`) and the config once the hub has proved it
//! knows the code (`laptop`). The hub's side is the server's (`server::pairing`).

pub mod code;
pub mod discover;
pub mod known_hosts;
pub mod laptop;
pub mod protocol;
pub mod wire;
