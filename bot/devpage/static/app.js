// The dev page: polls /dev/state, renders the channel, sends commands, clicks and modal submissions.
(function () {
  "use strict";
  const { render, mrkdwn, esc } = window.Blocks;
  const POLL_MS = 700;
  const $ = (id) => document.getElementById(id);
  const state = { config: null, user: null, lastJson: "", modalKey: "", collapsed: new Set(), busy: false,
    drafts: {} };  // thread ts -> what the person is typing in its reply box (kept across re-renders)

  function ctx() {
    const users = {};
    for (const u of state.config.users) users[u.id] = u;
    users[state.config.bot.id] = { real_name: state.config.bot.name };
    return { users };
  }

  async function api(path, body) {
    const opts = body === undefined ? {} : {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ user: state.user, ...body }),
    };
    const resp = await fetch(path, opts);
    const data = await resp.json().catch(() => ({}));
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    return data;
  }

  function author(item) {
    if (item.kind === "message" && item.bot_id) return { name: state.config.bot.name, bot: true };
    if (item.kind === "message" || item.kind === "in_channel") {
      const u = ctx().users[item.user];
      return { name: u ? u.real_name : item.user || "unknown", bot: item.kind === "in_channel" };
    }
    return { name: state.config.bot.name, bot: true };
  }

  function time(at) {
    const d = new Date(at * 1000);
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" });
  }

  function body(item) {
    if (item.kind === "command") return `<div class="command-echo"><code>${esc(item.text)}</code></div>`;
    let html = item.blocks && item.blocks.length ? render(item.blocks, ctx()) : mrkdwn(item.text, ctx());
    for (const f of item.files || []) {
      html += `<details class="file" data-testid="file" data-file-id="${esc(f.id)}"><summary>📄 ${esc(f.title || f.name)}</summary>` +
        `<pre class="code-block file-content" data-file-id="${esc(f.id)}">loading…</pre></details>`;
    }
    return html;
  }

  function messageHtml(item, testid) {
    const a = author(item);
    const initials = a.name.split(/\s+/).map((w) => w[0]).join("").slice(0, 2).toUpperCase();
    const privateNote = item.private
      ? `<div class="only-you" data-testid="only-you">👁 Only visible to you</div>` : "";
    const edited = item.edited ? ' <span class="muted">(edited)</span>' : "";
    const attrs = `data-testid="${testid}" data-id="${esc(item.id)}" data-kind="${esc(item.kind)}"` +
      (item.ts ? ` data-ts="${esc(item.ts)}"` : "") + (item.private ? ' data-private="1"' : "");
    return `<div class="message${item.private ? " private" : ""}" ${attrs}>` +
      `<div class="avatar${a.bot ? " bot" : ""}">${esc(a.bot ? "MG" : initials)}</div>` +
      `<div class="content">${privateNote}<div class="meta"><span class="author">${esc(a.name)}</span>` +
      (a.bot ? '<span class="app-badge">APP</span>' : "") +
      `<span class="time">${time(item.at)}</span>${edited}</div>` +
      `<div class="body" data-testid="message-body">${body(item)}</div>${reactionsHtml(item)}</div>` +
      (item.ts && !item.private && item.kind === "message"
        ? `<button type="button" class="react" data-testid="react-pin" data-ts="${esc(item.ts)}" ` +
          `title="React with 📌 (pins it into an incident's timeline)">📌</button>` : "") + "</div>";
  }

  function reactionsHtml(item) {
    const list = item.reactions || [];
    if (!list.length) return "";
    const { EMOJI } = window.Blocks;
    return '<div class="reactions">' + list.map((r) =>
      `<span class="reaction" data-testid="reaction" data-name="${esc(r.name)}" title="${esc((r.users || []).join(", "))}">` +
      `${EMOJI[r.name] || ":" + esc(r.name) + ":"} ${r.count}</span>`).join("") + "</div>";
  }

  function rootHtml(item) {
    const testid = item.private ? "ephemeral" : "message";
    let html = messageHtml(item, testid);
    const replies = item.replies || [];
    if (replies.length) {
      const open = !state.collapsed.has(item.ts);
      const count = replies.filter((r) => !r.private).length;
      html += `<div class="thread" data-testid="thread" data-thread-ts="${esc(item.ts)}">` +
        `<button type="button" class="thread-toggle" data-testid="thread-toggle" data-thread-ts="${esc(item.ts)}">` +
        `${open ? "▾" : "▸"} ${count} repl${count === 1 ? "y" : "ies"}</button>` +
        (open ? replies.map((r) => messageHtml(r, r.private ? "ephemeral" : "thread-reply")).join("") : "") +
        (open ? replyBox(item.ts) : "") + "</div>";
    }
    return `<div class="root" data-testid="root">${html}</div>`;
  }

  function replyBox(ts) {
    return `<form class="reply-form" data-testid="reply-form" data-thread-ts="${esc(ts)}" autocomplete="off">` +
      `<input type="text" class="reply-input" data-testid="reply-input" data-thread-ts="${esc(ts)}" ` +
      `placeholder="Reply in thread…" value="${esc(state.drafts[ts] || "")}" aria-label="Reply in thread">` +
      '<button type="submit" class="btn" data-testid="reply-send">Reply</button></form>';
  }

  function renderFeed(snapshot) {
    const feed = $("feed");
    const atBottom = feed.scrollHeight - feed.scrollTop - feed.clientHeight < 80;
    const open = new Set([...feed.querySelectorAll("details.file[open]")].map((d) => d.dataset.fileId));
    const focused = document.activeElement && document.activeElement.matches(".reply-input")
      ? document.activeElement.dataset.threadTs : null;
    feed.innerHTML = snapshot.timeline.length ? snapshot.timeline.map(rootHtml).join("")
      : '<div class="empty" data-testid="empty">No messages yet. Type <code>/migrate help</code> or ' +
        '<code>/migrate plan staging pending</code> below.</div>';
    for (const d of feed.querySelectorAll("details.file")) if (open.has(d.dataset.fileId)) d.open = true;
    if (focused) {  // the feed was re-rendered under someone typing a reply: give the box back its focus
      const box = feed.querySelector(`.reply-input[data-thread-ts="${CSS.escape(focused)}"]`);
      if (box) { box.focus(); box.setSelectionRange(box.value.length, box.value.length); }
    }
    feed.dataset.user = snapshot.user;  // what is shown is this person's view (tests wait on it)
    if (atBottom) feed.scrollTop = feed.scrollHeight;
  }

  function renderModal(view) {
    const backdrop = $("modal-backdrop");
    const key = view ? `${view.id}:${view.hash}` : "";
    if (key === state.modalKey) return;
    state.modalKey = key;
    if (!view) { backdrop.hidden = true; $("modal").innerHTML = ""; return; }
    const title = view.title ? view.title.text : "";
    $("modal").innerHTML =
      `<div class="modal-head"><span class="modal-title" data-testid="modal-title">${esc(title)}</span></div>` +
      `<form id="modal-form" data-view-id="${esc(view.id)}" data-callback-id="${esc(view.callback_id || "")}">` +
      `<div class="modal-body">${render(view.blocks, ctx())}` +
      '<div class="field-error general" data-testid="modal-error" data-block-id="" hidden></div></div>' +
      '<div class="modal-foot">' +
      `<button type="button" class="btn" data-testid="modal-cancel">${esc(view.close ? view.close.text : "Cancel")}</button>` +
      (view.submit ? `<button type="submit" class="btn primary" data-testid="modal-submit">${esc(view.submit.text)}</button>` : "") +
      "</div></form>";
    backdrop.hidden = false;
    const first = $("modal").querySelector("[data-testid=modal-input]");
    if (first) first.focus();
  }

  async function refresh() {
    if (!state.user) return;
    try {
      const snapshot = await api(`/dev/state?user=${encodeURIComponent(state.user)}`);
      if (snapshot.user !== state.user) return;  // an answer for the person acting before a switch
      const json = JSON.stringify(snapshot.timeline);
      if (json !== state.lastJson) { state.lastJson = json; renderFeed(snapshot); }
      renderModal(snapshot.modal);
      $("status").textContent = "live";
      $("status").className = "status ok";
    } catch (err) {
      $("status").textContent = `offline: ${err.message}`;
      $("status").className = "status bad";
    }
  }

  function setUser(id) {
    state.user = id;
    state.lastJson = "";
    delete $("feed").dataset.user;
    state.modalKey = "-";
    localStorage.setItem("guardian-dev-user", id);
    const u = ctx().users[id];
    $("user-role").textContent = u ? `${u.real_name} · ${u.role}` : id;
    $("user-switcher").value = id;
    refresh();
  }

  async function send(event) {
    event.preventDefault();
    const input = $("composer");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    try {
      await api(text.startsWith("/") ? "/dev/command" : "/dev/message", { text });
    } catch (err) {
      alert(`Not sent: ${err.message}`);
    }
    refresh();
  }

  async function click(btn) {
    const root = btn.closest("[data-testid=message], [data-testid=thread-reply], [data-testid=ephemeral]");
    const body = { action_id: btn.dataset.actionId, value: btn.dataset.value || null };
    if (root.dataset.private) body.private_id = root.dataset.id; else body.message_ts = root.dataset.ts;
    btn.disabled = true;
    try { await api("/dev/action", body); } catch (err) { alert(`Click not sent: ${err.message}`); }
    btn.disabled = false;
    refresh();
  }

  async function submitModal(event) {
    event.preventDefault();
    const form = $("modal-form");
    const values = {};
    for (const el of form.querySelectorAll("[data-testid=modal-input]")) {
      values[el.dataset.blockId] = { [el.dataset.actionId]: { value: el.value } };
    }
    for (const e of form.querySelectorAll("[data-testid=modal-error]")) { e.hidden = true; e.textContent = ""; }
    const submit = form.querySelector("[data-testid=modal-submit]");
    submit.disabled = true;
    try {
      const answer = await api("/dev/view/submit", { view_id: form.dataset.viewId, values });
      for (const [blockId, message] of Object.entries(answer.errors || {})) {
        const slot = form.querySelector(`[data-testid=modal-error][data-block-id="${CSS.escape(blockId)}"]`) ||
          form.querySelector("[data-testid=modal-error].general");
        slot.textContent = message;
        slot.hidden = false;
      }
      if (answer.ok) { state.modalKey = "-"; }
    } catch (err) {
      const slot = form.querySelector("[data-testid=modal-error].general");
      slot.textContent = err.message; slot.hidden = false;
    }
    submit.disabled = false;
    refresh();
  }

  async function closeModal() {
    const form = $("modal-form");
    if (form) await api("/dev/view/close", { view_id: form.dataset.viewId }).catch(() => {});
    state.modalKey = "-";
    refresh();
  }

  async function loadFile(details) {
    const pre = details.querySelector(".file-content");
    if (pre.dataset.loaded) return;
    const resp = await fetch(`/dev/files/${encodeURIComponent(details.dataset.fileId)}`);
    pre.textContent = resp.ok ? await resp.text() : `could not load the file (HTTP ${resp.status})`;
    pre.dataset.loaded = "1";
  }

  async function start() {
    state.config = await api("/dev/config");
    document.title = `${state.config.title} · #${state.config.channel.name}`;
    $("channel-name").textContent = `# ${state.config.channel.name}`;
    $("channel-title").textContent = state.config.channel.name;
    $("composer").placeholder = `Message #${state.config.channel.name} — try /migrate plan staging pending`;
    const switcher = $("user-switcher");
    switcher.innerHTML = state.config.users.map((u) =>
      `<option value="${esc(u.id)}" data-testid="user-option">${esc(u.real_name)} (${esc(u.role)})</option>`).join("");
    switcher.addEventListener("change", () => setUser(switcher.value));
    $("composer-form").addEventListener("submit", send);
    $("feed").addEventListener("input", (event) => {
      if (event.target.matches(".reply-input")) state.drafts[event.target.dataset.threadTs] = event.target.value;
    });
    $("feed").addEventListener("submit", async (event) => {
      const form = event.target.closest("[data-testid=reply-form]");
      if (!form) return;
      event.preventDefault();
      const ts = form.dataset.threadTs;
      const text = (state.drafts[ts] || form.querySelector(".reply-input").value || "").trim();
      if (!text) return;
      delete state.drafts[ts];
      form.querySelector(".reply-input").value = "";
      try { await api("/dev/message", { text, thread_ts: ts }); } catch (err) { alert(`Not sent: ${err.message}`); }
      state.lastJson = ""; refresh();
    });
    $("feed").addEventListener("click", async (event) => {
      const pin = event.target.closest("[data-testid=react-pin]");
      if (pin) {
        try { await api("/dev/react", { ts: pin.dataset.ts, name: "pushpin" }); } catch (err) { alert(`Not sent: ${err.message}`); }
        refresh(); return;
      }
      const btn = event.target.closest("[data-testid=button]");
      if (btn) { click(btn); return; }
      const toggle = event.target.closest("[data-testid=thread-toggle]");
      if (toggle) {
        const ts = toggle.dataset.threadTs;
        if (state.collapsed.has(ts)) state.collapsed.delete(ts); else state.collapsed.add(ts);
        state.lastJson = ""; refresh();
      }
    });
    $("feed").addEventListener("toggle", (event) => {
      if (event.target.matches("details.file") && event.target.open) loadFile(event.target);
    }, true);
    $("modal").addEventListener("submit", submitModal);
    $("modal").addEventListener("click", (event) => {
      if (event.target.closest("[data-testid=modal-cancel]")) closeModal();
    });
    const wanted = new URLSearchParams(location.search).get("user") || localStorage.getItem("guardian-dev-user");
    const ids = state.config.users.map((u) => u.id);
    setUser(ids.includes(wanted) ? wanted : ids[0]);
    setInterval(refresh, POLL_MS);
  }

  start().catch((err) => { $("status").textContent = `failed to start: ${err.message}`; });
})();
