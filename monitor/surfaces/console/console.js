// bakemon web console: the bakes list (live over /v1/bakes/stream) and the bake page (HTML
// rendered by the server, refetched when the bake's document changes). No framework, no build.
"use strict";
(() => {
  const TOKEN_KEY = "bakemon.token";
  const ORDER = { HALT: 0, INCONCLUSIVE: 1, PENDING: 2, PROMOTE: 3, CANCELLED: 4 };
  const ICONS = { PROMOTE: "✓", HALT: "✕", INCONCLUSIVE: "?", PENDING: "…", CANCELLED: "⊘" };
  const PAGE_MIN_INTERVAL_MS = 1000;
  const main = document.getElementById("main");
  const conn = document.getElementById("conn");
  const state = {
    docs: new Map(), filters: { status: "", service: "", q: "" }, stream: null,
    listBody: null, listCounts: null, serviceSelect: null, bakeId: null,
    pageBusy: false, pageAgain: false, pageAt: 0, renderQueued: false,
  };

  // -- helpers ----------------------------------------------------------------------------
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") el.className = v; else el.setAttribute(k, v === true ? "" : String(v));
    }
    for (const kid of kids.flat()) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  }
  const fmt = (n) => (typeof n === "number" ? n.toLocaleString("en-US") : "–");
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  function ago(iso) {
    const t = Date.parse(iso || "");
    if (Number.isNaN(t)) return "–";
    const s = Math.max(0, (Date.now() - t) / 1000);
    if (s < 60) return `${Math.round(s)}s ago`;
    if (s < 3600) return `${Math.round(s / 60)}m ago`;
    if (s < 86400) return `${(s / 3600).toFixed(1)}h ago`;
    return `${(s / 86400).toFixed(1)}d ago`;
  }
  function badge(status) {
    const s = String(status || "");
    return h("span", { class: `badge s-${s.toLowerCase()}` },
      h("span", { class: "icon", "aria-hidden": "true" }, ICONS[s] || "•"), s);
  }
  function reasonOf(d) {
    if (d.decision && d.decision.reason) return d.decision.reason;
    return (d.reasons && d.reasons[0]) || "";
  }
  function setConn(text, ok) {
    conn.textContent = text;
    conn.classList.toggle("down", !ok);
  }

  // -- the API, with the token when the monitor protects reads ----------------------------
  class AuthNeeded extends Error {}
  function headers() {
    const t = sessionStorage.getItem(TOKEN_KEY);
    return t ? { Authorization: `Bearer ${t}` } : {};
  }
  async function get(path) {
    const r = await fetch(path, { headers: headers(), cache: "no-store" });
    if (r.status === 401 || r.status === 403) throw new AuthNeeded(String(r.status));
    if (!r.ok) {
      let msg = `HTTP ${r.status}`;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      throw new Error(msg);
    }
    return r.text();
  }
  function showLogin(status) {
    if (state.stream) state.stream.abort();
    state.listBody = null;
    setConn("token needed", false);
    const input = h("input", { type: "password", autocomplete: "current-password", id: "token", required: true });
    const form = h("form", { class: "card login" },
      h("h2", {}, "This monitor needs a token"),
      h("p", { class: "meta" }, "Reads are protected. The token is kept in this tab only (sessionStorage)."),
      status === "403" ? h("p", { class: "error" }, "That token was refused.") : null,
      h("label", { for: "token" }, "API token"), input, h("button", { type: "submit" }, "Open the console"));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      start();
    });
    main.replaceChildren(form);
    input.focus();
  }

  // -- the document stream (fetch, so the Authorization header can be sent) -------------
  function onEvent(block) {
    let event = "message";
    const data = [];
    for (const line of block.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (!data.length) return;
    let obj;
    try { obj = JSON.parse(data.join("\n")); } catch (e) { return; }
    if (event === "bake") state.docs.set(obj.id, obj);
    else if (event === "removed") state.docs.delete(obj.id);
    else return;
    queueRender();
    if (state.bakeId === obj.id) loadPage();
  }
  async function follow(ctl) {
    let delay = 1000;
    while (!ctl.signal.aborted) {
      try {
        const r = await fetch("/v1/bakes/stream?view=summary", { headers: headers(), signal: ctl.signal, cache: "no-store" });
        if (r.status === 401 || r.status === 403) { showLogin(String(r.status)); return; }
        if (!r.ok || !r.body) throw new Error(`stream HTTP ${r.status}`);
        state.docs.clear();
        setConn("● live", true);
        delay = 1000;
        const reader = r.body.getReader();
        const dec = new TextDecoder();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += dec.decode(value, { stream: true });
          let i;
          while ((i = buf.indexOf("\n\n")) >= 0) {
            onEvent(buf.slice(0, i));
            buf = buf.slice(i + 2);
          }
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
      }
      setConn("reconnecting…", false);
      await sleep(delay);
      delay = Math.min(delay * 2, 15000);
    }
  }

  // -- the bakes list ----------------------------------------------------------------------
  function queueRender() {
    if (state.renderQueued) return;
    state.renderQueued = true;
    // a timer, not requestAnimationFrame: a tab in the background keeps its list current
    setTimeout(() => { state.renderQueued = false; renderRows(); }, 50);
  }
  function matches(d) {
    const f = state.filters;
    if (f.status && d.status !== f.status) return false;
    if (f.service && d.service !== f.service) return false;
    if (!f.q) return true;
    const text = [d.id, d.service, reasonOf(d), ...((d.canary || {}).versions || [])].join(" ").toLowerCase();
    return text.includes(f.q.toLowerCase());
  }
  function row(d) {
    const p = d.progress || {};
    const frac = Math.max(0, Math.min(1, Number(p.fraction) || 0));
    const need = p.estimated_requests_to_decision;
    const canary = ((d.canary || {}).versions || []).join(", ");
    const baseline = ((d.baseline || {}).versions || []).join(", ");
    const age = d.decided_at ? `decided ${ago(d.decided_at)}` : `started ${ago(d.created_at)}`;
    return h("tr", { "data-bake": d.id, "data-status": d.status },
      h("td", { "data-label": "status" }, badge(d.status), d.stale ? h("span", { class: "warn-inline" }, " stale") : null),
      h("td", { "data-label": "bake" }, h("a", { href: `#/bakes/${encodeURIComponent(d.id)}` }, d.id), h("div", { class: "meta" }, d.service)),
      h("td", { "data-label": "canary vs baseline" }, `${canary || "–"} vs ${baseline || "–"}`),
      h("td", { "data-label": "progress" },
        h("span", { class: "mini-progress", role: "progressbar", "aria-valuenow": Math.round(frac * 100), "aria-valuemin": 0, "aria-valuemax": 100 },
          h("span", { style: `width:${(frac * 100).toFixed(1)}%` })),
        ` ${fmt(p.tested_canary_requests)} / ${fmt(p.min_canary_requests)}`,
        !d.decided && need ? h("div", { class: "meta" }, `~${fmt(need)} more to decide`) : null),
      h("td", { "data-label": "age" }, age),
      h("td", { "data-label": "reason", class: "reason-cell" }, reasonOf(d)));
  }
  function renderRows() {
    if (!state.listBody) return;
    const all = [...state.docs.values()];
    const services = [...new Set(all.map((d) => d.service))].sort();
    const sel = state.serviceSelect;
    const have = [...sel.options].slice(1).map((o) => o.value);
    if (have.join("\n") !== services.join("\n")) {
      sel.replaceChildren(h("option", { value: "" }, "all services"), ...services.map((s) => h("option", { value: s }, s)));
      sel.value = state.filters.service;
    }
    const shown = all.filter(matches).sort((a, b) =>
      (ORDER[a.status] ?? 9) - (ORDER[b.status] ?? 9) || String(b.created_at).localeCompare(String(a.created_at)) || a.id.localeCompare(b.id));
    state.listBody.replaceChildren(...(shown.length ? shown.map(row)
      : [h("tr", {}, h("td", { colspan: 6, class: "empty" }, all.length ? "No bake matches these filters." : "No bakes yet: create one with POST /v1/bakes."))]));
    const by = {};
    for (const d of all) by[d.status] = (by[d.status] || 0) + 1;
    state.listCounts.textContent = `${all.length} bakes` + Object.keys(ORDER).filter((s) => by[s]).map((s) => ` · ${by[s]} ${s}`).join("");
  }
  function showList() {
    state.bakeId = null;
    document.title = "bakemon: bakes";
    const f = state.filters;
    const status = h("select", { id: "f-status" }, h("option", { value: "" }, "all statuses"),
      ...Object.keys(ORDER).map((s) => h("option", { value: s }, s)));
    status.value = f.status;
    const service = h("select", { id: "f-service" }, h("option", { value: "" }, "all services"));
    const text = h("input", { id: "f-text", type: "search", placeholder: "bake, service, version, reason", value: f.q });
    status.addEventListener("change", () => { f.status = status.value; renderRows(); });
    service.addEventListener("change", () => { f.service = service.value; renderRows(); });
    text.addEventListener("input", () => { f.q = text.value; renderRows(); });
    state.serviceSelect = service;
    state.listCounts = h("span", { class: "counts", role: "status" });
    state.listBody = h("tbody", {});
    const head = ["status", "bake", "canary vs baseline", "progress (tested / min)", "age", "reason"];
    main.replaceChildren(
      h("div", { class: "filters" },
        h("label", { for: "f-status" }, "status", status), h("label", { for: "f-service" }, "service", service),
        h("label", { for: "f-text" }, "search", text), state.listCounts),
      h("div", { class: "card" }, h("div", { class: "scroll" },
        h("table", { class: "bakes" }, h("thead", {}, h("tr", {}, ...head.map((x) => h("th", { scope: "col" }, x)))), state.listBody))));
    renderRows();
  }

  // -- the bake page -----------------------------------------------------------------------
  async function loadPage() {
    if (state.pageBusy) { state.pageAgain = true; return; }
    const id = state.bakeId;
    if (id === null) return;
    state.pageBusy = true;
    try {
      const wait = state.pageAt + PAGE_MIN_INTERVAL_MS - Date.now();
      if (wait > 0) await sleep(wait);
      state.pageAt = Date.now();
      const html = await get(`/console/fragment/bakes/${encodeURIComponent(id)}`);
      if (state.bakeId !== id) return;
      const box = h("div", { id: "bake-page" });
      box.innerHTML = html;  // the server escapes every value it renders
      const stamp = h("p", { class: "hint", id: "updated" }, `updated ${new Date().toLocaleTimeString()} · live`);
      main.replaceChildren(h("p", {}, h("a", { href: "#/" }, "← all bakes")), box, stamp);
    } catch (e) {
      if (e instanceof AuthNeeded) { showLogin(e.message); return; }
      if (state.bakeId === id) main.replaceChildren(h("p", { class: "error" }, `Cannot show bake “${id}”: ${e.message}`), h("p", {}, h("a", { href: "#/" }, "← all bakes")));
    } finally {
      state.pageBusy = false;
      if (state.pageAgain) { state.pageAgain = false; loadPage(); }
    }
  }
  function showBake(id) {
    state.bakeId = id;
    state.listBody = null;
    document.title = `bakemon: ${id}`;
    main.replaceChildren(h("p", { class: "empty" }, `Loading ${id}…`));
    state.pageAt = 0;
    loadPage();
  }

  // -- routing -----------------------------------------------------------------------------
  function route() {
    const m = location.hash.match(/^#\/bakes\/(.+)$/);
    if (m) showBake(decodeURIComponent(m[1])); else showList();
  }
  function start() {
    if (state.stream) state.stream.abort();
    state.stream = new AbortController();
    follow(state.stream);
    route();
  }
  window.addEventListener("hashchange", route);
  setInterval(() => { if (state.listBody) renderRows(); else if (state.bakeId !== null) loadPage(); }, 30000);
  start();
})();
