//! Issue 20's figures: the web page against the mount, side by side in one
//! run (run by `bench/web.sh`, as root, release build):
//!
//! - opening a folder of FILES files (and one of 70,000) through the page
//!   (the first time, when the node reads the room's listing, and after)
//!   against `ls -l` of it in the mount;
//! - a search over NAMES names in all against `find -iname` in the mount;
//! - uploading UPLOAD MiB through the page in Chromium against `cp` into
//!   the mount, with the node's peak memory;
//! - chat from page to page against `chat.log` to `chat.log` (mount to
//!   mount).
//!
//! `web_bench [FILES] [NAMES] [UPLOAD_MIB] [CHATS]`
//! (defaults: 10000 100000 1024 20).

use std::{
    io::Write,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use p2pfs_tests::{
    Daemon,
    browser::{Browser, request},
    ok, p2pfs, random_file, temp_dir, wait_for,
};

fn arg(i: usize, default: u64) -> u64 {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// Milliseconds of `f`.
fn ms<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let v = f();
    (t.elapsed().as_secs_f64() * 1000.0, v)
}

/// Prints a line of figures.
fn say(line: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn sh(script: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes `n` small files named `file-NNNNNNN.txt` under `dir`, `per_dir`
/// to a subfolder (0: all in `dir`).
fn make_files(dir: &Path, n: u64, start: u64, per_dir: u64) {
    std::fs::create_dir_all(dir).expect("a folder");
    for i in start..start + n {
        let d = match (i - start).checked_div(per_dir) {
            None => dir.to_path_buf(),
            Some(n) => dir.join(format!("d{n:03}")),
        };
        if per_dir > 0 && (i - start).is_multiple_of(per_dir) {
            std::fs::create_dir_all(&d).expect("a folder");
        }
        std::fs::write(d.join(format!("file-{i:07}.txt")), format!("{i}\n")).expect("a file");
    }
}

/// The number of names the page's search finds for `q`, and the server's
/// time in ms.
fn search(web: SocketAddr, auth: &[(&str, &str)], q: &str) -> (usize, f64) {
    let r = request(web, "GET", &format!("/search?rows=true&q={q}"), auth, b"");
    let body = String::from_utf8_lossy(&r.body).into_owned();
    let count = body
        .split(" match")
        .next()
        .and_then(|s| s.rsplit('>').next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let server = body
        .split(" ms)")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    (count, server)
}

/// Resident memory of `pid` now (VmRSS), in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Samples the resident memory of `pid` every 20 ms until the returned
/// flag is set; the thread returns the highest sample.
fn sample_rss(
    pid: u32,
) -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    std::thread::JoinHandle<f64>,
) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::spawn(move || {
        let mut top = 0.0f64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            top = top.max(rss_mib(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        top
    });
    (stop, thread)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let files = arg(1, 10_000);
    let names = arg(2, 100_000).max(files);
    // The large folder: 70,000 files (fewer if NAMES leaves fewer).
    let flat = (names - files).min(70_000);
    let upload_mib = arg(3, 1024);
    let chats = arg(4, 20) as usize;
    let dir = temp_dir();
    let root = dir.path();
    let (mnt_a, mnt_b) = (root.join("mnt-a"), root.join("mnt-b"));
    let a = Daemon::mount(
        &root.join("a"),
        &mnt_a,
        &["--http", "127.0.0.1:0", "--name", "alice"],
    );
    let web = a.web_addr();
    let host = web.to_string();
    let bearer = format!("Bearer {}", a.web_token());
    let auth = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
    say(&format!(
        "web_bench: {files} files, {names} names, {upload_mib} MiB upload, {chats} chats"
    ));

    // The rooms: `big` with FILES files in one folder, `many` with a
    // folder of 70,000 and the rest of NAMES in folders of 1,000.
    ok(&p2pfs(a.data_dir(), &["room", "create", "big"]));
    ok(&p2pfs(a.data_dir(), &["room", "create", "many"]));
    let stage = root.join("stage");
    make_files(&stage.join("big/flat"), files, 0, 0);
    make_files(&stage.join("many/flat70k"), flat, files, 0);
    make_files(
        &stage.join("many/other"),
        names - files - flat,
        files + flat,
        1000,
    );
    let (t, _) = ms(|| {
        sh(&format!(
            "cp -r {s}/big/flat {m}/big/ && cp -r {s}/many/flat70k {s}/many/other {m}/many/",
            s = stage.display(),
            m = mnt_a.display()
        ))
    });
    say(&format!(
        "populate: {names} files through the mount in {:.1} s",
        t / 1000.0
    ));
    // Published when the room's listing has them all (asked of the node,
    // not the page: the page reads the listing the first time it is
    // opened, below).
    for (room, n) in [("big", files), ("many", names - files)] {
        wait_for(Duration::from_secs(900), "every file in the room", || {
            let out = p2pfs(a.data_dir(), &["room", "ls", room, "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
            let count = v
                .as_array()?
                .iter()
                .filter(|e| e["path"].as_str().is_some_and(|p| p.ends_with(".txt")))
                .count();
            (count as u64 == n).then_some(())
        });
    }

    // Opening a folder.
    for (room, folder, n) in [("big", "flat", files), ("many", "flat70k", flat)] {
        let path = format!("/r/{room}/?dir={folder}");
        let (first, r) = ms(|| request(web, "GET", &path, &auth, b""));
        assert_eq!(r.status, 200);
        let rows = String::from_utf8_lossy(&r.body)
            .matches("<tr class=\"file\"")
            .count();
        let warm = median(
            (0..7)
                .map(|_| ms(|| request(web, "GET", &path, &auth, b"")).0)
                .collect(),
        );
        let first_name = if room == "big" { 0 } else { files };
        let more = format!(
            "/r/{room}/list?dir={folder}&after=file-{:07}.txt",
            first_name + n / 2
        );
        let next = median(
            (0..7)
                .map(|_| ms(|| request(web, "GET", &more, &auth, b"")).0)
                .collect(),
        );
        let ls = median(
            (0..3)
                .map(|_| {
                    ms(|| {
                        sh(&format!(
                            "ls -l {}/{room}/{folder} | wc -l",
                            mnt_a.display()
                        ))
                    })
                    .0
                })
                .collect(),
        );
        say(&format!(
            "open a folder of {n} files: page {first:.1} ms the first time, {warm:.1} ms after \
             ({rows} rows), a later page {next:.1} ms; `ls -l` in the mount {ls:.1} ms \
             (page/ls {:.5})",
            warm / ls
        ));
    }

    // The rooms list (each room's files, members online and copies below
    // target), and a room's members.
    let (first, r) = ms(|| request(web, "GET", "/", &auth, b""));
    assert_eq!(r.status, 200);
    let rooms = median(
        (0..5)
            .map(|_| ms(|| request(web, "GET", "/", &auth, b"")).0)
            .collect(),
    );
    let members = median(
        (0..5)
            .map(|_| ms(|| request(web, "GET", "/r/many/members", &auth, b"")).0)
            .collect(),
    );
    say(&format!(
        "the rooms list ({names} files in two rooms): {first:.1} ms the first time, {rooms:.1} ms \
         after; a room's members page ({} files) {members:.1} ms",
        names - files
    ));

    // Searching every name.
    let queries = [
        "file-0000042",
        "FILE-00123",
        "7.txt",
        "-00",
        "nothing-like-this",
    ];
    let mut server = Vec::new();
    let mut client = Vec::new();
    for q in queries {
        for _ in 0..5 {
            let (c, (n, s)) = ms(|| search(web, &auth, q));
            client.push(c);
            server.push(s);
            let _ = n;
        }
    }
    let find = median(
        (0..3)
            .map(|_| {
                ms(|| {
                    sh(&format!(
                        "find {} -iname '*file-0000042*' | wc -l",
                        mnt_a.display()
                    ))
                })
                .0
            })
            .collect(),
    );
    say(&format!(
        "search over {names} names: {:.1} ms in the node, {:.1} ms to the client (median of {} \
         queries); `find -iname` in the mount {find:.1} ms (page/find {:.4})",
        median(server.clone()),
        median(client.clone()),
        client.len(),
        median(client) / find
    ));

    // Uploading through the page against `cp` into the mount.
    let big = root.join("upload.bin");
    random_file(&big, upload_mib << 20, 7);
    let copy = root.join("copy.bin");
    random_file(&copy, upload_mib << 20, 8);
    let login = ok(&p2pfs(a.data_dir(), &["web"])).trim().to_string();
    let mut page = Browser::start(&root.join("downloads")).await;
    page.goto(&login).await;
    page.goto(&format!("http://{web}/r/big/")).await;
    let before = rss_mib(a.pid());
    let (stop, sampler) = sample_rss(a.pid());
    let t = Instant::now();
    page.find("#pick-files")
        .await
        .send_keys(big.to_str().expect("path"))
        .await
        .expect("choosing the file");
    loop {
        let t = page.texts("#uploads li.summary").await;
        if t.iter().any(|s| s.starts_with("1 uploaded")) {
            break;
        }
        assert!(
            !t.iter().any(|s| s.contains("1 failed")),
            "the upload failed: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let via_page = t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak_page = sampler.join().unwrap_or(f64::NAN);
    // The same request the page makes, from curl: what the browser adds.
    let t = Instant::now();
    sh(&format!(
        "curl -sf -o /dev/null -T {} -H 'Authorization: {bearer}' http://{web}/r/big/f/curl.bin",
        copy.display()
    ));
    let via_curl = t.elapsed().as_secs_f64();
    let t = Instant::now();
    sh(&format!(
        "cp {} {}/big/copy.bin",
        copy.display(),
        mnt_a.display()
    ));
    let cp_returned = t.elapsed().as_secs_f64();
    // Published: in the room's listing (what the page shows).
    wait_for(Duration::from_secs(600), "the copy in the room", || {
        (search(web, &auth, "copy.bin").0 == 1).then_some(())
    });
    let via_cp = t.elapsed().as_secs_f64();
    let mib = upload_mib as f64;
    say(&format!(
        "upload {upload_mib} MiB, until published: page (Chromium) {via_page:.2} s = {:.0} MiB/s; \
         the same PUT from curl {via_curl:.2} s = {:.0} MiB/s; `cp` into the mount {via_cp:.2} s \
         = {:.0} MiB/s (cp returned after {cp_returned:.2} s) (page/cp time {:.2}); the node's \
         resident memory {before:.0} MiB before the page's upload, at most {peak_page:.0} MiB \
         during it",
        mib / via_page,
        mib / via_curl,
        mib / via_cp,
        via_page / via_cp
    ));
    page.assert_no_errors("the upload").await;

    // Chat: page to page, and chat.log to chat.log.
    let b = Daemon::mount(
        &root.join("b"),
        &mnt_b,
        &[
            "--http",
            "127.0.0.1:0",
            "--name",
            "bob",
            "--peer",
            &a.peer(),
        ],
    );
    let web_b = b.web_addr();
    ok(&p2pfs(a.data_dir(), &["room", "create", "chat"]));
    let ticket = ok(&p2pfs(a.data_dir(), &["room", "ticket", "chat"]));
    ok(&p2pfs(b.data_dir(), &["room", "join", ticket.trim()]));
    let log_b = mnt_b.join("chat/chat.log");
    wait_for(
        Duration::from_secs(30),
        "the room on the second node",
        || log_b.exists().then_some(()),
    );
    let login_b = ok(&p2pfs(b.data_dir(), &["web"])).trim().to_string();
    let mut other = Browser::start(&root.join("downloads-b")).await;
    other.goto(&login_b).await;
    other.goto(&format!("http://{web_b}/r/chat/chat")).await;
    page.goto(&format!("http://{web}/r/chat/chat")).await;
    other
        .client
        .execute(
            "window.__seen = {}; new MutationObserver((ms) => { for (const m of ms) for (const n of \
             m.addedNodes) { const k = n.textContent.split(': ').pop(); if (!(k in window.__seen)) \
             window.__seen[k] = Date.now(); } }).observe(document.querySelector('#chat'), \
             { childList: true });",
            vec![],
        )
        .await
        .expect("watching the chat");
    let mut page_ms = Vec::new();
    for i in 0..chats {
        let text = format!("page-message-{i}");
        let sent = page
            .client
            .execute(
                "const t = Date.now(); document.querySelector('#say').value = arguments[0]; \
                 document.querySelector('#post button').click(); return t;",
                vec![serde_json::json!(text)],
            )
            .await
            .expect("posting")
            .as_f64()
            .expect("a time");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen = other
                .client
                .execute(
                    "return window.__seen[arguments[0]] || 0;",
                    vec![serde_json::json!(text)],
                )
                .await
                .expect("reading the chat")
                .as_f64()
                .unwrap_or(0.0);
            if seen > 0.0 {
                page_ms.push(seen - sent);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{text} never reached the other page"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let log_a = mnt_a.join("chat/chat.log");
    let mut mount_ms = Vec::new();
    for i in 0..chats {
        let text = format!("mount-message-{i}");
        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_a)
            .expect("chat.log");
        f.write_all(format!("{text}\n").as_bytes())
            .expect("posting");
        drop(f);
        wait_for(
            Duration::from_secs(30),
            "the line in the other chat.log",
            || {
                std::fs::read_to_string(&log_b)
                    .ok()?
                    .contains(&text)
                    .then_some(())
            },
        );
        mount_ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    say(&format!(
        "chat, {chats} lines: page to page median {:.1} ms (p90 {:.1}); chat.log to chat.log \
         (mount to mount) median {:.1} ms (p90 {:.1}); page/mount {:.2}",
        median(page_ms.clone()),
        pct(page_ms.clone(), 0.9),
        median(mount_ms.clone()),
        pct(mount_ms.clone(), 0.9),
        median(page_ms) / median(mount_ms)
    ));
    page.assert_no_errors("the chat").await;
    other.assert_no_errors("the chat").await;
    page.close().await;
    other.close().await;
}
