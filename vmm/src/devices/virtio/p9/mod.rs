//! virtio-9p (virtio 1.2 spec, 5.9 / the "9P transport" of Linux's `9pnet_virtio`): a host
//! directory shared with the guest, which mounts it with `-t 9p -o trans=virtio` by its mount
//! tag. One queue; each request chain is a T-message in the driver's readable buffers followed
//! by room for the R-message in its writable ones (for large reads and writes the Linux
//! driver puts the data pages in separate descriptors, so both sides are gathered/scattered).

mod attr;
pub mod host_fs;
pub mod server;
pub mod wire;

use std::path::Path;

use virtio_queue::Queue;
use vm_memory::Bytes;

use super::VirtioDevice;
use crate::memory::GuestMem;

/// virtio device id of a 9P transport.
pub const DEVICE_ID: u32 = 9;
/// Feature: the config space holds a mount tag.
pub const VIRTIO_9P_MOUNT_TAG: u64 = 1;
/// Descriptors per queue (the Linux driver uses up to 128 per large request).
pub const QUEUE_SIZE: u16 = 256;
/// Longest mount tag the guest accepts.
pub const MAX_TAG: usize = 31;

/// One `-v HOST:GUEST[:ro]` as the VMM sees it: which host directory, under which tag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Share {
    /// Host directory.
    pub host: std::path::PathBuf,
    /// Mount tag the guest init mounts it by.
    pub tag: String,
    /// Refuse every change (EROFS).
    pub read_only: bool,
}

/// The mount tag of the `i`-th share.
pub fn tag(i: usize) -> String {
    format!("vcshare{i}")
}

/// One shared directory as a virtio device.
pub struct P9Device {
    server: server::Server,
    config: Vec<u8>,
    request: Vec<u8>,
    reply: wire::Reply,
    max_sizes: [u16; 1],
}

/// Errors creating a share.
#[derive(Debug, thiserror::Error)]
pub enum ShareError {
    /// The host directory cannot be opened.
    #[error("cannot share {path}: {source}")]
    Open {
        /// Host path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The tag is empty or too long.
    #[error("mount tag {0:?} must be 1 to 31 bytes")]
    Tag(String),
}

impl P9Device {
    /// Shares host directory `root` under mount tag `tag`.
    pub fn new(root: &Path, tag: &str, read_only: bool) -> Result<Self, ShareError> {
        if tag.is_empty() || tag.len() > MAX_TAG {
            return Err(ShareError::Tag(tag.to_string()));
        }
        let server = server::Server::new(root, read_only).map_err(|source| ShareError::Open {
            path: root.display().to_string(),
            source,
        })?;
        let mut config = (tag.len() as u16).to_le_bytes().to_vec();
        config.extend_from_slice(tag.as_bytes());
        Ok(P9Device {
            server,
            config,
            request: Vec::new(),
            reply: wire::Reply::default(),
            max_sizes: [QUEUE_SIZE],
        })
    }

    /// Serves one request chain; returns the bytes written into the guest's buffers.
    fn handle(&mut self, mem: &GuestMem, chain: virtio_queue::DescriptorChain<&GuestMem>) -> u32 {
        let limit = self.server.msize() as usize + 4096;
        self.request.clear();
        let mut writable = Vec::new();
        for d in chain {
            if d.is_write_only() {
                writable.push((d.addr(), d.len() as usize));
                continue;
            }
            if !writable.is_empty() {
                return 0; // readable after writable: malformed chain
            }
            let (at, n) = (self.request.len(), d.len() as usize);
            if at + n > limit {
                return 0;
            }
            self.request.resize(at + n, 0);
            if mem.read_slice(&mut self.request[at..], d.addr()).is_err() {
                return 0;
            }
        }
        let room: usize = writable.iter().map(|w| w.1).sum();
        self.server.handle(&self.request, &mut self.reply);
        if self.reply.buf.len() > room {
            let tag = self
                .request
                .get(5..7)
                .map_or(u16::MAX, |t| u16::from_le_bytes([t[0], t[1]]));
            self.reply.error(tag, libc::ENOBUFS);
            if self.reply.buf.len() > room {
                return 0;
            }
        }
        let mut done = 0usize;
        for (addr, len) in writable {
            if done == self.reply.buf.len() {
                break;
            }
            let n = len.min(self.reply.buf.len() - done);
            if mem
                .write_slice(&self.reply.buf[done..done + n], addr)
                .is_err()
            {
                return done as u32;
            }
            done += n;
        }
        done as u32
    }
}

impl VirtioDevice for P9Device {
    fn device_type(&self) -> u32 {
        DEVICE_ID
    }

    fn features(&self) -> u64 {
        VIRTIO_9P_MOUNT_TAG
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &self.max_sizes
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.config.get(offset as usize + i).copied().unwrap_or(0);
        }
    }

    fn process_queue(&mut self, _index: usize, queue: &mut Queue, mem: &GuestMem) -> bool {
        super::serve_chains(queue, mem, |chain| self.handle(mem, chain))
    }
}
