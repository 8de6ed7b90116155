//! A file system that loses power: held in memory, served through FUSE (the `fuser` crate, which
//! mounts with mount(2) directly as root), and able to forget, at a simulated power loss, what
//! was never synced, the way a disk with a volatile cache may.
//!
//! The model, at least as forgetful as a real file system, so that only what a program made
//! durable on purpose is sure to survive:
//! - A file's bytes are durable up to its last `fsync` or `fdatasync`. The writes and
//!   truncations after it are pending; at a power loss each file keeps none of them, all of
//!   them, or any subset of their 4 KiB pieces (chosen at random per file), applied in order:
//!   the kernel writes dirty pages back in no promised order, and a power loss stops it anywhere.
//! - Directories, one of three ways per power loss ([`Metadata`]): each keeps only the entries
//!   it had at its own last `fsync` (strict POSIX: a file created, renamed or removed since is
//!   back as it was); or every directory keeps the entries it had at the last `fsync` of any
//!   file or directory, and every file the bytes it had appended by then (a journaling file
//!   system such as ext4 in its default `data=ordered` mode, whose fsync commits every metadata
//!   change made before it, after the data of the blocks those changes allocate); or every
//!   directory keeps its live entries.
//!
//! A crash test mounts it, runs the program, kills it, unmounts, calls
//! [`CrashFs::lose_power`] (or [`CrashFs::lose_power_with`] one directory model), and mounts it
//! again. [`CrashFs::fail_next_fsync_of`] makes a file's next fsync fail with EIO, as a failing
//! disk's does; [`CrashFs::set_capacity`] makes it a small disk, whose writes past its size fail
//! with ENOSPC and whose `statfs` tells how much is free.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    BackgroundSession, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, LockOwner, MountOption, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request,
    WriteFlags,
};
use rand::Rng;

/// How long the kernel may cache an entry or attributes. Every change goes through the kernel
/// while mounted, and each power loss happens unmounted, so caching is safe.
const TTL: Duration = Duration::from_secs(1);
/// The piece of a pending write that survives or not as a whole.
const PAGE: u64 = 4096;

/// The file system's state, kept across mounts.
#[derive(Clone)]
pub struct CrashFs {
    state: Arc<Mutex<State>>,
}

/// A mount of a [`CrashFs`]; dropping it unmounts.
pub struct Mounted {
    session: Option<BackgroundSession>,
    path: PathBuf,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Unmounts, failing if something still has a file open.
    pub fn unmount(mut self) {
        if let Some(session) = self.session.take() {
            // Now and then (once in a run of 118 rounds here) the session's last read of
            // /dev/fuse ends in ECONNABORTED rather than ENODEV although the unmount went
            // through: only a mount still in place is a failure.
            if let Err(err) = session.umount_and_join() {
                assert!(!is_mounted(&self.path), "unmount crashfs: {err}");
            }
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            if session.umount_and_join().is_err() && is_mounted(&self.path) {
                // Still in use (a test that failed before stopping its program): detach it,
                // so that no dead mount outlives the test.
                let _ = std::process::Command::new("umount")
                    .arg("-l")
                    .arg(&self.path)
                    .status();
            }
        }
    }
}

/// Whether something is mounted on `path`.
fn is_mounted(path: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let path = path.to_string_lossy();
    mounts
        .lines()
        .any(|line| line.split(' ').nth(1) == Some(path.as_ref()))
}

/// What directories keep at a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metadata {
    /// The entries of each at its own last `fsync`.
    #[default]
    Synced,
    /// The entries, and the bytes files had appended, at the last `fsync` of anything (a
    /// journaling file system, ext4's `data=ordered`).
    Journaled,
    /// Every entry.
    Live,
}

/// What one power loss kept, for the test's log.
#[derive(Debug, Default)]
pub struct Loss {
    pub metadata: Metadata,
    /// Files with writes pending that kept none, some, all of them.
    pub files_kept_none: usize,
    pub files_kept_some: usize,
    pub files_kept_all: usize,
    /// Bytes of pending writes dropped.
    pub bytes_dropped: u64,
}

impl CrashFs {
    /// An empty file system.
    pub fn new() -> CrashFs {
        let mut nodes = HashMap::new();
        nodes.insert(INodeNo::ROOT.0, Node::dir(0o755));
        CrashFs {
            state: Arc::new(Mutex::new(State {
                nodes,
                next_ino: INodeNo::ROOT.0 + 1,
                failing: None,
                capacity: None,
            })),
        }
    }

    /// Mounts it on `path` (an existing, empty directory).
    pub fn mount(&self, path: &Path) -> Mounted {
        let mut config = fuser::Config::default();
        config.mount_options = vec![MountOption::FSName("crashfs".into())];
        let fs = Served {
            state: Arc::clone(&self.state),
        };
        let session = fuser::spawn_mount(fs, path, &config).unwrap_or_else(|err| {
            panic!(
                "cannot mount crashfs on {} (needs root and /dev/fuse): {err}",
                path.display()
            )
        });
        Mounted {
            session: Some(session),
            path: path.to_path_buf(),
        }
    }

    /// Simulates a power loss (call it unmounted): every file and directory becomes what the
    /// disk could hold afterwards, chosen with `rng` (directories in any of the [`Metadata`]
    /// ways).
    pub fn lose_power(&self, rng: &mut impl Rng) -> Loss {
        self.lose_power_with(
            rng,
            &[Metadata::Synced, Metadata::Journaled, Metadata::Live],
        )
    }

    /// [`CrashFs::lose_power`], with directories kept in one of the `metadata` ways.
    pub fn lose_power_with(&self, rng: &mut impl Rng, metadata: &[Metadata]) -> Loss {
        let mut state = self.state.lock().unwrap();
        let mut loss = Loss {
            metadata: metadata[rng.gen_range(0..metadata.len())],
            ..Loss::default()
        };
        let mut inos: Vec<u64> = state.nodes.keys().copied().collect();
        inos.sort_unstable();
        for ino in inos {
            match state.nodes.get_mut(&ino).unwrap() {
                Node::Dir(dir) => {
                    dir.live = match loss.metadata {
                        Metadata::Synced => dir.durable.clone(),
                        Metadata::Journaled => dir.journaled.clone(),
                        Metadata::Live => dir.live.clone(),
                    };
                    dir.durable = dir.live.clone();
                    dir.journaled = dir.live.clone();
                }
                Node::File(file) => {
                    file.lose_power(rng, loss.metadata, &mut loss);
                    file.open = 0;
                }
            }
        }
        state.collect_garbage();
        loss
    }

    /// Makes the next `fsync` of a file named `name` in the root directory (now, or created
    /// later) fail with EIO as a failing disk's would, after dropping what was written since its
    /// last sync: Linux marks the pages it could not write clean, so a retried fsync succeeds
    /// with the data gone (it is gone at the next power loss; reads see it until then).
    pub fn fail_next_fsync_of(&self, name: &str) {
        self.state.lock().unwrap().failing = Some(name.into());
    }

    /// Makes it a disk of `bytes` (`None`: unbounded, the default): a write or truncation that
    /// would take the files' bytes past it fails with ENOSPC, as a full disk's does, and
    /// `statfs` reports what is left. The files counted are those a directory lists and those
    /// still open, as a real file system frees an unlinked file's blocks once it is closed.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.state.lock().unwrap().capacity = bytes;
    }

    /// The bytes the files take, as [`CrashFs::set_capacity`] counts them.
    pub fn used(&self) -> u64 {
        self.state.lock().unwrap().used()
    }

    /// The live size of every file, by path, for a test's log.
    pub fn sizes(&self) -> BTreeMap<String, u64> {
        let state = self.state.lock().unwrap();
        let mut sizes = BTreeMap::new();
        let mut stack = vec![(INodeNo::ROOT.0, String::new())];
        while let Some((ino, path)) = stack.pop() {
            match &state.nodes[&ino] {
                Node::Dir(dir) => {
                    for (name, child) in &dir.live {
                        stack.push((*child, format!("{path}/{}", name.to_string_lossy())));
                    }
                }
                Node::File(file) => {
                    sizes.insert(path, file.live.len() as u64);
                }
            }
        }
        sizes
    }
}

impl Default for CrashFs {
    fn default() -> Self {
        CrashFs::new()
    }
}

struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// The name (in the root directory) of a file whose next `fsync` fails.
    failing: Option<OsString>,
    /// The disk's size, if bounded ([`CrashFs::set_capacity`]).
    capacity: Option<u64>,
}

enum Node {
    File(FileNode),
    Dir(DirNode),
}

struct FileNode {
    /// What reads see.
    live: Vec<u8>,
    /// What the disk holds for sure.
    durable: Vec<u8>,
    /// What a journaling file system holds for sure: `durable` cut or grown to `journaled_len`
    /// (the size at the last `fsync` of anything), `journaled_tail` being the bytes past
    /// `durable`'s end. A tail, not a copy: a copy per fsync costs the whole file each time.
    journaled_len: usize,
    journaled_tail: Vec<u8>,
    /// Open handles: an unlinked file's bytes are kept while it is open.
    open: u32,
    /// The changes since the last sync, in order.
    pending: Vec<Change>,
    perm: u16,
    mtime: SystemTime,
}

enum Change {
    Write { offset: u64, data: Vec<u8> },
    Truncate(u64),
}

struct DirNode {
    live: BTreeMap<OsString, u64>,
    /// The entries at this directory's last `fsync`.
    durable: BTreeMap<OsString, u64>,
    /// The entries at the last `fsync` of any file or directory.
    journaled: BTreeMap<OsString, u64>,
    perm: u16,
}

impl Node {
    fn dir(perm: u16) -> Node {
        Node::Dir(DirNode {
            live: BTreeMap::new(),
            durable: BTreeMap::new(),
            journaled: BTreeMap::new(),
            perm,
        })
    }

    fn file(perm: u16) -> Node {
        Node::File(FileNode {
            live: Vec::new(),
            durable: Vec::new(),
            journaled_len: 0,
            journaled_tail: Vec::new(),
            open: 0,
            pending: Vec::new(),
            perm,
            mtime: SystemTime::now(),
        })
    }

    fn attr(&self, ino: u64) -> FileAttr {
        let (kind, size, perm, nlink, mtime) = match self {
            Node::File(file) => (
                FileType::RegularFile,
                file.live.len() as u64,
                file.perm,
                1,
                file.mtime,
            ),
            Node::Dir(dir) => (
                FileType::Directory,
                4096,
                dir.perm,
                2,
                SystemTime::UNIX_EPOCH,
            ),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        }
    }
}

impl FileNode {
    fn write(&mut self, offset: u64, data: &[u8]) {
        apply_write(&mut self.live, offset, data);
        self.pending.push(Change::Write {
            offset,
            data: data.to_vec(),
        });
        self.mtime = SystemTime::now();
    }

    fn truncate(&mut self, size: u64) {
        self.live.resize(size as usize, 0);
        self.pending.push(Change::Truncate(size));
        self.mtime = SystemTime::now();
    }

    fn sync(&mut self) {
        for change in self.pending.drain(..) {
            apply(&mut self.durable, &change);
        }
        self.journaled_len = self.durable.len();
        self.journaled_tail.clear();
    }

    /// A journal commit: the file's new size, with the bytes of the blocks it allocated.
    fn commit_size(&mut self) {
        let (base, old, new) = (self.durable.len(), self.journaled_len, self.live.len());
        if new > old {
            let from = old.max(base);
            if old < base {
                self.journaled_tail.clear();
            }
            self.journaled_tail.extend_from_slice(&self.live[from..new]);
        } else {
            self.journaled_tail.truncate(new.saturating_sub(base));
        }
        self.journaled_len = new;
    }

    /// What a journaling file system holds for sure.
    fn journaled(&self) -> Vec<u8> {
        let mut bytes = self.durable.clone();
        bytes.truncate(self.journaled_len);
        bytes.extend_from_slice(&self.journaled_tail);
        bytes
    }

    fn lose_power(&mut self, rng: &mut impl Rng, metadata: Metadata, loss: &mut Loss) {
        if self.pending.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.pending);
        let mut disk = match metadata {
            Metadata::Journaled => self.journaled(),
            Metadata::Synced | Metadata::Live => std::mem::take(&mut self.durable),
        };
        match rng.gen_range(0..3) {
            0 => {
                loss.files_kept_none += 1;
                loss.bytes_dropped += pending.iter().map(Change::len).sum::<u64>();
            }
            1 => {
                loss.files_kept_all += 1;
                pending.iter().for_each(|change| apply(&mut disk, change));
            }
            _ => {
                loss.files_kept_some += 1;
                for change in &pending {
                    match change {
                        Change::Truncate(_) => {
                            if rng.gen_bool(0.5) {
                                apply(&mut disk, change);
                            }
                        }
                        Change::Write { offset, data } => {
                            for (at, piece) in pieces(*offset, data) {
                                if rng.gen_bool(0.5) {
                                    apply_write(&mut disk, at, piece);
                                } else {
                                    loss.bytes_dropped += piece.len() as u64;
                                }
                            }
                        }
                    }
                }
            }
        }
        self.live = disk.clone();
        self.durable = disk;
        self.journaled_len = self.durable.len();
        self.journaled_tail.clear();
    }
}

impl Change {
    fn len(&self) -> u64 {
        match self {
            Change::Write { data, .. } => data.len() as u64,
            Change::Truncate(_) => 0,
        }
    }
}

/// A write cut at page boundaries.
fn pieces(offset: u64, data: &[u8]) -> Vec<(u64, &[u8])> {
    let mut out = Vec::new();
    let mut at = offset;
    let mut rest = data;
    while !rest.is_empty() {
        let room = (PAGE - at % PAGE) as usize;
        let (piece, tail) = rest.split_at(room.min(rest.len()));
        out.push((at, piece));
        at += piece.len() as u64;
        rest = tail;
    }
    out
}

fn apply(bytes: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, data } => apply_write(bytes, *offset, data),
        Change::Truncate(size) => bytes.resize(*size as usize, 0),
    }
}

fn apply_write(bytes: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[start..end].copy_from_slice(data);
}

/// The file system as FUSE serves it.
struct Served {
    state: Arc<Mutex<State>>,
}

impl Served {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }
}

impl State {
    /// The bytes of the files a directory lists or a program holds open.
    fn used(&self) -> u64 {
        let mut listed = std::collections::HashSet::new();
        let mut stack = vec![INodeNo::ROOT.0];
        while let Some(ino) = stack.pop() {
            if let Some(Node::Dir(dir)) = self.nodes.get(&ino) {
                for &child in dir.live.values() {
                    if listed.insert(child) {
                        stack.push(child);
                    }
                }
            }
        }
        self.nodes
            .iter()
            .filter_map(|(ino, node)| match node {
                Node::File(file) if file.open > 0 || listed.contains(ino) => {
                    Some(file.live.len() as u64)
                }
                _ => None,
            })
            .sum()
    }

    /// ENOSPC if `ino` growing to `size` bytes would take the files past the capacity.
    fn room_for(&mut self, ino: INodeNo, size: u64) -> Result<(), Errno> {
        let Some(capacity) = self.capacity else {
            return Ok(());
        };
        let now = self.file(ino)?.live.len() as u64;
        if size > now && self.used() + (size - now) > capacity {
            return Err(Errno::ENOSPC);
        }
        Ok(())
    }

    fn dir(&mut self, ino: INodeNo) -> Result<&mut DirNode, Errno> {
        match self.nodes.get_mut(&ino.0) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(Errno::ENOTDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn file(&mut self, ino: INodeNo) -> Result<&mut FileNode, Errno> {
        match self.nodes.get_mut(&ino.0) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(Errno::EISDIR),
            None => Err(Errno::ENOENT),
        }
    }

    fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        self.nodes
            .get(&ino)
            .map(|node| node.attr(ino))
            .ok_or(Errno::ENOENT)
    }

    /// Adds `node` as `name` in `parent`.
    fn add(&mut self, parent: INodeNo, name: &OsStr, node: Node) -> Result<FileAttr, Errno> {
        let ino = self.next_ino;
        let dir = self.dir(parent)?;
        if dir.live.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        dir.live.insert(name.to_os_string(), ino);
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        self.attr(ino)
    }

    /// A journaling file system's fsync: every directory's entries so far are committed, and
    /// every file's size with the data of the blocks it allocated.
    fn journal(&mut self) {
        let mut dropped = false;
        for node in self.nodes.values_mut() {
            match node {
                Node::Dir(dir) => {
                    if dir.journaled != dir.live {
                        dropped |= dir
                            .journaled
                            .values()
                            .any(|ino| !dir.live.values().any(|live| live == ino));
                        dir.journaled = dir.live.clone();
                    }
                }
                Node::File(file) => file.commit_size(),
            }
        }
        if dropped {
            self.collect_garbage();
        }
    }

    /// Forgets every file and directory that no power loss could bring back and nothing holds
    /// open: those not reachable from the root through any directory's live, synced or
    /// journaled entries. Without it, the copies a program writes and removes would add up.
    fn collect_garbage(&mut self) {
        let mut reachable = std::collections::HashSet::from([INodeNo::ROOT.0]);
        let mut stack = vec![INodeNo::ROOT.0];
        while let Some(ino) = stack.pop() {
            if let Some(Node::Dir(dir)) = self.nodes.get(&ino) {
                for entries in [&dir.live, &dir.durable, &dir.journaled] {
                    for &child in entries.values() {
                        if reachable.insert(child) {
                            stack.push(child);
                        }
                    }
                }
            }
        }
        self.nodes.retain(|ino, node| {
            reachable.contains(ino) || matches!(node, Node::File(file) if file.open > 0)
        });
    }

    fn is_empty_dir(&self, ino: u64) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir(dir)) if dir.live.is_empty())
    }

    fn is_dir(&self, ino: u64) -> bool {
        matches!(self.nodes.get(&ino), Some(Node::Dir(_)))
    }

    /// Removes `name` from `parent`: an empty directory if `dir`, else a file.
    fn remove(&mut self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.live.get(name).ok_or(Errno::ENOENT)?;
        match (dir, self.is_dir(ino)) {
            (false, true) => return Err(Errno::EISDIR),
            (true, false) => return Err(Errno::ENOTDIR),
            (true, true) if !self.is_empty_dir(ino) => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        self.dir(parent)?.live.remove(name);
        self.collect_garbage();
        Ok(())
    }

    fn rename(
        &mut self,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        let ino = *self.dir(parent)?.live.get(name).ok_or(Errno::ENOENT)?;
        let target = self.dir(new_parent)?.live.get(new_name).copied();
        if let Some(target) = target {
            if flags.contains(RenameFlags::RENAME_NOREPLACE) {
                return Err(Errno::EEXIST);
            }
            if self.is_dir(target) && !self.is_empty_dir(target) {
                return Err(Errno::ENOTEMPTY);
            }
            if self.is_dir(target) != self.is_dir(ino) {
                return Err(if self.is_dir(target) {
                    Errno::EISDIR
                } else {
                    Errno::ENOTDIR
                });
            }
        }
        if !flags.is_empty() && flags != RenameFlags::RENAME_NOREPLACE {
            return Err(Errno::EINVAL);
        }
        self.dir(parent)?.live.remove(name);
        self.dir(new_parent)?
            .live
            .insert(new_name.to_os_string(), ino);
        if target.is_some_and(|target| target != ino) {
            self.collect_garbage();
        }
        Ok(())
    }
}

fn perm(mode: u32, umask: u32) -> u16 {
    (mode & !umask & 0o7777) as u16
}

impl Filesystem for Served {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let mut state = self.state();
        let found = state
            .dir(parent)
            .and_then(|dir| dir.live.get(name).copied().ok_or(Errno::ENOENT))
            .and_then(|ino| state.attr(ino));
        match found {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(err) => reply.error(err),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.state().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(err) => reply.error(err),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<fuser::TimeOrNow>,
        _mtime: Option<fuser::TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut state = self.state();
        let mut change = || -> Result<FileAttr, Errno> {
            if let Some(size) = size {
                state.room_for(ino, size)?;
                state.file(ino)?.truncate(size);
            }
            if let Some(mode) = mode {
                match state.nodes.get_mut(&ino.0).ok_or(Errno::ENOENT)? {
                    Node::File(file) => file.perm = perm(mode, 0),
                    Node::Dir(dir) => dir.perm = perm(mode, 0),
                }
            }
            state.attr(ino.0)
        };
        match change() {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(err) => reply.error(err),
        }
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        match self.state().add(parent, name, Node::dir(perm(mode, umask))) {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(err) => reply.error(err),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(err),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.state().remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(err),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        match self.state().rename(parent, name, newparent, newname, flags) {
            Ok(()) => reply.ok(),
            Err(err) => reply.error(err),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        let mut state = self.state();
        if let Ok(file) = state.file(ino) {
            file.open += 1;
        }
        match state.attr(ino.0) {
            // No page cache: every read and write reaches this file system.
            Ok(_) => reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(err) => reply.error(err),
        }
    }

    fn release(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        if let Ok(file) = state.file(ino) {
            file.open = file.open.saturating_sub(1);
        }
        if state.file(ino).is_ok_and(|file| file.open == 0) {
            state.collect_garbage();
        }
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut file = Node::file(perm(mode, umask));
        if let Node::File(file) = &mut file {
            file.open = 1;
        }
        match self.state().add(parent, name, file) {
            Ok(attr) => reply.created(
                &TTL,
                &attr,
                Generation(0),
                FileHandle(0),
                FopenFlags::FOPEN_DIRECT_IO,
            ),
            Err(err) => reply.error(err),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.state().file(ino) {
            Ok(file) => {
                let start = (offset as usize).min(file.live.len());
                let end = (start + size as usize).min(file.live.len());
                reply.data(&file.live[start..end]);
            }
            Err(err) => reply.error(err),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut state = self.state();
        let end = offset + data.len() as u64;
        match state.room_for(ino, end).and_then(|()| state.file(ino)) {
            Ok(file) => {
                file.write(offset, data);
                reply.written(data.len() as u32);
            }
            Err(err) => reply.error(err),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        let fails = state.failing.as_ref().is_some_and(|name| {
            let root = state.nodes.get(&INodeNo::ROOT.0);
            matches!(root, Some(Node::Dir(root)) if root.live.get(name) == Some(&ino.0))
        });
        match state.file(ino) {
            Ok(file) if fails => {
                // Reads still see the bytes (clean pages in the cache) until a power loss.
                file.pending.clear();
                state.failing = None;
                reply.error(Errno::EIO);
            }
            Ok(file) => {
                file.sync();
                state.journal();
                reply.ok();
            }
            Err(err) => reply.error(err),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let mut state = self.state();
        let entries: Vec<(u64, OsString)> = match state.dir(ino) {
            Ok(dir) => dir
                .live
                .iter()
                .map(|(name, ino)| (*ino, name.clone()))
                .collect(),
            Err(err) => return reply.error(err),
        };
        let listed = [(ino.0, OsString::from(".")), (ino.0, OsString::from(".."))]
            .into_iter()
            .chain(entries);
        for (index, (child, name)) in listed.enumerate().skip(offset as usize) {
            let kind = if state.is_dir(child) {
                FileType::Directory
            } else {
                FileType::RegularFile
            };
            if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        let mut state = self.state();
        match state.dir(ino) {
            Ok(dir) => {
                dir.durable = dir.live.clone();
                state.journal();
                state.collect_garbage();
                reply.ok();
            }
            Err(err) => reply.error(err),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        // Unbounded, plenty of room, so hookgate's free-space check never refuses a batch.
        let state = self.state();
        let (blocks, free) = match state.capacity {
            Some(capacity) => (
                capacity / PAGE,
                capacity.saturating_sub(state.used()) / PAGE,
            ),
            None => (1 << 28, 1 << 28),
        };
        reply.statfs(
            blocks,
            free,
            free,
            1 << 20,
            1 << 20,
            PAGE as u32,
            255,
            PAGE as u32,
        );
    }
}
