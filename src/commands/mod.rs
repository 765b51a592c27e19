//! One module per group of commands; each takes the parsed flags and a [`Ctx`].

pub mod bench;
pub mod completions;
pub mod control;
pub mod demo;
pub mod doctor;
pub mod image;
pub mod network;
pub mod report;
pub mod run;
pub mod spec;
pub mod supervise;
pub mod table;
pub mod view;
pub mod volume;

use std::path::PathBuf;

use crate::instance::Instances;
use crate::store::Store;

/// What every command needs: the data directory, its image store and its instances.
pub struct Ctx {
    /// `--root`.
    pub root: PathBuf,
    /// The image store.
    pub store: Store,
    /// The instance records.
    pub instances: Instances,
}

impl Ctx {
    /// Opens (creating if needed) the data directory.
    pub fn open(root: PathBuf) -> anyhow::Result<Ctx> {
        let store = Store::open(&root)?;
        let instances = Instances::open(&root)?;
        Ok(Ctx {
            root,
            store,
            instances,
        })
    }
}
