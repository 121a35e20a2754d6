//! A room's listing kept in memory and brought up to date when its log
//! grows: only the paths the new entries touched are read again (see
//! [`Listing::update`]), unless too much changed to tell. The mount and
//! the web page each keep one per room.

use std::collections::BTreeSet;

use p2pfs_proto::RoomId;
use p2pfs_store::StoreError;
use tokio::sync::watch;

use super::{listing::Listing, query};
use crate::Node;

/// What a refresh did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// The log did not grow.
    Same,
    /// These names appeared, changed or went.
    Changed(BTreeSet<String>),
    /// Too much changed to tell: the listing was read again whole.
    Reloaded,
}

/// A room's listing and the receiver that says when it is stale.
#[derive(Debug)]
pub struct WatchedListing {
    listing: Listing,
    changes: watch::Receiver<u64>,
    /// The log's change counter the listing is up to date with.
    seen: u64,
}

impl WatchedListing {
    /// Loads the listing of `room`. Blocking (reads the store).
    pub fn load(node: &Node, room: &RoomId) -> Result<Self, StoreError> {
        let mut changes = match node.find_room_now(room) {
            Some(r) => node.room_changes(&r),
            None => watch::channel(0).1,
        };
        // Read the counter first: changes after it are read again later.
        let seen = *changes.borrow_and_update();
        Ok(Self {
            listing: query::load_listing(node.store(), room)?,
            changes,
            seen,
        })
    }

    /// The listing as of the last load or refresh.
    pub fn listing(&self) -> &Listing {
        &self.listing
    }

    /// Brings the listing up to date if the log grew. Blocking.
    pub fn refresh(&mut self, node: &Node, room: &RoomId) -> Result<Refresh, StoreError> {
        if !self.changes.has_changed().unwrap_or(false) {
            return Ok(Refresh::Same);
        }
        let now = *self.changes.borrow_and_update();
        let touched = node
            .find_room_now(room)
            .and_then(|r| node.room_touched_since(&r, self.seen));
        self.seen = now;
        match touched {
            Some(paths) => Ok(Refresh::Changed(query::update_listing(
                &mut self.listing,
                node.store(),
                room,
                paths,
            )?)),
            None => {
                self.listing = query::load_listing(node.store(), room)?;
                Ok(Refresh::Reloaded)
            }
        }
    }
}
