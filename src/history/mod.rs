//! Getting things back: the versions the trash keeps and which a restore takes
//! (`versions`), what the trash lets go (`evict`), conflict copies (`conflicts`) and the
//! changes log (`log`) are pure decisions; `sync::recover` carries them out on a replica
//! through its store, local or over SFTP.

pub mod conflicts;
pub mod evict;
pub mod log;
pub mod versions;
