//! Chat that cannot be forged: alice and bob mount the room, eve runs a
//! daemon, names herself alice too and posts escape sequences (clear the
//! screen, set the terminal's title), BEL, DEL, a C1 CSI and bidi controls.
//! `chat.log` and `p2pfs chat` show all of it escaped, eve's lines and
//! alice's later ones carry the short node id, and on a real terminal
//! (tmux) neither `tail chat.log` nor `p2pfs chat` clears the screen or
//! changes the title. `p2pfs chat` prints the same bytes on every member.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{fs, path::Path, time::Duration};

use p2pfs_tests::{Daemon, ok, p2pfs, p2pfs_with_input, temp_dir, wait_for};

const SYNC: Duration = Duration::from_secs(20);

/// What eve posts: two messages.
const EVIL: &str = "clear\x1b[2J title\x1b]0;title\x07 bell\x07 del\x7f csi\u{9b}2J bidi\u{202e}txet\n\
                    \u{2067}I am alice\u{2069} \u{200b}trust me\u{2028}\n";

/// Each raw character of [`EVIL`] as it must show.
const SHOWN: &[&str] = &[
    "clear\\x1b[2J title\\x1b]0;title\\x07 bell\\x07 del\\x7f csi\\u{9b}2J bidi\\u{202e}txet",
    "\\u{2067}I am alice\\u{2069} \\u{200b}trust me\\u{2028}",
];

/// Characters that must never reach a terminal raw.
fn forbidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{61c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

fn chat(d: &Daemon) -> String {
    ok(&p2pfs(d.data_dir(), &["chat", "team"]))
}

fn short(d: &Daemon) -> &str {
    &d.id[..10]
}

#[test]
fn escapes_and_a_stolen_name_cannot_forge_a_line() {
    p2pfs_tests::needs_root!();
    let root = temp_dir();
    let alice = Daemon::mount(
        &root.path().join("a"),
        &root.path().join("mnt-a"),
        &["--name", "alice"],
    );
    let bob = Daemon::mount(
        &root.path().join("b"),
        &root.path().join("mnt-b"),
        &["--name", "bob\u{202e}"],
    );
    let eve = Daemon::start(&root.path().join("e"), &["--name", "alice", "--no-lan"]);
    let (a_log, b_log) = (
        alice.mountpoint().join("team/chat.log"),
        bob.mountpoint().join("team/chat.log"),
    );

    fs::create_dir(alice.mountpoint().join("team")).unwrap();
    append(&a_log, "hello from alice\n");
    let ticket = ok(&p2pfs(alice.data_dir(), &["room", "ticket", "team"]));
    ok(&p2pfs(bob.data_dir(), &["room", "join", ticket.trim()]));
    ok(&p2pfs(eve.data_dir(), &["room", "join", ticket.trim()]));
    wait_for(SYNC, "eve to have alice's first message", || {
        chat(&eve).contains("hello from alice").then_some(())
    });
    ok(&p2pfs_with_input(
        eve.data_dir(),
        &["chat", "team", "-"],
        Some(EVIL.as_bytes()),
    ));
    wait_for(SYNC, "eve's messages at alice", || {
        fs::read_to_string(&a_log)
            .ok()?
            .contains("trust me")
            .then_some(())
    });
    append(&a_log, "real alice again\n");
    wait_for(SYNC, "bob to join", || b_log.exists().then_some(()));
    append(&b_log, "hi from bob\n");
    let lines = 5;
    for d in [&alice, &bob, &eve] {
        wait_for(SYNC, "every member to have every message", || {
            (chat(d).lines().count() == lines).then_some(())
        });
    }
    wait_for(SYNC, "bob's chat.log to have every message", || {
        (fs::read_to_string(&b_log).ok()?.lines().count() == lines).then_some(())
    });

    let (a, e) = (short(&alice), short(&eve));
    // chat.log: arrival order, names as known when each line arrived.
    let log = fs::read_to_string(&b_log).unwrap();
    assert!(
        !log.chars().any(forbidden),
        "raw control in chat.log: {log:?}"
    );
    assert!(log.contains(" alice: hello from alice\n"), "{log}");
    for s in SHOWN {
        assert!(log.contains(&format!(" alice ({e}): {s}\n")), "{log}");
    }
    assert!(
        log.contains(&format!(" alice ({a}): real alice again\n")),
        "{log}"
    );
    assert!(log.contains(" bob\\u{202e}: hi from bob\n"), "{log}");

    // p2pfs chat: the same bytes everywhere, every line knowing every name.
    let printed = chat(&bob);
    assert_eq!(chat(&alice), printed);
    assert_eq!(chat(&eve), printed);
    assert!(!printed.chars().any(forbidden), "{printed:?}");
    assert!(
        printed.contains(&format!(" alice ({a}): hello from alice\n")),
        "{printed}"
    );
    for s in SHOWN {
        assert!(
            printed.contains(&format!(" alice ({e}): {s}\n")),
            "{printed}"
        );
    }
    let at = |s: &str| printed.find(s).unwrap();
    assert!(at("hello from alice") < at("txet") && at("trust me") < at("real alice again"));

    // Names in `room status` are escaped too.
    let status = ok(&p2pfs(alice.data_dir(), &["room", "status", "team"]));
    assert!(!status.chars().any(forbidden), "{status:?}");
    assert!(
        status.contains(&format!("bob\\u{{202e}} ({})", short(&bob))),
        "{status}"
    );

    // On a real terminal.
    let bin = p2pfs_tests::p2pfs_bin().to_str().unwrap().to_string();
    for (what, command) in [
        ("tail chat.log", format!("tail -n 20 {}", b_log.display())),
        (
            "p2pfs chat",
            format!("{bin} --data-dir {} chat team", bob.data_dir().display()),
        ),
    ] {
        let term = Term::new(root.path(), what);
        term.run(&format!(
            "echo BEFORE-$((2+2)); {command}; echo AFTER-$((3+3))"
        ));
        let screen = wait_for(SYNC, "the command to finish in tmux", || {
            let s = term.screen();
            s.contains("AFTER-6").then_some(s)
        });
        assert!(
            screen.contains("BEFORE-4"),
            "{what} cleared the screen:\n{screen}"
        );
        assert!(
            screen.contains("\\x1b[2J title\\x1b]0;title\\x07"),
            "{what}:\n{screen}"
        );
        assert!(
            screen.contains(&format!("alice ({e}): ")),
            "{what}:\n{screen}"
        );
        assert_eq!(term.title(), "p2pfs-test", "{what} changed the title");
    }
}

/// Appends to a file the way `echo … >> chat.log` does.
fn append(path: &Path, text: &str) {
    use std::io::Write;
    let mut f = fs::OpenOptions::new().append(true).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// A tmux server of this test's own (socket in its temp dir) with one
/// 200×50 pane running `sh`, checked to obey escape sequences.
struct Term(p2pfs_tests::Tmux);

impl Term {
    /// Starts it and checks that the pane obeys escape sequences (so the
    /// test could see them if they got through): it takes a title from an
    /// OSC sequence and clears its screen on `ESC [ 2 J`.
    fn new(dir: &Path, what: &str) -> Self {
        let socket = dir.join(format!("tmux-{}.sock", what.replace(' ', "-")));
        let t = Self(p2pfs_tests::Tmux::start(socket, 200, 50, dir, "sh"));
        t.run("printf '\\033]2;p2pfs-test\\033\\\\'; echo GONE-$((1+1))");
        wait_for(SYNC, "tmux to take a title", || {
            (t.title() == "p2pfs-test" && t.screen().contains("GONE-2")).then_some(())
        });
        t.run("printf '\\033[2J\\033[H'; echo CLEARED-$((1+2))");
        wait_for(SYNC, "tmux to clear its screen", || {
            let s = t.screen();
            (s.contains("CLEARED-3") && !s.contains("GONE-2")).then_some(())
        });
        t
    }

    /// Types `line` and Enter.
    fn run(&self, line: &str) {
        self.0.keys(&["-l", line]);
        self.0.keys(&["Enter"]);
    }

    fn screen(&self) -> String {
        self.0.screen()
    }

    fn title(&self) -> String {
        self.0.title()
    }
}
