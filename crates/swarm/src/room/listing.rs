//! A room's listing kept up to date path by path: the same names as
//! [`view::listing`] computes from every row, but a change to a few rows
//! costs work in proportion to those rows (and their directories), not to
//! the room. The mount keeps one per room, so that publishing the
//! thousandth file of a directory costs what the first did.
//!
//! What a row shows depends on a few other things, each kept so it can be
//! looked up: whether its path is a directory (an explicit one, or one
//! with something shown under it: a count per directory), and whether a
//! conflict copy's name is taken by a real name (a conflict copy never
//! hides one). A changed row is shown again; so are the rows whose
//! directory came or went, and the rows whose conflict copies a real name
//! now hides or no longer hides. Pure: no I/O; tested against
//! [`view::listing`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::view::{self, FileEntry, FileKind, LiveOp};

/// Who put a name in the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    /// A directory (explicit, or implied by what is under it).
    Dir,
    /// The winning put of the row at this very path.
    Real,
    /// A put of the row at this path shown as a conflict copy.
    Conflict(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Shown {
    kind: FileKind,
    owner: Owner,
}

/// The listing of a room, and the rows it is made from.
#[derive(Debug, Default, Clone)]
pub struct Listing {
    rows: BTreeMap<String, Vec<LiveOp>>,
    shown: BTreeMap<String, Shown>,
    /// The names each row put in `shown` (its winner, its conflict copies).
    owned: HashMap<String, Vec<String>>,
    /// Per directory, the rows shown under it (at any depth).
    under: HashMap<String, usize>,
}

/// Whether a row shows anything (a put, or an explicit directory).
fn row_shown(live: Option<&Vec<LiveOp>>) -> bool {
    live.is_some_and(|l| l.iter().any(|o| o.kind.is_leaf() || o.kind.is_dir()))
}

fn row_dir(live: Option<&Vec<LiveOp>>) -> bool {
    live.is_some_and(|l| l.iter().any(|o| o.kind.is_dir()))
}

/// The directories above `path`, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut p = path;
    std::iter::from_fn(move || {
        let (parent, _) = p.rsplit_once('/')?;
        p = parent;
        Some(parent)
    })
}

/// The row whose conflict copy a name like `PATH.conflict-X` would be.
fn conflict_base(name: &str) -> Option<&str> {
    name.rsplit_once(".conflict-").map(|(base, _)| base)
}

impl Listing {
    /// The listing of `rows` (each path's live entries).
    pub(crate) fn new(rows: impl IntoIterator<Item = (String, Vec<LiveOp>)>) -> Self {
        let mut l = Self::default();
        l.update(rows);
        l
    }

    /// The entry shown at `name`.
    pub fn get(&self, name: &str) -> Option<&FileKind> {
        self.shown.get(name).map(|s| &s.kind)
    }

    /// Every entry, sorted by path (what [`view::listing`] returns).
    pub fn entries(&self) -> impl Iterator<Item = FileEntry> + '_ {
        self.shown.iter().map(|(path, s)| FileEntry {
            path: path.clone(),
            kind: s.kind.clone(),
        })
    }

    /// One page of the names directly in directory `dir` ("" for the
    /// room's top), in order: at most `limit` of them, those after the
    /// name `after` if given; and whether more follow. What a page costs
    /// is in proportion to the page, not to the directory or what is under
    /// its subdirectories (their subtrees are stepped over).
    pub fn children(
        &self,
        dir: &str,
        after: Option<&str>,
        limit: usize,
    ) -> (Vec<(String, FileKind)>, bool) {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut from = match after {
            Some(a) => Excluded(format!("{prefix}{a}")),
            None => Included(prefix.clone()),
        };
        let mut out = Vec::new();
        loop {
            let Some((key, shown)) = self.shown.range((from.clone(), Unbounded)).next() else {
                return (out, false);
            };
            let Some(rest) = key.strip_prefix(&prefix) else {
                return (out, false);
            };
            match rest.find('/') {
                // Under a subdirectory: step over its subtree ('0' follows
                // '/').
                Some(i) => from = Included(format!("{prefix}{}0", &rest[..i])),
                None if rest.is_empty() => from = Excluded(key.clone()),
                None => {
                    if out.len() == limit {
                        return (out, true);
                    }
                    out.push((rest.to_string(), shown.kind.clone()));
                    from = Excluded(key.clone());
                }
            }
        }
    }

    /// Number of names shown.
    pub fn len(&self) -> usize {
        self.shown.len()
    }

    /// Whether nothing is shown.
    pub fn is_empty(&self) -> bool {
        self.shown.is_empty()
    }

    /// Sets the live entries of some rows (empty: the row is gone);
    /// returns every name whose entry appeared, changed or went.
    pub(crate) fn update(
        &mut self,
        rows: impl IntoIterator<Item = (String, Vec<LiveOp>)>,
    ) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        let mut render: BTreeSet<String> = BTreeSet::new();
        let mut dirs: BTreeSet<String> = BTreeSet::new();
        for (path, live) in rows {
            let (was_shown, was_dir) = (
                row_shown(self.rows.get(&path)),
                row_dir(self.rows.get(&path)),
            );
            if live.is_empty() {
                self.rows.remove(&path);
            } else {
                self.rows.insert(path.clone(), live);
            }
            let (now_shown, now_dir) = (
                row_shown(self.rows.get(&path)),
                row_dir(self.rows.get(&path)),
            );
            if was_shown != now_shown {
                for a in ancestors(&path) {
                    let n = self.under.entry(a.to_string()).or_insert(0);
                    if now_shown {
                        *n += 1;
                    } else {
                        *n = n.saturating_sub(1);
                    }
                    if *n == 0 {
                        self.under.remove(a);
                    }
                    dirs.insert(a.to_string());
                }
            }
            if was_dir || now_dir {
                // (Its attributes may have changed.)
                dirs.insert(path.clone());
            }
            render.insert(path);
        }
        for d in dirs {
            let is = self.is_dir(&d);
            let was = self.shown.get(&d).is_some_and(|s| s.owner == Owner::Dir);
            if is && was {
                let kind = view::dir_kind(self.rows.get(&d));
                if let Some(shown) = self.shown.get_mut(&d)
                    && shown.kind != kind
                {
                    shown.kind = kind;
                    changed.insert(d.clone());
                }
                continue;
            }
            if is == was {
                continue;
            }
            if is {
                // A real name: it takes the place of a conflict copy.
                if let Some(old) = self.shown.insert(
                    d.clone(),
                    Shown {
                        kind: view::dir_kind(self.rows.get(&d)),
                        owner: Owner::Dir,
                    },
                ) && let Owner::Conflict(row) = old.owner
                {
                    render.insert(row);
                }
            } else {
                self.shown.remove(&d);
            }
            changed.insert(d.clone());
            // The row at the directory's path shows differently now, and a
            // conflict copy this name hid (or may show) too.
            render.insert(d.clone());
            if let Some(base) = conflict_base(&d) {
                render.insert(base.to_string());
            }
        }
        // Showing a row can change a real name, which can hide or free a
        // conflict copy of another row: until nothing more changes (real
        // names only ever take the place of copies, so this ends; the
        // bound is a guard).
        let mut budget = 4 * (render.len() + 4);
        while let Some(row) = render.pop_first() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let real_before = self.real_at(&row);
            self.render(&row, &mut changed, &mut render);
            if self.real_at(&row) != real_before
                && let Some(base) = conflict_base(&row)
            {
                render.insert(base.to_string());
            }
        }
        changed
    }

    /// Whether `path` is a directory: an explicit one, or one with
    /// something shown under it.
    fn is_dir(&self, path: &str) -> bool {
        row_dir(self.rows.get(path)) || self.under.get(path).is_some_and(|n| *n > 0)
    }

    /// Whether a real name (a directory, or a row's winner) is shown at
    /// `name`.
    fn real_at(&self, name: &str) -> bool {
        self.shown
            .get(name)
            .is_some_and(|s| !matches!(s.owner, Owner::Conflict(_)))
    }

    /// Shows the puts of row `path` again: its winner at its path (unless
    /// it is a directory), the others as conflict copies (unless a real
    /// name takes theirs).
    fn render(&mut self, path: &str, changed: &mut BTreeSet<String>, again: &mut BTreeSet<String>) {
        let old = self.owned.remove(path).unwrap_or_default();
        let mut new: Vec<(String, Shown)> = Vec::new();
        let mut puts: Vec<&LiveOp> = self
            .rows
            .get(path)
            .map(|l| l.iter().filter(|o| o.kind.is_leaf()).collect())
            .unwrap_or_default();
        // The winner: the latest, then the greatest author, then entry.
        puts.sort_by_key(|p| std::cmp::Reverse((p.time, p.author, p.entry)));
        let dir = self.is_dir(path);
        for (i, p) in puts.iter().enumerate() {
            let Some(kind) = view::file_kind(p) else {
                continue;
            };
            if i == 0 && !dir {
                new.push((
                    path.to_string(),
                    Shown {
                        kind,
                        owner: Owner::Real,
                    },
                ));
            } else {
                new.push((
                    format!("{path}.conflict-{}", p.author.fmt_short()),
                    Shown {
                        kind,
                        owner: Owner::Conflict(path.to_string()),
                    },
                ));
            }
        }
        // Take back what it showed before.
        for name in &old {
            let mine = self.shown.get(name).is_some_and(|s| match &s.owner {
                Owner::Real => name == path,
                Owner::Conflict(row) => row == path,
                Owner::Dir => false,
            });
            if mine {
                let gone = self.shown.remove(name);
                if new
                    .iter()
                    .all(|(n, s)| n != name || Some(s) != gone.as_ref())
                {
                    changed.insert(name.clone());
                }
            }
        }
        let mut owned = Vec::new();
        for (name, shown) in new {
            let free = match self.shown.get(&name) {
                None => true,
                // A real name takes the place of a conflict copy.
                Some(s) => match (&shown.owner, &s.owner) {
                    (Owner::Real, Owner::Conflict(row)) => {
                        again.insert(row.clone());
                        true
                    }
                    _ => false,
                },
            };
            if !free {
                continue;
            }
            let before = self.shown.insert(name.clone(), shown.clone());
            if before.as_ref() != Some(&shown) || !old.contains(&name) {
                changed.insert(name.clone());
            }
            owned.push(name);
        }
        if !owned.is_empty() {
            self.owned.insert(path.to_string(), owned);
        }
    }
}

#[cfg(test)]
mod tests {
    use p2pfs_proto::{Hash, NodeId};

    use super::{view::LiveKind, *};

    fn op(n: u64, author: u8, kind: LiveKind) -> LiveOp {
        LiveOp {
            entry: Hash::of(&n.to_le_bytes()),
            author: NodeId::from_bytes([author; 32]),
            time: n,
            kind,
        }
    }

    fn file(n: u64) -> LiveKind {
        LiveKind::File {
            hash: Hash::of(&n.to_be_bytes()),
            size: n,
            attr: view::put_attr(false, n, n),
            inode: None,
        }
    }

    /// The listing computed from every row, as the truth.
    fn full(rows: &BTreeMap<String, Vec<LiveOp>>) -> Vec<FileEntry> {
        view::listing(rows.iter().map(|(k, v)| (k.clone(), v.clone())))
    }

    #[test]
    fn children_page_through_a_directory_stepping_over_subtrees() {
        let mut rows = BTreeMap::new();
        for (i, p) in ["a", "a/b", "a/b/c", "a/b/d", "a/b.txt", "a/c", "ab", "z/y"]
            .iter()
            .enumerate()
        {
            if *p == "a/b" || *p == "a" {
                continue;
            }
            rows.insert(p.to_string(), vec![op(i as u64 + 1, 1, file(i as u64 + 1))]);
        }
        let l = Listing::new(rows);
        let names = |dir: &str, after: Option<&str>, limit: usize| {
            let (page, more) = l.children(dir, after, limit);
            (page.into_iter().map(|(n, _)| n).collect::<Vec<_>>(), more)
        };
        assert_eq!(
            names("", None, 10),
            (vec!["a".into(), "ab".into(), "z".into()], false)
        );
        assert_eq!(
            names("a", None, 10),
            (vec!["b".into(), "b.txt".into(), "c".into()], false)
        );
        assert_eq!(names("a", None, 1), (vec!["b".into()], true));
        assert_eq!(names("a", Some("b"), 1), (vec!["b.txt".into()], true));
        assert_eq!(names("a", Some("b.txt"), 1), (vec!["c".into()], false));
        assert_eq!(
            names("a/b", None, 10),
            (vec!["c".into(), "d".into()], false)
        );
        assert_eq!(names("nothing", None, 10), (vec![], false));
        assert!(matches!(
            l.children("", None, 10).0[0].1,
            FileKind::Dir { .. }
        ));
    }

    #[test]
    fn a_few_cases_by_hand() {
        let mut l = Listing::default();
        let ch = l.update([("a/b".to_string(), vec![op(1, 1, file(1))])]);
        assert_eq!(ch, ["a", "a/b"].map(String::from).into());
        // A second put at a/b by another author: a conflict copy.
        let ch = l.update([(
            "a/b".to_string(),
            vec![op(1, 1, file(1)), op(2, 2, file(2))],
        )]);
        let conflict = format!("a/b.conflict-{}", NodeId::from_bytes([1; 32]).fmt_short());
        assert_eq!(ch, ["a/b".to_string(), conflict.clone()].into());
        // A file under a/b: a/b is a directory; both puts become copies.
        let ch = l.update([("a/b/c".to_string(), vec![op(3, 1, file(3))])]);
        assert!(ch.contains("a/b") && ch.contains("a/b/c"), "{ch:?}");
        assert!(matches!(l.get("a/b"), Some(FileKind::Dir { .. })));
        // Gone again: a/b is the file it was.
        l.update([("a/b/c".to_string(), vec![])]);
        assert!(matches!(l.get("a/b"), Some(FileKind::File { .. })));
        assert!(l.get(&conflict).is_some());
        // A real file named like the conflict copy hides it.
        l.update([(conflict.clone(), vec![op(4, 3, file(4))])]);
        assert!(matches!(
            l.get(&conflict),
            Some(FileKind::File { size: 4, .. })
        ));
        l.update([(conflict.clone(), vec![])]);
        assert!(matches!(
            l.get(&conflict),
            Some(FileKind::File { size: 1, .. })
        ));
    }

    #[test]
    fn random_changes_match_the_full_listing() {
        let names = [
            "a",
            "a/b",
            "a/b/c",
            "a/d",
            "b",
            "b.conflict-",
            "c/x",
            "c",
            "a/b.conflict-",
        ];
        let author_short = |a: u8| NodeId::from_bytes([a; 32]).fmt_short();
        for seed in 0..300 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut rows: BTreeMap<String, Vec<LiveOp>> = BTreeMap::new();
            let mut l = Listing::default();
            for step in 0..60u64 {
                let mut batch = Vec::new();
                for _ in 0..rng.usize(1..4) {
                    let mut path = names[rng.usize(..names.len())].to_string();
                    if path.ends_with(".conflict-") {
                        // A real name that a conflict copy would take.
                        path.push_str(&author_short(rng.u8(1..4)));
                    }
                    let mut live = Vec::new();
                    for k in 0..rng.usize(0..3) {
                        let n = step * 10 + k as u64;
                        let kind = match rng.u8(0..6) {
                            0 => LiveKind::Dir { attr: None },
                            5 => LiveKind::Dir {
                                attr: Some(view::put_attr(n.is_multiple_of(2), n, n)),
                            },
                            1 => LiveKind::Deleted,
                            2 => LiveKind::Symlink {
                                target: format!("t{n}"),
                                attr: None,
                            },
                            _ => file(n),
                        };
                        live.push(op(n, rng.u8(1..4), kind));
                    }
                    batch.push((path, live));
                }
                let before: BTreeMap<String, FileKind> =
                    full(&rows).into_iter().map(|e| (e.path, e.kind)).collect();
                for (p, live) in &batch {
                    if live.is_empty() {
                        rows.remove(p);
                    } else {
                        rows.insert(p.clone(), live.clone());
                    }
                }
                let changed = l.update(batch);
                let want = full(&rows);
                let got: Vec<FileEntry> = l.entries().collect();
                assert_eq!(got, want, "seed {seed} step {step}");
                let after: BTreeMap<String, FileKind> =
                    want.into_iter().map(|e| (e.path, e.kind)).collect();
                let mut really: BTreeSet<String> = BTreeSet::new();
                for (k, v) in &before {
                    if after.get(k) != Some(v) {
                        really.insert(k.clone());
                    }
                }
                for k in after.keys() {
                    if !before.contains_key(k) {
                        really.insert(k.clone());
                    }
                }
                assert!(
                    really.is_subset(&changed),
                    "seed {seed} step {step}: missed {:?}",
                    really.difference(&changed).collect::<Vec<_>>()
                );
            }
        }
    }
}
