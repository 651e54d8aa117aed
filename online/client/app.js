// The demo web client: rows of recommendations from the online API, events to the nearline
// tier, and the rows changing as the user state does. No framework and no build step.

const ENGAGED = new Set(["play", "rate", "add_to_list", "click"]);
const ID = /^[A-Za-z0-9_.:@\-]{1,128}$/;
const USER_KEY = "recsys.demo.user";
const ROW_K = 12;

const $ = (selector, root = document) => root.querySelector(selector);
const state = { user: null, page: null, item: null };

// ---- API -------------------------------------------------------------------------------

async function api(path, options = {}) {
  const response = await fetch(path, {
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    ...options,
  });
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const detail = body && body.detail ? JSON.stringify(body.detail) : response.statusText;
    throw new Error(`${options.method || "GET"} ${path}: ${response.status} ${detail}`);
  }
  return body;
}

const homeOf = (user) => api(`/v1/users/${encodeURIComponent(user)}/home?k=${ROW_K}`);

// ---- status line -----------------------------------------------------------------------

function say(message, isError = false) {
  const status = $("#status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

// ---- posters: generated SVG, no external images ----------------------------------------

function hash(text) {
  let h = 2166136261;
  for (const ch of text) h = Math.imul(h ^ ch.codePointAt(0), 16777619);
  return h >>> 0;
}

function escapeXml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function wrap(text, width, lines) {
  const words = text.split(/\s+/);
  const out = [""];
  for (const word of words) {
    const last = out.length - 1;
    if ((out[last] + " " + word).trim().length <= width) out[last] = (out[last] + " " + word).trim();
    else if (out.length < lines) out.push(word);
    else { out[last] = out[last].slice(0, width - 1) + "…"; break; }
  }
  return out;
}

function poster(item, size = "tile") {
  const h = hash(item.item_id + item.title);
  const hue = h % 360;
  const hue2 = (hue + 40 + (h >>> 9) % 80) % 360;
  const shape = (h >>> 3) % 3;
  const title = item.title.replace(/\s*\(\d{4}\)\s*$/, "");
  const lines = wrap(title, 14, 3);
  const genre = (item.genres && item.genres[0]) || "";
  const deco = [
    `<circle cx="120" cy="70" r="46" fill="hsl(${hue2} 80% 70% / .35)"/>`,
    `<rect x="18" y="24" width="84" height="84" rx="10" transform="rotate(${h % 40} 60 66)" fill="hsl(${hue2} 80% 70% / .3)"/>`,
    `<path d="M0 120 L75 30 L150 120 Z" fill="hsl(${hue2} 80% 70% / .3)"/>`,
  ][shape];
  const text = lines
    .map((line, i) => `<text x="12" y="${150 + i * 19}" class="pt">${escapeXml(line)}</text>`)
    .join("");
  const label = `Poster of ${item.title}${genre ? `, ${genre}` : ""}`;
  return `<svg class="poster poster-${size}" viewBox="0 0 150 225" role="img" aria-label="${escapeXml(label)}">
    <defs><linearGradient id="g${h}" x1="0" y1="0" x2="1" y2="1">
      <stop offset="0" stop-color="hsl(${hue} 65% 38%)"/><stop offset="1" stop-color="hsl(${hue2} 70% 18%)"/>
    </linearGradient></defs>
    <rect width="150" height="225" fill="url(#g${h})"/>${deco}${text}
    <text x="12" y="214" class="pg">${escapeXml(genre.toUpperCase())}${item.year ? " · " + item.year : ""}</text>
  </svg>`;
}

// ---- rendering -------------------------------------------------------------------------

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "html") node.innerHTML = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of [].concat(children)) if (child) node.append(child);
  return node;
}

function meta(item) {
  return [item.year, (item.genres || []).join(", ")].filter(Boolean).join(" · ");
}

function tile(item, row, context) {
  const open = () => { location.hash = `#/item/${encodeURIComponent(item.item_id)}`; };
  const rate = el("select", {
    "aria-label": `Rate ${item.title}`,
    onchange: (e) => { if (e.target.value) send("rate", item, Number(e.target.value), row); },
  }, [el("option", { value: "", text: "Rate" }),
      ...[5, 4, 3, 2, 1].map((v) => el("option", { value: v, text: "★".repeat(v) }))]);
  const article = el("article", {
    class: "tile", tabindex: "-1", "data-item-id": item.item_id,
    "aria-label": `${item.title}. ${item.reason || ""}`,
  }, [
    el("button", { class: "poster-button", type: "button", tabindex: "-1", "aria-label": `Open ${item.title}`, onclick: open, html: poster(item) }),
    el("h3", { class: "tile-title" }, el("a", { href: `#/item/${encodeURIComponent(item.item_id)}`, tabindex: "-1", text: item.title })),
    el("p", { class: "tile-meta", text: meta(item) }),
    item.reason ? el("p", { class: "reason", text: item.reason }) : null,
    el("div", { class: "actions" }, [
      el("button", { type: "button", tabindex: "-1", class: "play", onclick: () => send("play", item, null, row), text: "▶ Play", "aria-label": `Play ${item.title}` }),
      el("button", { type: "button", tabindex: "-1", onclick: () => send("add_to_list", item, null, row), text: "♥", "aria-label": `Like ${item.title}`, title: "Like (adds it to your list: an add_to_list event)" }),
      el("button", { type: "button", tabindex: "-1", onclick: () => send("skip", item, null, row), text: "Skip", "aria-label": `Skip ${item.title}` }),
      el("button", { type: "button", tabindex: "-1", class: "why", onclick: () => explain(item, row, context), text: "?", "aria-label": `Why ${item.title} is recommended`, title: "Why this recommendation" }),
      rate,
    ]),
  ]);
  return el("li", {}, article);
}

function rowSection(row, context) {
  const heading = `row-${row.id}-${Math.random().toString(36).slice(2, 8)}`;
  const facts = [
    row.sources.length ? `sources: ${row.sources.join(", ")}` : null,
    `bundle ${row.bundle}`,
    `${row.server_ms.toFixed(1)} ms on the server`,
    row.degraded ? `degraded: ${Object.keys(row.failures).join(", ")}` : null,
  ].filter(Boolean);
  const list = row.items.length
    ? el("ul", { class: "row-items", role: "list" }, row.items.map((item) => tile(item, row, context)))
    : el("p", { class: "empty", text: row.id === "because_you_watched"
        ? "Play, like or rate something: this row fills with its nearest neighbours within a second."
        : "Nothing here yet." });
  const section = el("section", { class: "row", "data-row": row.id, "aria-labelledby": heading }, [
    el("h2", { id: heading, text: row.title }),
    el("p", { class: "row-meta", text: facts.join(" · ") }),
    list,
  ]);
  const first = $(".tile", section);
  if (first) first.tabIndex = 0;
  return section;
}

function renderHome(page) {
  const rows = $("#rows");
  rows.replaceChildren(...page.rows.map((row) => rowSection(row, page)));
}

// ---- the home page ---------------------------------------------------------------------

async function loadHome() {
  if (!state.user) return;
  const page = await homeOf(state.user);
  state.page = page;
  if (!location.hash.startsWith("#/item/")) renderHome(page);
  const recent = page.recent.length ? `${page.recent.length} recent items` : "no history yet";
  say(`Browsing as ${page.user_id} (${recent}) · arm ${page.arm} · bundle ${page.bundle} · page ${page.server_ms.toFixed(1)} ms`);
  return page;
}

function setUser(user) {
  if (!ID.test(user)) { say(`"${user}" is not a valid user id (letters, digits, _.:@-)`, true); return; }
  state.user = user;
  localStorage.setItem(USER_KEY, user);
  $("#user-input").value = user;
  if (location.hash.startsWith("#/item/")) location.hash = "#/";
  loadHome().catch((err) => say(err.message, true));
}

// ---- events: nearline round trip -------------------------------------------------------

async function send(type, item, value, row) {
  if (!state.user) { say("Choose a user first", true); return; }
  const event = {
    event_id: crypto.randomUUID(),
    user_id: state.user,
    item_id: item.item_id,
    type,
    value: value ?? undefined,
    timestamp: Date.now() / 1000,
    context: { surface: "web", row: row ? row.id : "item", bundle: state.page ? state.page.bundle : "", arm: state.page ? state.page.arm : "" },
  };
  const sent = performance.now();
  try {
    await api("/v1/events", { method: "POST", body: JSON.stringify(event) });
  } catch (err) { say(err.message, true); return; }
  say(`${type} of ${item.title} sent; waiting for the nearline tier…`);
  // Engaged events enter the user state: poll until the state shows this item on top.
  const deadline = sent + 3000;
  let page = null;
  while (performance.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, ENGAGED.has(type) ? 120 : 400));
    page = await homeOf(state.user).catch(() => null);
    if (!page) continue;
    if (!ENGAGED.has(type) || page.recent[0] === item.item_id) break;
  }
  const seconds = ((performance.now() - sent) / 1000).toFixed(2);
  if (page) {
    state.page = page;
    if (location.hash.startsWith("#/item/")) location.hash = "#/";
    else renderHome(page);
    const seen = !ENGAGED.has(type) || page.recent[0] === item.item_id;
    say(seen
      ? `${type} of ${item.title}: rows updated ${seconds} s after the event (event log → nearline worker → user state)`
      : `${type} of ${item.title} sent, not in the user state after ${seconds} s: is the nearline worker running?`, !seen);
  }
}

// ---- the debug panel -------------------------------------------------------------------

function explain(item, row, context) {
  const facts = [
    ["item", `${item.title} (${item.item_id})`],
    ["reason", item.reason],
    ["sources", item.sources.join(", ")],
    ["score", String(item.score)],
    ["row", `${row.title} (${row.id})`],
    ["bundle", row.bundle],
    ["arm", context && context.arm ? context.arm : "-"],
    ["row server time", `${row.server_ms.toFixed(2)} ms`],
    ["degraded", row.degraded ? Object.entries(row.failures).map(([k, v]) => `${k}: ${v}`).join("; ") : "no"],
  ];
  const table = el("table", { class: "facts" }, facts.map(([k, v]) => el("tr", {}, [el("th", { scope: "row", text: k }), el("td", { text: v })])));
  const stages = Object.entries(row.timings_ms || {});
  const timings = stages.length
    ? el("table", { class: "timings" }, [
        el("caption", { text: "Stage timings of the request (ms)" }),
        ...stages.map(([stage, ms]) => el("tr", {}, [el("th", { scope: "row", text: stage }), el("td", { text: ms.toFixed(3) })])),
      ])
    : el("p", { text: "This row is computed without the ranking stages (no stage timings)." });
  $("#debug-body").replaceChildren(table, timings);
  $("#debug").showModal();
}

// ---- the item page ---------------------------------------------------------------------

async function showItem(itemId) {
  $("#home-view").hidden = true;
  $("#item-view").hidden = false;
  const detail = $("#item-detail");
  detail.replaceChildren(el("p", { text: "Loading…" }));
  try {
    const [item, similar] = await Promise.all([
      api(`/v1/items/${encodeURIComponent(itemId)}`),
      api(`/v1/items/${encodeURIComponent(itemId)}/similar?k=${ROW_K}`),
    ]);
    state.item = item;
    const self = { ...item, score: 0, sources: [], reason: "" };
    detail.replaceChildren(el("div", { class: "item-detail" }, [
      el("div", { html: poster(item, "large") }),
      el("div", {}, [
        el("h2", { id: "item-title", text: item.title }),
        el("p", { class: "tile-meta", text: meta(item) }),
        el("p", { text: `${item.n_interactions.toLocaleString()} interactions · popularity rank ${item.popularity_rank} · bundle ${item.bundle}` }),
        el("div", { class: "actions big" }, [
          el("button", { type: "button", class: "play", onclick: () => send("play", self, null, null), text: "▶ Play" }),
          el("button", { type: "button", onclick: () => send("add_to_list", self, null, null), text: "♥ Like" }),
          el("button", { type: "button", onclick: () => send("skip", self, null, null), text: "Skip" }),
        ]),
      ]),
    ]));
    const row = {
      id: "more_like_this", title: "More like this", bundle: similar.bundle, sources: ["similar"],
      server_ms: 0, degraded: false, failures: {}, timings_ms: {},
      items: similar.items.map((s) => ({ ...s, sources: ["similar"], reason: `similar to ${item.title}` })),
    };
    $("#item-rows").replaceChildren(rowSection(row, state.page));
    $("#item-title").focus?.();
  } catch (err) {
    detail.replaceChildren(el("p", { class: "error", text: err.message }));
  }
}

function route() {
  const match = location.hash.match(/^#\/item\/(.+)$/);
  if (match) { showItem(decodeURIComponent(match[1])); return; }
  $("#item-view").hidden = true;
  $("#home-view").hidden = false;
  if (state.page) renderHome(state.page);
  loadHome().catch((err) => say(err.message, true));
}

// ---- keyboard navigation within and across rows ----------------------------------------

function onKey(event) {
  const current = event.target.closest && event.target.closest(".tile");
  if (!current || event.target.tagName === "SELECT") return;
  const tiles = [...current.closest("ul").querySelectorAll(".tile")];
  const index = tiles.indexOf(current);
  const rows = [...document.querySelectorAll("main .row:not([hidden]) ul")].filter((ul) => ul.offsetParent !== null);
  const rowIndex = rows.indexOf(current.closest("ul"));
  let next = null;
  if (event.key === "ArrowRight") next = tiles[index + 1];
  else if (event.key === "ArrowLeft") next = tiles[index - 1];
  else if (event.key === "ArrowDown" || event.key === "ArrowUp") {
    const other = rows[rowIndex + (event.key === "ArrowDown" ? 1 : -1)];
    if (other) {
      const others = [...other.querySelectorAll(".tile")];
      next = others[Math.min(index, others.length - 1)];
    }
  } else if (event.target === current && event.key === "Enter") {
    location.hash = `#/item/${encodeURIComponent(current.dataset.itemId)}`;
  } else if (event.target === current && (event.key === "p" || event.key === "i")) {
    const button = $(event.key === "p" ? ".play" : ".why", current);
    button.click();
  } else return;
  event.preventDefault();
  if (next) {
    current.tabIndex = -1;
    next.tabIndex = 0;
    next.focus();
    next.scrollIntoView({ block: "nearest", inline: "nearest" });
  }
}

// Buttons inside a tile become reachable with Tab once the tile has focus.
function onFocus(event) {
  const current = event.target.closest && event.target.closest(".tile");
  document.querySelectorAll(".tile [tabindex='0']").forEach((node) => {
    if (!current || !current.contains(node)) node.tabIndex = -1;
  });
  if (current) current.querySelectorAll("button, a, select").forEach((node) => { node.tabIndex = 0; });
}

// ---- start -----------------------------------------------------------------------------

async function start() {
  $("#user-form").addEventListener("submit", (e) => { e.preventDefault(); setUser($("#user-input").value.trim()); });
  $("#new-visitor").addEventListener("click", () => setUser(`visitor-${crypto.randomUUID().slice(0, 8)}`));
  $("#back").addEventListener("click", () => { location.hash = "#/"; });
  $("#main").addEventListener("keydown", onKey);
  $("#main").addEventListener("focusin", onFocus);
  window.addEventListener("hashchange", route);
  try {
    const known = await api("/v1/users?limit=50");
    $("#known-users").replaceChildren(...known.users.map((u) => el("option", { value: u })));
    const params = new URLSearchParams(location.search);
    const user = params.get("user") || localStorage.getItem(USER_KEY) || known.users[0] || `visitor-${crypto.randomUUID().slice(0, 8)}`;
    state.user = user;
    $("#user-input").value = user;
    route();
  } catch (err) {
    say(`${err.message} (is a bundle loaded? run \`recsys offline run\`)`, true);
  }
}

start();
