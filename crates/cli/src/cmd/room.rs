//! `p2pfs room …` and `p2pfs chat`: rooms from the command line.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use p2pfs_proto::RoomTicket;
use p2pfs_store::OutputFile;
use p2pfs_swarm::room::{FileKind, render};

use crate::{
    cmd,
    control::{Request, Response, RoomRequest},
    output,
    params::{
        CreateRoom, ExportRoom, ImportRoom, JoinRoom, PutFile, RoomFile, RoomMember, RoomRef,
        SetCopies,
    },
    session::Session,
};

/// Sends a room request; warnings go to stderr, the rest to `f`.
async fn call(
    session: &Session,
    request: RoomRequest,
    mut f: impl FnMut(Response) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    cmd::each(session, Request::Room(request), |r| match r {
        Response::Warning(w) => {
            eprintln!("warning: {w}");
            Ok(())
        }
        r => f(r),
    })
    .await
}

/// Prints the ticket of a new room.
pub(crate) async fn create(
    session: &Session,
    create: CreateRoom,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    call(session, RoomRequest::Create(create), |r| {
        if let Response::Ticket(t) = r {
            output::line(out, &t)?;
            eprintln!("invite link: {}", p2pfs_web::join_link(&t));
        }
        Ok(())
    })
    .await
}

pub(crate) async fn join(
    session: &Session,
    mut join: JoinRoom,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Checked here, so a mistyped ticket joins nothing and starts nothing.
    let ticket: RoomTicket = join.ticket.parse()?;
    join.ticket = ticket.to_string();
    call(session, RoomRequest::Join(join), |r| {
        if let Response::Joined(n) = r {
            output::line(out, &format!("joined room {}", render::clean(&n)))?;
        }
        Ok(())
    })
    .await
}

pub(crate) async fn list(
    session: &Session,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut rooms = Vec::new();
    call(session, RoomRequest::List, |r| {
        if let Response::Rooms(v) = r {
            rooms = v;
        }
        Ok(())
    })
    .await?;
    if json {
        return output::json(out, &rooms);
    }
    for r in &rooms {
        output::line(
            out,
            &format!(
                "{}  {}  members {}  online {}  files {}  entries {}",
                render::clean(&r.name),
                r.id.fmt_short(),
                r.members,
                r.online,
                r.files,
                r.entries
            ),
        )?;
    }
    Ok(())
}

pub(crate) async fn ticket(
    session: &Session,
    room: RoomRef,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    call(session, RoomRequest::Ticket(room), |r| {
        if let Response::Ticket(t) = r {
            output::line(out, &t)?;
            eprintln!("invite link: {}", p2pfs_web::join_link(&t));
        }
        Ok(())
    })
    .await
}

pub(crate) async fn leave(session: &Session, room: RoomRef) -> anyhow::Result<()> {
    call(session, RoomRequest::Leave(room), |_| Ok(())).await
}

pub(crate) async fn put(
    session: &Session,
    mut put: PutFile,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let abs = std::path::absolute(&put.path).with_context(|| format!("{}", put.path.display()))?;
    // Named from the path as given (`.` has no file name; its absolute
    // form would).
    let path = put.name_in_room()?;
    put.path = abs;
    put.name = Some(path.clone());
    call(session, RoomRequest::Put(put), |r| {
        if let Response::Added { hash, .. } = r {
            output::line(out, &format!("{hash}  {path}"))?;
        }
        Ok(())
    })
    .await
}

pub(crate) async fn get(
    session: &Session,
    file: RoomFile,
    output: Option<PathBuf>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let request = RoomRequest::Get(file);
    let dest = output.filter(|p| p != Path::new("-"));
    let mut file = dest.as_deref().map(OutputFile::create).transpose()?;
    let result = call(session, request, |r| {
        if let Response::Data(bytes) = r {
            match &mut file {
                Some(f) => f.write_all(&bytes).context("writing the output file")?,
                None => out
                    .write_all(&bytes)
                    .context("writing to standard output")?,
            }
        }
        Ok(())
    })
    .await;
    // Dropped unfinished on an error: a file that was there stays as it was.
    result?;
    match file {
        Some(f) => output::finish(f),
        None => out.flush().context("writing to standard output"),
    }
}

pub(crate) async fn rm(session: &Session, file: RoomFile) -> anyhow::Result<()> {
    call(session, RoomRequest::Rm(file), |_| Ok(())).await
}

pub(crate) async fn ls(
    session: &Session,
    room: RoomRef,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut files = Vec::new();
    call(session, RoomRequest::Ls(room), |r| {
        if let Response::Files(f) = r {
            files.extend(f);
        }
        Ok(())
    })
    .await?;
    if json {
        return output::json(out, &files);
    }
    for f in &files {
        let line = match &f.kind {
            FileKind::File {
                hash, size, author, ..
            } => format!("{}  {size}  {hash}  {}", f.path, author.fmt_short()),
            FileKind::Dir { .. } => format!("{}/  -  -  -", f.path),
            FileKind::Symlink { target, author, .. } => {
                format!("{} -> {target}  -  -  {}", f.path, author.fmt_short())
            }
        };
        output::line(out, &line)?;
    }
    Ok(())
}

pub(crate) async fn chat(
    session: &Session,
    room: &str,
    text: Option<String>,
    follow: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    if let Some(text) = text {
        let text = if text == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading standard input")?
        } else {
            text
        };
        call(
            session,
            RoomRequest::Chat {
                room: room.into(),
                text,
            },
            |_| Ok(()),
        )
        .await?;
        if !follow {
            return Ok(());
        }
    }
    call(
        session,
        RoomRequest::ChatLog {
            room: room.into(),
            follow,
        },
        |r| {
            if let Response::ChatLines(lines) = r {
                for l in lines {
                    out.write_all(l.as_bytes())
                        .context("writing to standard output")?;
                }
                out.flush().context("writing to standard output")?;
            }
            Ok(())
        },
    )
    .await
}

pub(crate) async fn set(session: &Session, set: SetCopies) -> anyhow::Result<()> {
    call(session, RoomRequest::Set(set), |_| Ok(())).await
}

pub(crate) async fn pin(
    session: &Session,
    file: RoomFile,
    keep: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    // Printed as given.
    let path = file.name.clone();
    let (request, what) = if keep {
        (RoomRequest::Pin(file), "pinned")
    } else {
        (RoomRequest::Unpin(file), "unpinned")
    };
    call(session, request, |r| {
        if let Response::Added { hash, .. } = r {
            output::line(out, &format!("{what} {hash}  {path}"))?;
        }
        Ok(())
    })
    .await
}

pub(crate) async fn status(
    session: &Session,
    room: RoomRef,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut status = None;
    call(session, RoomRequest::Status(room), |r| {
        match r {
            Response::RoomStatus(s) => status = Some(s),
            Response::RoomFiles(more) => {
                if let Some(s) = status.as_mut() {
                    s.files.extend(more);
                }
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    let Some(s) = status else {
        bail!("the node sent no status");
    };
    if json {
        return output::json(out, &s);
    }
    for line in status_lines(&s) {
        output::line(out, &line)?;
    }
    Ok(())
}

/// `room status` for people: a summary, the members, the files.
fn status_lines(s: &p2pfs_swarm::replica::RoomStatus) -> Vec<String> {
    use output::human_bytes;
    let online = s.members.iter().filter(|m| m.online).count();
    let below = s.files.iter().filter(|f| f.below_target()).count();
    let alone = s.files.iter().filter(|f| f.only_here).count();
    let mut lines = vec![format!(
        "room {}: {}, {online} of {} members online, {} files, {below} below target, \
         {alone} only here",
        render::clean(&s.room),
        s.policy,
        s.members.len(),
        s.files.len()
    )];
    lines.push(String::new());
    lines.push(format!("{:<32} {:<8} {:>6}", "MEMBER", "STATE", "FILES"));
    for m in &s.members {
        let name = format!("{} ({})", render::display_name(&m.name), m.id.fmt_short());
        let state = if m.online { "online" } else { "offline" };
        let mut notes = Vec::new();
        if m.me {
            notes.push("this node".to_string());
        }
        if m.full {
            notes.push("at its storage cap".to_string());
        }
        match m.last_heard_secs {
            Some(t) if !m.online => notes.push(format!("last heard {t} s ago")),
            None if !m.me => notes.push("no status heard".to_string()),
            _ => {}
        }
        let holds = if m.online || m.last_heard_secs.is_some() {
            m.holds.to_string()
        } else {
            "-".to_string()
        };
        lines.push(
            format!("{name:<32} {state:<8} {holds:>6}  {}", notes.join(", "))
                .trim_end()
                .to_string(),
        );
    }
    lines.push(String::new());
    lines.push(format!("{:<7} {:>10}  PATH", "COPIES", "SIZE"));
    for f in &s.files {
        let copies = format!("{}/{}", f.copies, f.target);
        let flag = if f.only_here {
            "  only here"
        } else if f.below_target() {
            "  below target"
        } else {
            ""
        };
        lines.push(format!(
            "{copies:<7} {:>10}  {}{flag}",
            human_bytes(f.size),
            f.path
        ));
    }
    lines.push(String::new());
    let cap = s.max_storage.map_or_else(
        || "no cap".to_string(),
        |c| format!("cap {}", human_bytes(c)),
    );
    lines.push(format!(
        "this node: {} stored ({cap}), {} fetched to keep copies; a member is offline after {} s without a status",
        human_bytes(s.stored_bytes),
        human_bytes(s.fetched_bytes),
        s.offline_after_secs
    ));
    lines
}

/// `room export ROOM FILE [--files]`: prints what it wrote.
pub(crate) async fn export(
    session: &Session,
    mut export: ExportRoom,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let shown = export.file.display().to_string();
    export.file = std::path::absolute(&export.file).with_context(|| shown.clone())?;
    call(session, RoomRequest::Export(export), |r| {
        if let Response::RoomExported(r) = r {
            output::line(
                out,
                &format!(
                    "{shown}: {} entries, {} files, {} bytes",
                    r.entries, r.blobs, r.bytes
                ),
            )?;
            eprintln!("note: {shown} holds the room's secret: whoever has it can join the room");
        }
        Ok(())
    })
    .await
}

/// `room import FILE [--name NAME]`: prints what it merged.
pub(crate) async fn import(
    session: &Session,
    mut import: ImportRoom,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let shown = import.file.display().to_string();
    import.file = std::path::absolute(&import.file).with_context(|| shown.clone())?;
    call(session, RoomRequest::Import(import), |r| {
        if let Response::RoomImported(r) = r {
            let how = if r.created { "joined" } else { "merged into" };
            output::line(
                out,
                &format!(
                    "{how} room {}: {} entries ({} new), {} files",
                    render::clean(&r.room),
                    r.entries,
                    r.new_entries,
                    r.blobs
                ),
            )?;
        }
        Ok(())
    })
    .await
}

/// `room members ROOM [--json]`: one line per member, `ROLE  NAME  ID
/// SEEN`.
pub(crate) async fn members(
    session: &Session,
    room: RoomRef,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut list = Vec::new();
    call(session, RoomRequest::Members(room), |r| {
        if let Response::Members(v) = r {
            list = v;
        }
        Ok(())
    })
    .await?;
    if json {
        return output::json(out, &list);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let width = list
        .iter()
        .map(|m| {
            m.name
                .as_deref()
                .map_or(1, |n| render::clean(n).chars().count())
        })
        .max()
        .unwrap_or(1);
    for m in &list {
        let seen = if m.online {
            "online".to_string()
        } else if m.left {
            "left".to_string()
        } else {
            match m.last_seen_ms {
                Some(t) => format!("last seen {} ago", output::human_age(now.saturating_sub(t))),
                None => "never seen".to_string(),
            }
        };
        let name = m.name.as_deref().map_or_else(|| "-".into(), render::clean);
        output::line(
            out,
            &format!(
                "{:<9}  {name:<width$}  {}  {seen}",
                m.role.as_str(),
                m.id.fmt_short()
            ),
        )?;
    }
    Ok(())
}

/// `room promote` / `room demote`.
pub(crate) async fn set_role(
    session: &Session,
    member: RoomMember,
    moderator: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let who = member.member.clone();
    call(session, RoomRequest::SetRole { member, moderator }, |_| {
        Ok(())
    })
    .await?;
    let role = if moderator { "a moderator" } else { "a member" };
    output::line(out, &format!("{} is now {role}", render::clean(&who)))?;
    Ok(())
}

/// `room remove ROOM MEMBER`.
pub(crate) async fn remove(
    session: &Session,
    member: RoomMember,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let room = member.room.clone();
    call(session, RoomRequest::Remove(member), |r| {
        if let Response::Removed(id, name) = r {
            let name = name.as_deref().map_or_else(|| "-".into(), render::clean);
            output::line(
                out,
                &format!(
                    "removed {name} ({}): it can no longer see new files or messages; \
                     what it already had stays with it",
                    id.fmt_short()
                ),
            )?;
            eprintln!(
                "the room's key changed: old tickets no longer admit anyone; \
                 `p2pfs room ticket {}` gives a new one",
                render::clean(&room)
            );
        }
        Ok(())
    })
    .await
}
