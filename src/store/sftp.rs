//! `SftpStore`: a replica folder behind SFTP (russh client), reached without any remote shell.

use super::StoreError;
use crate::config::Config;
use crate::target::Remote;

/// Placeholder until the SFTP store lands.
pub enum SftpStore {}

/// Connects to a remote replica (host key checked against known_hosts).
pub async fn open(_r: &Remote, _cfg: &Config, _accept_new: bool) -> Result<SftpStore, StoreError> {
    Err(StoreError::Other(
        "SFTP targets are not supported yet".into(),
    ))
}

impl super::Store for SftpStore {
    fn describe(&self) -> String {
        match *self {}
    }
    fn lock<'a>(&'a self, _: &'a super::LockInfo) -> super::BoxFuture<'a, Result<(), StoreError>> {
        match *self {}
    }
    fn unlock(&self) -> super::BoxFuture<'_, Result<(), StoreError>> {
        match *self {}
    }
    fn load_index(&self) -> super::BoxFuture<'_, Result<Option<crate::index::Index>, StoreError>> {
        match *self {}
    }
    fn refresh_index<'a>(
        &'a self,
        _: &'a mut crate::index::Index,
    ) -> super::BoxFuture<'a, Result<crate::scan::ScanStats, StoreError>> {
        match *self {}
    }
    fn save_index<'a>(
        &'a self,
        _: &'a crate::index::Index,
    ) -> super::BoxFuture<'a, Result<(), StoreError>> {
        match *self {}
    }
    fn stat<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
    ) -> super::BoxFuture<'a, Result<Option<crate::scan::Observed>, StoreError>> {
        match *self {}
    }
    fn read<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
    ) -> super::BoxFuture<'a, Result<super::Reader, StoreError>> {
        match *self {}
    }
    fn write<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
        _: super::Reader,
        _: crate::index::MTime,
        _: Option<crate::index::ContentHash>,
    ) -> super::BoxFuture<'a, Result<crate::scan::Observed, StoreError>> {
        match *self {}
    }
    fn mkdir<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
    ) -> super::BoxFuture<'a, Result<(), StoreError>> {
        match *self {}
    }
    fn trash<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
    ) -> super::BoxFuture<'a, Result<(), StoreError>> {
        match *self {}
    }
    fn rmdir<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
    ) -> super::BoxFuture<'a, Result<(), StoreError>> {
        match *self {}
    }
    fn rename<'a>(
        &'a self,
        _: &'a crate::relpath::RelPath,
        _: &'a crate::relpath::RelPath,
    ) -> super::BoxFuture<'a, Result<(), StoreError>> {
        match *self {}
    }
    fn cleanup(&self, _: u64) -> super::BoxFuture<'_, Result<(), StoreError>> {
        match *self {}
    }
}
