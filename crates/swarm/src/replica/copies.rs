//! What the user asks of replication: a room's policy (`copies`, an entry
//! in its log), files kept here whatever the placement (`pin`), and this
//! node's offline timeout.

use std::time::Duration;

use p2pfs_proto::Hash;

use super::{DEFAULT_OFFLINE_AFTER, keep_pin_name};

impl crate::Node {
    /// This node's offline timeout: a replica's, or the default.
    pub(crate) fn offline_after(&self) -> Duration {
        self.inner
            .replica
            .as_ref()
            .map_or(DEFAULT_OFFLINE_AFTER, |r| r.config.offline_after)
    }

    /// Sets `room`'s replication policy, as an entry in its log.
    pub async fn room_set_copies(
        &self,
        room: &crate::room::Room,
        copies: p2pfs_proto::room::Copies,
    ) -> Result<(), crate::SwarmError> {
        use p2pfs_proto::room::{Meta, Op};
        self.post(room, Op::Meta(Meta::Copies(copies))).await?;
        Ok(())
    }

    /// Keeps (`keep`) or stops keeping a full copy of blob `hash` of
    /// `room` here, whatever the placement. A running replica fetches it
    /// in the background.
    pub async fn room_keep(
        &self,
        room: &crate::room::Room,
        hash: Hash,
        keep: bool,
    ) -> Result<(), crate::SwarmError> {
        let (store, name) = (self.store().clone(), keep_pin_name(&room.id));
        crate::blocking(move || store.set_pins(&[hash], &name, keep)).await?;
        room.replica.wake.notify_one();
        Ok(())
    }

    /// Whether blob `hash` of `room` is kept here at the user's request.
    pub async fn room_kept(
        &self,
        room: &crate::room::Room,
        hash: Hash,
    ) -> Result<bool, crate::SwarmError> {
        let (store, name) = (self.store().clone(), keep_pin_name(&room.id));
        crate::blocking(move || Ok(store.pins(&hash)?.contains(&name))).await
    }
}
