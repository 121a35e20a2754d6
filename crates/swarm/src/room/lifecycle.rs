//! Starting, creating, joining and leaving rooms, and finding them.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use p2pfs_proto::{
    Hash, RoomId, RoomSecret, RoomTicket,
    room::{Meta, Op, valid_display_name},
};
use p2pfs_store::RoomInfo;
use tokio::sync::watch;

use super::{Room, log, mesh, overlay, pin_name, query, runtime, view};
use crate::{Node, SwarmError, blocking};

/// A room as `p2pfs room list` shows it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RoomSummary {
    /// The local name.
    pub name: String,
    /// The room id.
    pub id: RoomId,
    /// Entries in the log.
    pub entries: u64,
    /// Bytes of the log (every entry as sent).
    pub log_bytes: u64,
    /// Members that wrote to the log.
    pub members: usize,
    /// Files in the tree.
    pub files: usize,
    /// Members with a live session (none without a running node).
    pub online: usize,
}

fn now_secs() -> u64 {
    log::now_ms() / 1000
}

impl Node {
    /// Starts the rooms in the store (at node start).
    pub(crate) async fn start_rooms(&self) -> Result<(), SwarmError> {
        let store = self.store().clone();
        let infos = blocking(move || store.rooms()).await?;
        for info in infos {
            self.start_room(&info).await?;
        }
        Ok(())
    }

    /// Tells every room this node is in its display name, where it is not
    /// the one this node last gave there (it changed while the node was
    /// stopped). A daemon does this at start; a node run for one command
    /// does not, so a name set for one command does not flip the name
    /// back and forth in the logs.
    pub async fn publish_name(&self) {
        for room in self.all_rooms() {
            if let Err(e) = self.publish_name_in(&room).await {
                tracing::warn!(room = %room.name(), "could not post the new display name: {e}");
            }
        }
    }

    /// Posts this node's display name in `room` unless it is the one this
    /// node last posted there.
    async fn publish_name_in(&self, room: &Room) -> Result<(), SwarmError> {
        let name = self.display_name();
        let (store, id, me) = (self.store().clone(), room.id, self.id());
        let last = blocking(move || query::member_name(&store, &id, &me)).await?;
        if last.as_deref() != Some(name.as_str()) {
            tracing::info!(room = %room.id.fmt_short(), %name, "display name changed: telling the room");
            self.post(room, Op::Meta(Meta::MemberName(name))).await?;
        }
        Ok(())
    }

    pub(super) async fn start_room(&self, info: &RoomInfo) -> Result<Arc<Room>, SwarmError> {
        let id = info.secret.id();
        let (store, rid) = (self.store().clone(), id);
        let rebuilt = blocking(move || log::catch_up_views(&store, &rid)).await?;
        if rebuilt > 0 {
            tracing::info!(room = %info.name, entries = rebuilt, "room views rebuilt from the log");
        }
        let config = mesh::Config {
            offline_after_ms: u64::try_from(self.offline_after().as_millis()).unwrap_or(u64::MAX),
            ..mesh::Config::default()
        };
        let (room, log_task, overlay, cmds) = Room::new(
            info,
            self.net().cancel().child_token(),
            self.id(),
            config,
            self.offline_after(),
        );
        room.epochs.notify_on(self.inner.rooms.membership());
        let room = Arc::new(room);
        {
            let (r, store, net) = (room.clone(), self.store().clone(), self.net().clone());
            blocking(move || super::epochs::refresh(&r, &store, net.key())).await?;
        }
        {
            let (store, rid) = (self.store().clone(), id);
            let authors = blocking(move || store.room_have(&rid)).await?;
            let authors = authors.into_iter().map(|(a, _)| a).collect();
            room.overlay.send(overlay::Cmd::Authors(authors)).await;
        }
        self.inner.rooms.insert(room.clone());
        let net = self.net();
        net.spawn(log_task.run(room.clone(), self.store().clone(), net.clone()));
        net.spawn(runtime::run(self.clone(), room.clone(), overlay, cmds));
        if let Some(rep) = &self.inner.replica {
            net.spawn(crate::replica::runtime::run(self.clone(), room.clone()));
            net.spawn(crate::replica::presence::run(
                self.clone(),
                room.clone(),
                rep.config.heartbeat(),
            ));
        }
        Ok(room)
    }

    pub(crate) fn room(&self, id: &RoomId) -> Option<Arc<Room>> {
        self.inner.rooms.get(id)
    }

    /// The running room with this id, if this node is in it.
    pub fn find_room_now(&self, id: &RoomId) -> Option<Arc<Room>> {
        self.room(id)
    }

    /// A receiver that changes whenever a room starts or is left.
    pub fn room_set_changes(&self) -> watch::Receiver<u64> {
        self.inner.rooms.changes()
    }

    /// The rooms this node is in.
    pub fn all_rooms(&self) -> Vec<Arc<Room>> {
        self.inner.rooms.all()
    }

    /// Finds a room by local name, id or id prefix.
    pub async fn find_room(&self, name: &str) -> Result<Arc<Room>, SwarmError> {
        let rooms = self.all_rooms();
        if let Some(r) = rooms.iter().find(|r| r.name() == name) {
            return Ok(r.clone());
        }
        let by_id: Vec<&Arc<Room>> = rooms
            .iter()
            .filter(|r| name.len() >= 6 && r.id.to_string().starts_with(name))
            .collect();
        match by_id.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(crate::error::RoomError::NoSuchRoom(name.to_string()).into()),
        }
    }

    /// This node's display name in rooms.
    pub fn display_name(&self) -> String {
        self.inner.rooms.display()
    }

    /// Creates a room named `name`; returns its ticket.
    pub async fn create_room(&self, name: &str) -> Result<RoomTicket, SwarmError> {
        if !valid_display_name(name) {
            return Err(crate::error::RoomError::BadName(name.to_string()).into());
        }
        self.check_name_free(name)?;
        // The secret is made from this node's id and a nonce, which its
        // first entry reveals: that is how every member knows who owns
        // the room (docs/protocol.md §8.11).
        let mut nonce = [0u8; 32];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce)
            .map_err(|_| crate::error::SetupError::Random)?;
        let info = RoomInfo {
            secret: RoomSecret::for_owner(&self.id(), &nonce),
            name: name.to_string(),
            nodes: vec![],
            joined: now_secs(),
        };
        let store = self.store().clone();
        let i = info.clone();
        blocking(move || store.put_room(&i)).await?;
        let room = self.start_room(&info).await?;
        self.post(&room, Op::Meta(Meta::Owner { nonce })).await?;
        self.post(&room, Op::Meta(Meta::RoomName(name.to_string())))
            .await?;
        self.post(&room, Op::Meta(Meta::MemberName(self.display_name())))
            .await?;
        Ok(self.room_ticket(&room))
    }

    fn check_name_free(&self, name: &str) -> Result<(), SwarmError> {
        if self.all_rooms().iter().any(|r| r.name() == name) {
            return Err(crate::error::RoomError::NameTaken(name.to_string()).into());
        }
        Ok(())
    }

    /// Joins the room of `ticket` under `name` (default: the ticket's).
    /// Returns the local name.
    pub async fn join_room(
        &self,
        ticket: &RoomTicket,
        name: Option<&str>,
    ) -> Result<String, SwarmError> {
        let id = ticket.secret.id();
        if let Some(r) = self.room(&id) {
            return Err(crate::error::RoomError::AlreadyIn(crate::lock(&r.name).clone()).into());
        }
        let name = name.unwrap_or(&ticket.name).to_string();
        if !valid_display_name(&name) {
            return Err(crate::error::RoomError::BadName(name).into());
        }
        self.check_name_free(&name)?;
        let room = self.start_ticketed(ticket, name.clone()).await?;
        room.sync_before_write.store(true, Ordering::Relaxed);
        self.post(&room, Op::Meta(Meta::MemberName(self.display_name())))
            .await?;
        Ok(name)
    }

    /// Records the room of `ticket` under `name` (with the epoch key the
    /// ticket carries) and starts it: a join, or an import.
    pub(super) async fn start_ticketed(
        &self,
        ticket: &RoomTicket,
        name: String,
    ) -> Result<Arc<Room>, SwarmError> {
        let info = RoomInfo {
            secret: ticket.secret.clone(),
            name,
            nodes: ticket
                .nodes
                .iter()
                .filter(|n| n.id != self.id())
                .cloned()
                .collect(),
            joined: now_secs(),
        };
        let (store, i, key) = (self.store().clone(), info.clone(), ticket.key.clone());
        blocking(move || {
            if let Some(k) = key {
                store.put_room_key(&i.secret.id(), &k.epoch, &k.key)?;
            }
            store.put_room(&i)
        })
        .await?;
        self.start_room(&info).await
    }

    /// Leaves a room: says so in its log (its members stop counting on
    /// this node and make the copies it kept elsewhere at once), waits at
    /// most `hand_over` for what only this node keeps to reach a member
    /// online, then stops syncing it and forgets its log, views and pins.
    /// Returns the files that had no other copy online.
    pub async fn leave_room(
        &self,
        room: &Arc<Room>,
        hand_over: Duration,
    ) -> Result<Vec<crate::replica::OnlyHere>, SwarmError> {
        let mut stranded = Vec::new();
        if room.epochs.removed().is_none() {
            self.post(room, Op::Meta(Meta::Leave)).await?;
            stranded = self.hand_over_room(room, hand_over).await;
        }
        room.cancel.cancel();
        self.inner.rooms.remove(&room.id);
        let (store, id) = (self.store().clone(), room.id);
        blocking(move || {
            let mut blobs = Vec::new();
            for (k, _) in store.room_view_range(&id, view::BLOBS, None, usize::MAX)? {
                if let Ok(b) = <[u8; 32]>::try_from(&k[view::BLOBS.len()..]) {
                    blobs.push(Hash::from_bytes(b));
                }
            }
            store.set_pins(&blobs, &pin_name(&id), false)?;
            store.set_pins(&blobs, &crate::replica::keep_pin_name(&id), false)?;
            store.remove_room(&id)
        })
        .await?;
        Ok(stranded)
    }

    /// Rooms with their live session counts.
    pub async fn room_summaries(&self) -> Result<Vec<RoomSummary>, SwarmError> {
        let store = self.store().clone();
        let mut list = blocking(move || query::summaries(&store)).await?;
        for s in &mut list {
            if let Some(r) = self.room(&s.id) {
                s.online = r.online().len();
            }
        }
        Ok(list)
    }
}

/// Counter of sync bytes received in `room` (figures).
pub fn bytes_received(node: &Node, room: &RoomId) -> u64 {
    node.room(room)
        .map_or(0, |r| r.bytes_in.load(Ordering::Relaxed))
}
