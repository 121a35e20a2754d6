// p2pfs web page: the live parts. Plain JavaScript, no build step, no
// other origin. Every page works without it; this adds live chat,
// uploads with progress, the live search and listing updates.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);

  // Encodes a room path one segment at a time (keeping the slashes).
  function encodePath(path) {
    return path.split("/").map(encodeURIComponent).join("/");
  }

  async function send(method, url, body) {
    const init = { method, headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(url, init);
    if (!r.ok) {
      throw new Error((await r.text()).trim() || r.statusText);
    }
    return r;
  }

  // The login form keeps the fragment (an invite's ticket) of the page
  // that asked for it.
  function login() {
    const next = $("#login-next");
    if (next && location.hash) {
      next.value = next.value + location.hash;
    }
  }

  // The join page: the ticket from the link's fragment, never sent to a
  // server by the browser; joining takes a click.
  function join() {
    const ticket = $("#join-ticket");
    if (!ticket || !location.hash) {
      return;
    }
    ticket.value = decodeURIComponent(location.hash.slice(1));
    const hint = $("#join-hint");
    if (hint) {
      hint.textContent = "You were invited to a room. Join it?";
    }
    const button = $("#join-button");
    if (button) {
      button.focus();
    }
  }

  // The chat: lines as they arrive, and posting without leaving the page.
  function chat() {
    const list = $("#chat");
    if (!list) {
      return;
    }
    const scroll = () => { list.scrollTop = list.scrollHeight; };
    scroll();
    const events = new EventSource(list.dataset.events);
    events.addEventListener("chat", (e) => {
      const li = document.createElement("li");
      li.textContent = e.data;
      list.appendChild(li);
      scroll();
    });
    const form = $("#post");
    const say = $("#say");
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const text = say.value;
      if (!text.trim()) {
        return;
      }
      say.disabled = true;
      try {
        await send("POST", form.action, { text });
        say.value = "";
        form.classList.remove("failed");
      } catch (err) {
        form.classList.add("failed");
        say.title = err.message;
      } finally {
        say.disabled = false;
        say.focus();
      }
    });
  }

  // A room's files: more pages on demand, the first page again when the
  // room changes, removal, and uploads.
  function room() {
    const table = $("table.listing");
    if (!table) {
      return;
    }
    const roomName = table.dataset.room;
    const dir = table.dataset.dir;
    const body = $("#listing");
    const base = "/r/" + encodeURIComponent(roomName) + "/";
    const firstPage = !new URLSearchParams(location.search).has("after");

    body.addEventListener("click", async (e) => {
      const more = e.target.closest("a.next");
      if (more && more.dataset.fragment) {
        e.preventDefault();
        const r = await fetch(more.dataset.fragment);
        if (r.ok) {
          more.closest("tr").remove();
          body.insertAdjacentHTML("beforeend", await r.text());
        }
        return;
      }
      const del = e.target.closest("button.delete");
      if (del) {
        if (!confirm("Remove " + del.dataset.path + " from the room?")) {
          return;
        }
        try {
          await send("DELETE", base + "f/" + encodePath(del.dataset.path));
          del.closest("tr").remove();
        } catch (err) {
          alert(err.message);
        }
      }
    });

    let pending = null;
    async function reload() {
      if (!firstPage) {
        return;
      }
      const r = await fetch(base + "list?dir=" + encodeURIComponent(dir));
      if (r.ok) {
        body.innerHTML = await r.text();
        const empty = $("p.empty");
        if (empty && body.children.length) {
          empty.remove();
        }
      }
    }
    const events = new EventSource(base + "events?chat=false");
    events.addEventListener("tree", () => {
      clearTimeout(pending);
      pending = setTimeout(reload, 250);
    });

    uploads(base, dir, reload);
  }

  function uploads(base, dir, reload) {
    const drop = $("#drop");
    const list = $("#uploads");
    if (!drop || !list) {
      return;
    }
    const queue = [];
    let running = 0;
    let done = 0;
    let failed = 0;
    const summary = document.createElement("li");
    summary.className = "summary";

    function add(file, rel) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = rel;
      const bar = document.createElement("progress");
      bar.max = file.size || 1;
      bar.value = 0;
      const state = document.createElement("span");
      state.className = "state";
      state.textContent = "waiting";
      li.append(name, bar, state);
      list.appendChild(li);
      queue.push({ file, rel, li, bar, state });
      pump();
    }

    function finish(item, ok, message) {
      running -= 1;
      item.li.classList.add(ok ? "ok" : "failed");
      item.state.textContent = message;
      if (ok) {
        done += 1;
      } else {
        failed += 1;
      }
      summary.textContent = done + " uploaded, " + failed + " failed";
      list.appendChild(summary);
      if (running === 0 && queue.length === 0) {
        reload();
      }
      pump();
    }

    function pump() {
      while (running < 3 && queue.length) {
        const item = queue.shift();
        running += 1;
        const path = dir ? dir + "/" + item.rel : item.rel;
        const xhr = new XMLHttpRequest();
        xhr.open("PUT", base + "f/" + encodePath(path));
        xhr.setRequestHeader("Accept", "application/json");
        xhr.setRequestHeader("X-P2pfs-Mtime", String(item.file.lastModified || Date.now()));
        item.state.textContent = "0%";
        xhr.upload.onprogress = (e) => {
          item.bar.value = e.loaded;
          if (e.lengthComputable && e.total) {
            item.state.textContent = Math.floor((e.loaded * 100) / e.total) + "%";
          }
        };
        xhr.onload = () => {
          if (xhr.status >= 200 && xhr.status < 300) {
            item.bar.value = item.bar.max;
            finish(item, true, "published");
          } else {
            finish(item, false, (xhr.responseText || xhr.statusText).trim());
          }
        };
        xhr.onerror = () => finish(item, false, "the connection failed");
        xhr.send(item.file);
      }
    }

    function walk(entry, prefix) {
      if (entry.isFile) {
        entry.file((f) => add(f, prefix + entry.name), () => {});
      } else if (entry.isDirectory) {
        const reader = entry.createReader();
        const more = () => reader.readEntries((entries) => {
          if (!entries.length) {
            return;
          }
          entries.forEach((e) => walk(e, prefix + entry.name + "/"));
          more();
        }, () => {});
        more();
      }
    }

    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const items = e.dataTransfer.items;
      if (items && items.length && items[0].webkitGetAsEntry) {
        for (const item of items) {
          const entry = item.webkitGetAsEntry();
          if (entry) {
            walk(entry, "");
          }
        }
      } else {
        for (const f of e.dataTransfer.files) {
          add(f, f.name);
        }
      }
    });
    for (const id of ["#pick-files", "#pick-folder"]) {
      const input = $(id);
      if (!input) {
        continue;
      }
      input.addEventListener("change", () => {
        for (const f of input.files) {
          add(f, f.webkitRelativePath || f.name);
        }
        input.value = "";
      });
    }
  }

  // The search as one types.
  function search() {
    const input = $("#search");
    const results = $("#results");
    if (!input || !results) {
      return;
    }
    let pending = null;
    let asked = 0;
    input.addEventListener("input", () => {
      clearTimeout(pending);
      pending = setTimeout(async () => {
        const n = ++asked;
        const q = input.value;
        const r = await fetch("/search?rows=true&q=" + encodeURIComponent(q));
        if (r.ok && n === asked) {
          results.outerHTML = await r.text();
          history.replaceState(null, "", "/search?q=" + encodeURIComponent(q));
        }
      }, 120);
    });
  }

  function start() {
    login();
    join();
    chat();
    room();
    search();
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
