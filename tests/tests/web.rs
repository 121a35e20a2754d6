//! The web page in a real browser (headless Chromium through WebDriver),
//! on two nodes: a daemon and a mount. One page creates a room and uploads
//! a folder; the other joins by the invite link and sees the folder, in
//! its page and its mount; chat goes from page to page live; the search
//! finds a file; a download through the browser is byte-identical. Plain
//! HTTP requests check what a browser would not do: ranges, the gateway's
//! privacy rule, a forged `Host`, no token, a write from another site. Any
//! error a page logs fails the test. Screenshots of every page go to
//! `$P2PFS_SCREENSHOTS` (`docs/screenshots` in the repository).

use std::{path::Path, time::Duration};

use p2pfs_tests::{
    Daemon, blake3_file,
    browser::{self, Browser, PAGE_WAIT, request},
    ok, p2pfs, random_file, temp_dir, wait_for,
};

async fn wait_url(b: &Browser, suffix: &str) {
    let deadline = std::time::Instant::now() + PAGE_WAIT;
    loop {
        let url = b.client.current_url().await.expect("the page's URL");
        if url.as_str().ends_with(suffix) {
            return;
        }
        if std::time::Instant::now() > deadline {
            let page = b.client.source().await.unwrap_or_default();
            panic!("the page stayed at {url}, not …{suffix}: {page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for a downloaded file to be complete in `dir`.
fn downloaded(dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    wait_for(PAGE_WAIT, "the browser's download", || {
        let partial = std::fs::read_dir(dir)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".crdownload"));
        (path.exists() && !partial).then(|| path.clone())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_share_a_room() {
    assert!(
        browser::available(),
        "chromium and chromedriver are needed (scripts/test installs them)"
    );
    let dir = temp_dir();
    let root = dir.path();
    let shots =
        std::env::var_os("P2PFS_SCREENSHOTS").map_or_else(|| root.join("screenshots"), Into::into);
    let a = Daemon::start(
        &root.join("a"),
        &["--no-lan", "--http", "127.0.0.1:0", "--name", "alice"],
    );
    let b = Daemon::mount(
        &root.join("b"),
        &root.join("mnt"),
        &[
            "--http",
            "127.0.0.1:0",
            "--peer",
            &a.peer(),
            "--name",
            "bob",
        ],
    );
    let (a_web, b_web) = (a.web_addr(), b.web_addr());
    let a_login = ok(&p2pfs(a.data_dir(), &["web"])).trim().to_string();
    let b_login = ok(&p2pfs(b.data_dir(), &["web"])).trim().to_string();
    assert!(
        a_login.starts_with(&format!("http://{a_web}/login?token=")),
        "{a_login}"
    );

    // Alice logs in and creates a room from her page.
    let mut pa = Browser::start(&root.join("downloads-a")).await;
    pa.goto(&format!("http://{a_web}/")).await;
    pa.find("input[name=token]").await;
    pa.screenshot(&shots, "login").await;
    pa.goto(&a_login).await;
    pa.find("#create-room input[name=name]")
        .await
        .send_keys("team")
        .await
        .expect("typing a room name");
    pa.find("#create-room button")
        .await
        .click()
        .await
        .expect("create");
    wait_url(&pa, "/r/team/").await;
    let invite = pa
        .find("#invite")
        .await
        .prop("value")
        .await
        .expect("the invite link")
        .expect("a value");
    assert!(
        invite.starts_with("http://127.0.0.1:7474/join#"),
        "{invite}"
    );
    let ticket = invite.rsplit_once('#').expect("a fragment").1.to_string();
    pa.assert_no_errors("creating a room").await;

    // Bob opens the invite link on his own page and joins with a click.
    let mut pb = Browser::start(&root.join("downloads-b")).await;
    pb.goto(&b_login).await;
    pb.goto(&format!("http://{b_web}/join#{ticket}")).await;
    let filled = pb
        .find("#join-ticket")
        .await
        .prop("value")
        .await
        .expect("the ticket field");
    assert_eq!(filled.as_deref(), Some(ticket.as_str()));
    pb.screenshot(&shots, "join").await;
    pb.find("#join-button").await.click().await.expect("join");
    wait_url(&pb, "/r/team/").await;
    pb.assert_no_errors("joining by the invite link").await;

    // Alice uploads a folder through her page.
    let folder = root.join("photos");
    std::fs::create_dir_all(folder.join("deep")).expect("a folder");
    random_file(&folder.join("big one.bin"), 3_000_000, 1);
    std::fs::write(folder.join("été 1.txt"), "summer\n").expect("a file");
    random_file(&folder.join("deep/x.dat"), 40_000, 2);
    pa.find("#pick-folder")
        .await
        .send_keys(folder.to_str().expect("a path"))
        .await
        .expect("choosing a folder");
    pa.wait_texts("#uploads li.summary", None, "the uploads to finish", |t| {
        t.iter().any(|s| s == "3 uploaded, 0 failed")
    })
    .await;
    pa.wait_texts(
        "#listing a.folder",
        None,
        "the folder in the listing",
        |t| t.iter().any(|s| s == "photos/"),
    )
    .await;
    pa.assert_no_errors("uploading a folder").await;

    // Each file succeeds or fails on its own, and says why.
    let loose = root.join("loose");
    std::fs::create_dir_all(&loose).expect("a folder");
    std::fs::write(loose.join("notes.txt"), "notes\n").expect("a file");
    std::fs::write(loose.join("chat.log"), "not the chat\n").expect("a file");
    let pick = pa.find("#pick-files").await;
    let both = format!(
        "{}\n{}",
        loose.join("notes.txt").display(),
        loose.join("chat.log").display()
    );
    pick.send_keys(&both).await.expect("choosing files");
    pa.wait_texts(
        "#uploads li.summary",
        None,
        "the second uploads to finish",
        |t| t.iter().any(|s| s == "4 uploaded, 1 failed"),
    )
    .await;
    let failed = pa.texts("#uploads li.failed").await;
    assert!(
        failed.len() == 1 && failed[0].starts_with("chat.log") && failed[0].contains("chat"),
        "{failed:?}"
    );
    pa.screenshot(&shots, "room").await;
    // The refused upload's answer (400) is the only failure the page saw.
    let errors = pa.take_errors().await;
    assert!(
        errors.iter().all(|e| e.contains("status of 400")),
        "{errors:?}"
    );

    // The room's policy, from the page.
    let copies = pa.find("#copies input[name=copies]").await;
    copies.clear().await.expect("clearing");
    copies.send_keys("3").await.expect("typing");
    pa.find("#copies button").await.click().await.expect("set");
    wait_for(PAGE_WAIT, "the new policy", || {
        let out = p2pfs(a.data_dir(), &["room", "status", "team", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        (v["policy"] == serde_json::json!({ "Min": 3 })).then_some(())
    });

    // Bob sees it on his page and in his mount.
    pb.goto(&format!("http://{b_web}/r/team/?dir=photos")).await;
    pb.wait_texts(
        "#listing a.file",
        Some(Duration::from_secs(1)),
        "the folder on the other page",
        |t| t.iter().any(|s| s == "big one.bin") && t.iter().any(|s| s == "été 1.txt"),
    )
    .await;
    let in_mount = b.mountpoint().join("team/photos");
    for name in ["big one.bin", "été 1.txt", "deep/x.dat"] {
        let path = in_mount.join(name);
        wait_for(PAGE_WAIT, "the file in the mount", || {
            path.exists().then_some(())
        });
        assert_eq!(
            blake3_file(&path),
            blake3_file(&folder.join(name)),
            "{name}"
        );
    }

    // A download through the browser is the file, byte for byte.
    for link in pb.all("#listing a.file").await {
        if link.text().await.ok().as_deref() == Some("big one.bin") {
            link.click().await.expect("downloading");
        }
    }
    let got = downloaded(&pb.downloads, "big one.bin");
    assert_eq!(blake3_file(&got), blake3_file(&folder.join("big one.bin")));
    pb.assert_no_errors("downloading").await;

    // Chat goes from page to page as it is posted.
    pa.goto(&format!("http://{a_web}/r/team/chat")).await;
    pb.goto(&format!("http://{b_web}/r/team/chat")).await;
    pa.find("#say")
        .await
        .send_keys("hello from a page")
        .await
        .expect("typing");
    pa.find("#post button").await.click().await.expect("send");
    pb.wait_texts("#chat li", None, "the line on the other page", |t| {
        t.iter().any(|s| s.ends_with("alice: hello from a page"))
    })
    .await;
    let chat_log = b.mountpoint().join("team/chat.log");
    wait_for(PAGE_WAIT, "the line in the mount's chat.log", || {
        std::fs::read_to_string(&chat_log)
            .ok()?
            .contains("alice: hello from a page")
            .then_some(())
    });
    pb.screenshot(&shots, "chat").await;
    pa.assert_no_errors("chatting").await;
    pb.assert_no_errors("chatting").await;

    // The search finds a file whatever the case.
    pb.goto(&format!("http://{b_web}/search")).await;
    pb.find("#search")
        .await
        .send_keys("ÉTÉ")
        .await
        .expect("typing");
    pb.wait_texts("#results a.hit", None, "a search result", |t| {
        t.iter().any(|s| s == "photos/été 1.txt")
    })
    .await;
    pb.screenshot(&shots, "search").await;

    // The other pages show what they should.
    pb.goto(&format!("http://{b_web}/r/team/members")).await;
    pb.wait_texts(
        "table.members td",
        Some(Duration::from_secs(1)),
        "both members",
        |t| t.iter().any(|s| s.starts_with("alice")) && t.iter().any(|s| s.starts_with("bob")),
    )
    .await;
    pb.screenshot(&shots, "members").await;
    pb.goto(&format!("http://{b_web}/status")).await;
    pb.find("#node-id").await;
    pb.screenshot(&shots, "status").await;
    pb.goto(&format!("http://{b_web}/")).await;
    pb.find("a.room").await;
    pb.screenshot(&shots, "rooms").await;
    pa.assert_no_errors("the other pages").await;
    pb.assert_no_errors("the other pages").await;
    pa.close().await;
    pb.close().await;

    // What a browser would not send.
    let host = format!("{b_web}");
    let bearer = format!("Bearer {}", b.web_token());
    let file = "/r/team/f/photos/big%20one.bin";
    let with_token = [("Host", host.as_str()), ("Authorization", bearer.as_str())];
    let r = request(
        b_web,
        "GET",
        file,
        &[with_token[0], with_token[1], ("Range", "bytes=100-199")],
        b"",
    );
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 100-199/3000000"));
    let whole = std::fs::read(folder.join("big one.bin")).expect("the file");
    assert_eq!(r.body, whole[100..200]);
    assert!(
        r.header("content-disposition")
            .is_some_and(|v| v.starts_with("attachment"))
    );
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'none'; sandbox")
    );
    // A folder as one archive, the files in it whole.
    let r = request(b_web, "GET", "/r/team/archive?dir=photos", &with_token, b"");
    assert_eq!(
        (r.status, r.header("content-type")),
        (200, Some("application/x-tar"))
    );
    let tarball = root.join("photos.tar");
    std::fs::write(&tarball, &r.body).expect("the archive");
    let out = root.join("untarred");
    std::fs::create_dir_all(&out).expect("a folder");
    let untar = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&tarball)
        .arg("-C")
        .arg(&out)
        .status()
        .expect("tar");
    assert!(untar.success());
    for name in ["big one.bin", "été 1.txt", "deep/x.dat"] {
        assert_eq!(
            blake3_file(&out.join("photos").join(name)),
            blake3_file(&folder.join(name)),
            "{name} in the archive"
        );
    }
    // No token: the room's file is not served, and the page asks to log in.
    let r = request(b_web, "GET", file, &[("Host", host.as_str())], b"");
    assert_eq!(r.status, 401);
    // Another name for the address (DNS rebinding): refused, token or not.
    let r = request(
        b_web,
        "GET",
        file,
        &[("Host", "evil.example:80"), with_token[1]],
        b"",
    );
    assert_eq!(r.status, 421);
    // A write with the cookie from another site: refused.
    let cookie = format!("p2pfs_session_{}={}", b_web.port(), b.web_token());
    let r = request(
        b_web,
        "POST",
        "/rooms",
        &[
            ("Host", host.as_str()),
            ("Cookie", cookie.as_str()),
            ("Origin", "http://evil.example"),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"name=evil",
    );
    assert_eq!(r.status, 403);
    assert!(!ok(&p2pfs(b.data_dir(), &["room", "list"])).contains("evil"));

    // The gateway: a room's file is not public, whoever asks.
    let room_hash = blake3_file(&folder.join("big one.bin"));
    let r = request(
        b_web,
        "GET",
        &format!("/blob/{room_hash}"),
        &[with_token[0], with_token[1]],
        b"",
    );
    assert_eq!(r.status, 404);
    // A public blob is, with its validators and ranges, and no token.
    let public = root.join("public.bin");
    random_file(&public, 100_000, 3);
    let hash = blake3_file(&public);
    ok(&p2pfs(
        b.data_dir(),
        &["add", public.to_str().expect("path")],
    ));
    let blob = format!("/blob/{hash}");
    let plain = [("Host", host.as_str())];
    let r = request(b_web, "GET", &blob, &plain, b"");
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&public).expect("the file"));
    assert_eq!(r.header("etag"), Some(format!("\"{hash}\"").as_str()));
    assert!(
        r.header("cache-control")
            .is_some_and(|v| v.contains("immutable"))
    );
    let r = request(b_web, "HEAD", &blob, &plain, b"");
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("100000"))
    );
    assert!(r.body.is_empty());
    let r = request(
        b_web,
        "GET",
        &blob,
        &[plain[0], ("Range", "bytes=-10")],
        b"",
    );
    assert_eq!((r.status, r.body.len()), (206, 10));
    let etag = format!("\"{hash}\"");
    let r = request(
        b_web,
        "GET",
        &blob,
        &[plain[0], ("If-None-Match", etag.as_str())],
        b"",
    );
    assert_eq!(r.status, 304);
    let r = request(
        b_web,
        "GET",
        &format!("{blob}?filename=report.pdf"),
        &plain,
        b"",
    );
    assert!(
        r.header("content-disposition")
            .is_some_and(|v| v.contains("report.pdf"))
    );
    let r = request(
        b_web,
        "GET",
        &format!("{blob}?format=bao&start=20000&end=30000"),
        &plain,
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body[..8], 100_000u64.to_le_bytes());
    // Bytes 16384..32768 (one chunk group) and the hashes proving them.
    assert!(
        r.body.len() > 8 + 16_384 && r.body.len() < 8 + 16_384 + 1024,
        "{}",
        r.body.len()
    );
    let r = request(b_web, "GET", "/blob/nothex", &plain, b"");
    assert_eq!(r.status, 400);

    // The owner's members page shows roles and removes a member: the
    // room's key changes, and B is told when it writes.
    let a_host = format!("{a_web}");
    let a_bearer = format!("Bearer {}", a.web_token());
    let a_origin = format!("http://{a_web}");
    let a_auth = [
        ("Host", a_host.as_str()),
        ("Authorization", a_bearer.as_str()),
    ];
    let r = request(a_web, "GET", "/r/team/members", &a_auth, b"");
    assert_eq!(r.status, 200);
    let page = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        page.contains("owner") && page.contains("can no longer see new files or messages"),
        "{page}"
    );
    let b_id = b.status()["node"].as_str().expect("an id").to_string();
    let form = format!("member={b_id}");
    let r = request(
        a_web,
        "POST",
        "/r/team/remove",
        &[
            a_auth[0],
            a_auth[1],
            ("Origin", a_origin.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept", "application/json"),
            ("Content-Length", &form.len().to_string()),
        ],
        form.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let err = wait_for(Duration::from_secs(60), "B to learn it was removed", || {
        let out = p2pfs(b.data_dir(), &["chat", "team", "still here?"]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).to_string())
    });
    assert!(err.contains("removed from room"), "{err}");
}
