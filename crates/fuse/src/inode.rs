//! Inode numbers: each place the mount shows (the root, a room, its
//! `chat.log`, a path inside it) gets a number the first time the kernel
//! asks for it, and keeps it for the life of the mount. Numbers are never
//! reused, so the generation is always 0.

use std::collections::HashMap;

use p2pfs_proto::RoomId;

/// The root directory's inode number.
pub(crate) const ROOT: u64 = 1;

/// What an inode number stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Place {
    /// The mount's root: one directory per room.
    Root,
    /// A room's top directory.
    Room(RoomId),
    /// A room's `chat.log`.
    Chat(RoomId),
    /// A file or directory in a room's tree.
    Path(RoomId, String),
}

impl Place {
    /// The room this place is in.
    pub(crate) fn room(&self) -> Option<RoomId> {
        match self {
            Place::Root => None,
            Place::Room(r) | Place::Chat(r) | Place::Path(r, _) => Some(*r),
        }
    }

    /// The path inside the room ("" for the room's top directory).
    pub(crate) fn dir_path(&self) -> Option<&str> {
        match self {
            Place::Room(_) => Some(""),
            Place::Path(_, p) => Some(p),
            _ => None,
        }
    }
}

/// Joins a directory path in a room and a name.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// The parent directory's path and the name.
pub(crate) fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// The inode table.
#[derive(Debug)]
pub(crate) struct Inodes {
    by_ino: HashMap<u64, Place>,
    by_place: HashMap<Place, u64>,
    /// Numbers that more than one place has had (hard links).
    shared: std::collections::HashSet<u64>,
    next: u64,
}

impl Default for Inodes {
    fn default() -> Self {
        let mut t = Self {
            by_ino: HashMap::new(),
            by_place: HashMap::new(),
            shared: std::collections::HashSet::new(),
            next: ROOT + 1,
        };
        t.by_ino.insert(ROOT, Place::Root);
        t.by_place.insert(Place::Root, ROOT);
        t
    }
}

impl Inodes {
    /// The number of `place`, given one if it has none yet.
    pub(crate) fn ino(&mut self, place: Place) -> u64 {
        if let Some(n) = self.by_place.get(&place) {
            return *n;
        }
        let n = self.next;
        self.next += 1;
        self.by_ino.insert(n, place.clone());
        self.by_place.insert(place, n);
        n
    }

    /// The number of `place`, if it has one.
    pub(crate) fn get(&self, place: &Place) -> Option<u64> {
        self.by_place.get(place).copied()
    }

    /// What `ino` stands for.
    pub(crate) fn place(&self, ino: u64) -> Option<Place> {
        self.by_ino.get(&ino).cloned()
    }

    /// Moves `from` and everything under it to `to` (a rename): the
    /// numbers follow, as the kernel expects. A number `to` had before is
    /// forgotten.
    pub(crate) fn rename(&mut self, room: RoomId, from: &str, to: &str) {
        if from == to {
            return;
        }
        if let Some(old) = self.by_place.remove(&Place::Path(room, to.to_string())) {
            self.forget_place_of(old);
        }
        let prefix = format!("{from}/");
        let moved: Vec<(Place, u64)> = self
            .by_place
            .iter()
            .filter(|(p, _)| match p {
                Place::Path(r, p) => *r == room && (p == from || p.starts_with(&prefix)),
                _ => false,
            })
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        for (place, n) in moved {
            self.by_place.remove(&place);
            if let Place::Path(r, p) = place {
                let new = Place::Path(r, format!("{to}{}", &p[from.len()..]));
                if let Some(old) = self.by_place.insert(new.clone(), n)
                    && old != n
                {
                    self.forget_place_of(old);
                }
                self.by_ino.insert(n, new);
            }
        }
    }

    /// `a` and `b`, and everything under them, trade places (a rename
    /// with `RENAME_EXCHANGE`): the numbers follow.
    pub(crate) fn exchange(&mut self, room: RoomId, a: &str, b: &str) {
        if a == b {
            return;
        }
        let under = |p: &str, root: &str| p == root || p.starts_with(&format!("{root}/"));
        let moved: Vec<(Place, u64)> = self
            .by_place
            .iter()
            .filter(|(p, _)| match p {
                Place::Path(r, p) => *r == room && (under(p, a) || under(p, b)),
                _ => false,
            })
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        for (place, _) in &moved {
            self.by_place.remove(place);
        }
        for (place, n) in moved {
            if let Place::Path(r, p) = place {
                let new = if under(&p, a) {
                    format!("{b}{}", &p[a.len()..])
                } else {
                    format!("{a}{}", &p[b.len()..])
                };
                let new = Place::Path(r, new);
                self.by_place.insert(new.clone(), n);
                self.by_ino.insert(n, new);
            }
        }
    }

    /// `ino` lost one of its places: it is reached through another it
    /// still has (a hard link), or forgotten.
    fn forget_place_of(&mut self, ino: u64) {
        if let Some(other) = self.other_place(ino) {
            self.by_ino.insert(ino, other);
            return;
        }
        self.by_ino.remove(&ino);
        self.shared.remove(&ino);
    }

    /// A place that has `ino`, if it is shared (hard links): where the
    /// number is reached once the place it was reached through is gone.
    fn other_place(&self, ino: u64) -> Option<Place> {
        if !self.shared.contains(&ino) {
            return None;
        }
        self.by_place
            .iter()
            .find(|(_, n)| **n == ino)
            .map(|(p, _)| p.clone())
    }

    /// Gives `place` the number `ino` too: another name of one file (a
    /// hard link).
    pub(crate) fn alias(&mut self, place: Place, ino: u64) {
        self.shared.insert(ino);
        if let Some(old) = self.by_place.insert(place, ino)
            && old != ino
        {
            self.forget_place_of(old);
        }
    }

    /// The name `place` is gone (unlinked): a new file made there gets a
    /// new number. Its number is reached through another name it has (a
    /// hard link), else still through `place` (a file open when its last
    /// name went: `fstat` on it).
    pub(crate) fn unname(&mut self, place: &Place) {
        let Some(n) = self.by_place.remove(place) else {
            return;
        };
        if self.by_ino.get(&n) == Some(place)
            && let Some(other) = self.other_place(n)
        {
            self.by_ino.insert(n, other);
        }
    }

    /// Forgets a room's numbers (it was left).
    pub(crate) fn forget_room(&mut self, room: &RoomId) {
        self.by_place.retain(|p, _| p.room() != Some(*room));
        self.by_ino.retain(|_, p| p.room() != Some(*room));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_follow_renames() {
        let room = RoomId::from_bytes([1u8; 32]);
        let mut t = Inodes::default();
        let a = t.ino(Place::Path(room, "d".into()));
        let b = t.ino(Place::Path(room, "d/f".into()));
        let c = t.ino(Place::Path(room, "dd".into()));
        let x = t.ino(Place::Path(room, "e/f".into()));
        assert_eq!(t.ino(Place::Path(room, "d".into())), a);
        t.rename(room, "d", "e");
        assert_eq!(t.place(a), Some(Place::Path(room, "e".into())));
        assert_eq!(t.place(b), Some(Place::Path(room, "e/f".into())));
        assert_eq!(t.place(c), Some(Place::Path(room, "dd".into())));
        // The number `e/f` had is gone: the rename replaced that file.
        assert_eq!(t.place(x), None);
        assert_eq!(t.get(&Place::Path(room, "e/f".into())), Some(b));
        // Hard links: a number for two names; a name unlinked, the other
        // reaches it; a new file at the old name gets a new number.
        let l1 = Place::Path(room, "l1".into());
        let l2 = Place::Path(room, "l2".into());
        let n = t.ino(l1.clone());
        t.alias(l2.clone(), n);
        t.unname(&l1);
        assert_eq!(t.place(n), Some(l2.clone()));
        assert_ne!(t.ino(l1.clone()), n);
        // Exchanged: each number follows its name.
        let (x, y) = (
            t.ino(Place::Path(room, "x/1".into())),
            t.ino(Place::Path(room, "y".into())),
        );
        t.exchange(room, "x", "y");
        assert_eq!(t.place(x), Some(Place::Path(room, "y/1".into())));
        assert_eq!(t.place(y), Some(Place::Path(room, "x".into())));
        // Renamed over: the other name still reaches it.
        let l3 = Place::Path(room, "l3".into());
        t.alias(l3, n);
        t.rename(room, "dd", "l2");
        assert_eq!(t.place(n), Some(Place::Path(room, "l3".into())));
        t.forget_room(&room);
        assert_eq!(t.place(a), None);
        assert_eq!(t.place(ROOT), Some(Place::Root));
    }

    #[test]
    fn paths_join_and_split() {
        assert_eq!(join("", "a"), "a");
        assert_eq!(join("a/b", "c"), "a/b/c");
        assert_eq!(split("a/b/c"), ("a/b", "c"));
        assert_eq!(split("c"), ("", "c"));
    }
}
