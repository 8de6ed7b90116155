//! The KV bucket's values: outputs' positions and dead shards, read and changed by
//! compare-and-set on their revisions, and the revision of each sync cursor this node read.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::TryStreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::outputs::{self, DeadShard, Position};
use super::{layout, leader, storage, JetStreamStore};
use crate::store::StoreError;

/// Compare-and-set rounds of one `change` before it gives up.
const CAS_ROUNDS: usize = 64;
impl JetStreamStore {
    pub fn sync_revision(&self, provider: &str) -> Option<u64> {
        let revisions = self
            .sync_revisions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        revisions.get(provider).copied()
    }

    /// A value of the bucket and its revision (`None`: never written); the default when it is
    /// missing.
    pub async fn entry<T: DeserializeOwned + Default>(
        &self,
        key: &str,
    ) -> Result<(T, Option<u64>), StoreError> {
        match leader::entry(&self.kv, key).await? {
            Some(entry) if entry.put => Ok((outputs::decode(&entry.value)?, Some(entry.revision))),
            _ => Ok((T::default(), None)),
        }
    }

    /// Applies `apply` to a value of the bucket by compare-and-set on its revision, read again
    /// and applied again when another writer got there first.
    pub async fn update<T>(&self, key: &str, apply: impl Fn(&mut T)) -> Result<(), StoreError>
    where
        T: Serialize + DeserializeOwned + Default + PartialEq + Clone,
    {
        for _ in 0..CAS_ROUNDS {
            let (mut value, revision) = self.entry::<T>(key).await?;
            let before = value.clone();
            apply(&mut value);
            // Unchanged, also where there is no value (read as the default): an unmark of a
            // dead record that was never there made an empty shard, which every read of the
            // dead records then listed.
            if value == before {
                return Ok(());
            }
            let bytes = Bytes::from(outputs::encode(&value));
            let written = match revision {
                Some(revision) => self.kv.update(key, bytes, revision).await.map_err(|err| {
                    (
                        err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        storage(err),
                    )
                }),
                None => self.kv.create(key, bytes).await.map_err(|err| {
                    (
                        err.kind() == kv::CreateErrorKind::AlreadyExists,
                        storage(err),
                    )
                }),
            };
            match written {
                Ok(_) => return Ok(()),
                Err((true, _)) => continue,
                Err((false, err)) => return Err(err),
            }
        }
        Err(StoreError::Storage(Arc::new(std::io::Error::other(
            format!("{key}: {CAS_ROUNDS} compare-and-set rounds lost to other writers"),
        ))))
    }

    pub async fn position(&self, output: &str) -> Result<Position, StoreError> {
        Ok(self.entry(&layout::output_key(output)).await?.0)
    }

    pub async fn dead_shard(&self, output: &str, shard: u64) -> Result<DeadShard, StoreError> {
        Ok(self.entry(&layout::dead_key(output, shard)).await?.0)
    }

    /// The shards of an output's dead records that exist, in order.
    pub async fn dead_shards(&self, output: &str) -> Result<Vec<u64>, StoreError> {
        let prefix = layout::dead_prefix(output);
        let mut shards: Vec<u64> = (self.keys_under(&prefix).await?)
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix)?.parse().ok())
            .collect();
        shards.sort_unstable();
        Ok(shards)
    }

    /// The keys of the bucket under `prefix` that have values or had them.
    pub(super) async fn keys_under(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let subjects_prefix = format!("{}{prefix}", self.kv.prefix);
        let mut subjects = self
            .kv
            .stream
            .info_with_subjects(format!("{subjects_prefix}>"))
            .await
            .map_err(storage)?;
        let mut keys = Vec::new();
        while let Some((subject, _)) = subjects.try_next().await.map_err(storage)? {
            if let Some(key) = subject.strip_prefix(&self.kv.prefix) {
                keys.push(key.to_string());
            }
        }
        Ok(keys)
    }

    /// How many dead records an output has, every shard read in one pass over the bucket's
    /// stream (a watch from the last value of each key) rather than one request per shard, each
    /// record's content passed over (decoded whole, 365,000 records of errors up to 1,000
    /// characters took hundreds of MB to count).
    pub async fn count_dead(&self, output: &str) -> Result<usize, StoreError> {
        if self.dead_shards(output).await?.is_empty() {
            // A watch of keys that have no value would wait for one.
            return Ok(0);
        }
        let mut watch = self
            .kv
            .watch_with_history(format!("{}>", layout::dead_prefix(output)))
            .await
            .map_err(storage)?;
        let mut count = 0;
        while let Some(entry) = watch.try_next().await.map_err(storage)? {
            if entry.operation == kv::Operation::Put {
                let shard: BTreeMap<u64, serde::de::IgnoredAny> = outputs::decode(&entry.value)?;
                count += shard.len();
            }
            if entry.delta == 0 {
                break;
            }
        }
        Ok(count)
    }
}
