//! Writing into a person's config file without losing what they wrote: keys are set in place
//! (`toml_edit`), comments, order and spacing stay, and the file is replaced atomically.

use std::path::{Path, PathBuf};
use toml_edit::{DocumentMut, Item, Table, value};

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML ({why}); fix it first, nothing was changed")]
    Parse { path: PathBuf, why: String },
    #[error("{path}: `{key}` is not a table; fix it first, nothing was changed")]
    NotATable { path: PathBuf, key: String },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A config file being edited: read (or empty when missing), changed, then saved.
pub struct ConfigDoc {
    path: PathBuf,
    doc: DocumentMut,
}

impl ConfigDoc {
    pub fn open(path: &Path) -> Result<ConfigDoc, EditError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(EditError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let doc = text.parse::<DocumentMut>().map_err(|e| EditError::Parse {
            path: path.to_path_buf(),
            why: e.message().to_string(),
        })?;
        Ok(ConfigDoc {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The top-level string `key`, if set.
    pub fn get_str(&self, key: &str) -> Option<String> {
        self.doc.get(key)?.as_str().map(str::to_string)
    }

    /// The string at `path` (`["peers", "pi", "url"]`), if set.
    pub fn get_in(&self, path: &[&str]) -> Option<String> {
        let (last, tables) = path.split_last()?;
        let mut t = self.doc.as_table();
        for key in tables {
            t = t.get(key)?.as_table()?;
        }
        t.get(last)?.as_str().map(str::to_string)
    }

    /// Sets a top-level key (before any table, where TOML needs it).
    pub fn set_str(&mut self, key: &str, v: &str) {
        self.doc[key] = value(v);
    }

    /// The table at `path` (`["peers", "pi"]`), made when missing; dotted parents stay
    /// implicit so the file reads `[peers.pi]`.
    pub fn table(&mut self, path: &[&str]) -> Result<&mut Table, EditError> {
        let shown = self.path.clone();
        let mut t = self.doc.as_table_mut();
        for (i, key) in path.iter().enumerate() {
            let item = t.entry(key).or_insert_with(|| {
                let mut new = Table::new();
                new.set_implicit(i + 1 < path.len());
                Item::Table(new)
            });
            t = item.as_table_mut().ok_or_else(|| EditError::NotATable {
                path: shown.clone(),
                key: path[..=i].join("."),
            })?;
        }
        Ok(t)
    }

    pub fn save(&self) -> Result<(), EditError> {
        use std::io::Write;
        let err = |source| EditError::Write {
            path: self.path.clone(),
            source,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = self
            .path
            .with_extension(format!("toml.tmp.{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(self.doc.to_string().as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_keep_comments_and_other_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(
            &p,
            "# my notes\nname = \"laptop\" # inline\n\n[peers.usb]\n# the stick\nurl = \"/media/usb\"\n",
        )
        .unwrap();
        let mut c = ConfigDoc::open(&p).unwrap();
        assert_eq!(c.get_str("root"), None);
        c.set_str("root", "/home/me/Sync");
        let t = c.table(&["peers", "pi"]).unwrap();
        t["url"] = value("sftp://me@pi:2222/");
        c.save().unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        for kept in [
            "# my notes",
            "# inline",
            "# the stick",
            "[peers.usb]",
            "[peers.pi]",
        ] {
            assert!(text.contains(kept), "{kept} lost:\n{text}");
        }
        assert!(!text.contains("[peers]\n"), "{text}");
        let cfg = crate::config::Config::load(Some(&p)).unwrap();
        assert_eq!(cfg.peers["pi"].url, "sftp://me@pi:2222/");
        assert_eq!(cfg.root.as_deref(), Some(Path::new("/home/me/Sync")));
        assert_eq!(cfg.name.as_deref(), Some("laptop"));
    }

    #[test]
    fn a_missing_file_is_created_and_a_broken_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/config.toml");
        let mut c = ConfigDoc::open(&p).unwrap();
        c.table(&["server"]).unwrap()["listen"] = value("0.0.0.0:2222");
        c.save().unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("[server]"));
        std::fs::write(&p, "[peers\n").unwrap();
        let e = ConfigDoc::open(&p).err().unwrap().to_string();
        assert!(e.contains("not valid TOML"), "{e}");
        std::fs::write(&p, "peers = 3\n").unwrap();
        let mut c = ConfigDoc::open(&p).unwrap();
        assert!(c.table(&["peers", "pi"]).is_err());
    }
}
