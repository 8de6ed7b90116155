//! Leases on JetStream: which gateway does the work only one may do at a time (a destination's
//! deliveries, a poller, the sweeper).
//!
//! A lease is one entry of the bucket `<stream>_leases`, whose value is its holder and whose
//! `max_age` is the lease time: the server removes an entry not written for that long. Taking a
//! lease creates the entry (it fails while another holder's entry is there); renewing it writes
//! the entry again by compare-and-set on its revision (it fails once another holder took it).
//! Nothing depends on the gateways' clocks: only the server ages entries.

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::TryStreamExt as _;

use super::{layout, leader, storage};
use crate::store::StoreError;

/// Takes the lease `name` for `holder`, or renews it if `holder` holds it: whether `holder`
/// holds it now.
pub async fn hold(leases: &kv::Store, name: &str, holder: &str) -> Result<bool, StoreError> {
    let key = layout::lease_key(name);
    match leader::entry(leases, &key).await? {
        Some(entry) if entry.put => write_own(leases, &key, &entry, holder).await,
        // Never taken, lapsed, or released.
        _ => match leases
            .create(&key, Bytes::copy_from_slice(holder.as_bytes()))
            .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
            Err(err) => Err(storage(err)),
        },
    }
}

/// Renews the lease `name` that `holder` took: false unless `holder`'s entry is there (lapsed,
/// or taken by another, the term is over).
pub async fn renew(leases: &kv::Store, name: &str, holder: &str) -> Result<bool, StoreError> {
    let key = layout::lease_key(name);
    match leader::entry(leases, &key).await? {
        Some(entry) if entry.put => write_own(leases, &key, &entry, holder).await,
        _ => Ok(false),
    }
}

/// Writes the lease entry `entry` again if it is `holder`'s, by compare-and-set on its revision:
/// whether it still is.
async fn write_own(
    leases: &kv::Store,
    key: &str,
    entry: &leader::Latest,
    holder: &str,
) -> Result<bool, StoreError> {
    if entry.value != holder.as_bytes() {
        return Ok(false);
    }
    let value = Bytes::copy_from_slice(holder.as_bytes());
    match leases.update(key, value, entry.revision).await {
        Ok(_) => Ok(true),
        Err(err) if err.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
        Err(err) => Err(storage(err)),
    }
}

/// Writes `holder`'s fingerprint (the bucket ages it out as a lease), and reads every live
/// gateway's.
pub async fn announce(
    leases: &kv::Store,
    holder: &str,
    fingerprint: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let value = Bytes::from(format!("{holder}\n{fingerprint}"));
    leases
        .put(layout::gateway_key(holder), value)
        .await
        .map_err(storage)?;
    let keys: Vec<String> = leases
        .keys()
        .await
        .map_err(storage)?
        .try_collect()
        .await
        .map_err(storage)?;
    let mut gateways = Vec::new();
    for key in keys
        .iter()
        .filter(|k| k.starts_with(layout::GATEWAY_PREFIX))
    {
        let Some(value) = leases.get(key).await.map_err(storage)? else {
            continue;
        };
        let text = String::from_utf8_lossy(&value);
        if let Some((holder, fingerprint)) = text.split_once('\n') {
            gateways.push((holder.to_string(), fingerprint.to_string()));
        }
    }
    Ok(gateways)
}

/// Gives the lease up if `holder` holds it, so that another gateway takes it at once.
pub async fn release(leases: &kv::Store, name: &str, holder: &str) -> Result<(), StoreError> {
    let key = layout::lease_key(name);
    let Some(entry) = leader::entry(leases, &key).await? else {
        return Ok(());
    };
    if !entry.put || entry.value != holder.as_bytes() {
        return Ok(());
    }
    match leases
        .delete_expect_revision(&key, Some(entry.revision))
        .await
    {
        Ok(()) => Ok(()),
        // Taken meanwhile: not ours to delete.
        Err(err) if err.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(()),
        Err(err) => Err(storage(err)),
    }
}
