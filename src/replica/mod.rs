//! One replica on this machine, written once for the local store and for the SFTP server:
//! its layout (`layout`), where it lives (`home`), the root-confined folder handle every path goes through (`Root`:
//! `openat2` or a component walk, durability barriers), its lock (`lock`), the trash and
//! putting files in place (`trash`, on the pure decisions of `protocol` every transport runs), and which files our SFTP clients are writing
//! (`writers`). Above this: `store::local` (the sync's view) and `server` (the SFTP
//! clients' view).

pub mod chunks;
pub mod home;
pub mod layout;
pub mod lock;
pub mod protocol;
pub mod root;
mod trash;
pub mod writers;

pub use root::{Follow, NameRules, Root, RootError, RootResult, rename_at};
pub use trash::InstallError;
