"""The report page's inline stylesheet and script (no file, font or image is fetched).

The script never turns data into markup: every string from a record reaches the page
through ``textContent`` or ``createTextNode``, and the only URLs it follows are trace
links the server already limited to http(s).
"""

from __future__ import annotations

__all__ = ["CSS", "SCRIPT"]

CSS = """
:root { color-scheme: light; --muted: #5f6368; --line: #dadce0; --ok: #1e7e45;
  --bad: #c62828; --soft: #f1f3f4; }
* { box-sizing: border-box; }
body { margin: 0; padding: 0 24px 48px; font: 14px/1.45 system-ui, -apple-system,
  "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #202124; background: #fff; }
h1 { font-size: 22px; margin: 16px 0 2px; }
h2 { font-size: 18px; margin: 28px 0 8px; padding-bottom: 4px;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 16px 0 6px; }
.meta { color: var(--muted); margin: 0 0 8px; }
.chips span { display: inline-block; margin: 0 8px 6px 0; padding: 1px 10px;
  border-radius: 12px; background: var(--soft); }
.toolbar { position: sticky; top: 0; z-index: 2; background: #fff; padding: 8px 0;
  border-bottom: 1px solid var(--line); display: flex; flex-wrap: wrap; gap: 6px 10px;
  align-items: center; }
.toolbar input, .toolbar select, .toolbar button { font: inherit; padding: 3px 6px;
  border: 1px solid #bdc1c6; border-radius: 4px; background: #fff; }
.toolbar input[type=search] { flex: 1 1 220px; min-width: 160px; }
.toolbar input[type=datetime-local] { width: 13.5em; }
.toolbar label { color: var(--muted); white-space: nowrap; }
#shown { color: var(--muted); margin: 6px 0; }
details.run { border: 1px solid var(--line); border-radius: 6px; margin: 6px 0;
  scroll-margin-top: 120px; }
details.run[open] { border-color: #9aa0a6; }
details.run > summary { cursor: pointer; padding: 6px 10px; list-style-position: outside;
  margin-left: 14px; }
summary .rid { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  overflow-wrap: anywhere; }
summary .goal { color: var(--muted); margin-left: 6px; overflow-wrap: anywhere; }
summary .facts { display: block; color: var(--muted); font-size: 13px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-weight: 600;
  font-size: 12px; margin-right: 6px; background: var(--soft); }
.status-completed { color: var(--ok); } .status-failed { color: var(--bad); }
.status-stuck { color: #a66f00; } .status-cancelled { color: #8e24aa; }
.status-running { color: #00838f; }
.runbody { padding: 4px 12px 12px; border-top: 1px solid var(--line); }
.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 2px 12px;
  margin: 6px 0; }
.kv dt { color: var(--muted); } .kv dd { margin: 0; overflow-wrap: anywhere; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; max-height: 12em;
  overflow: auto; font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
  background: #f8f9fa; padding: 4px 6px; border-radius: 4px; }
.decision { border-left: 4px solid #9aa0a6; margin: 12px 0; padding: 2px 0 4px 10px; }
.decision.ok { border-left-color: #2f9e5b; } .decision.bad { border-left-color: #d64545; }
.dhead { font-weight: 600; overflow-wrap: anywhere; }
.dhead .node, .dhead .dtype, .dfacts { color: var(--muted); font-weight: 400; }
.dfacts { font-size: 13px; }
.track { position: relative; height: 6px; background: var(--soft); border-radius: 3px;
  margin: 4px 0 6px; max-width: 480px; }
.track span { position: absolute; top: 0; height: 6px; min-width: 2px; border-radius: 3px;
  background: #9aa0a6; }
.ok .track span { background: #2f9e5b; } .bad .track span { background: #d64545; }
.options { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr));
  gap: 8px; margin: 6px 0; }
.option { border: 1px solid var(--line); border-radius: 6px; padding: 6px 8px;
  overflow-wrap: anywhere; }
.option.chosen { border: 2px solid #3867d6; background: #f4f7fe; }
.ohead { display: flex; justify-content: space-between; gap: 6px; font-weight: 600; }
.conf { font-variant-numeric: tabular-nums; font-weight: 400; color: var(--muted); }
.cbar { height: 4px; background: var(--soft); border-radius: 2px; margin: 3px 0; }
.cbar span { display: block; height: 4px; background: #3867d6; border-radius: 2px; }
.option p { margin: 2px 0; }
.option ul { margin: 2px 0; padding: 0; list-style: none; }
.pros li { color: var(--ok); } .cons li { color: var(--bad); }
.why, .outcome { margin: 4px 0; overflow-wrap: anywhere; }
.why b, .outcome b { color: var(--muted); font-weight: 600; margin-right: 4px; }
.problems li { overflow-wrap: anywhere; }
.sev-critical, .sev-error { color: var(--bad); font-weight: 600; }
.sev-warning { color: #a66f00; font-weight: 600; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { padding: 3px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
th { font-weight: 600; background: #f8f9fa; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.scroll { max-width: 100%; overflow-x: auto; }
a { color: #1a5fb4; text-decoration: none; } a:hover { text-decoration: underline; }
.charts { display: flex; flex-wrap: wrap; gap: 28px; align-items: flex-start; }
.charts figure { margin: 0; max-width: 100%; }
.charts svg { max-width: 100%; height: auto; }
figcaption { font-weight: 600; margin-bottom: 4px; }
svg text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
  fill: #3c4043; }
@media (max-width: 640px) { body { padding: 0 10px 32px; } }
"""

# One function per concern; `el` is the only way text reaches the page (textContent).
SCRIPT = r"""
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("dt-data").textContent);
  var list = document.getElementById("run-list");
  var items = Array.prototype.slice.call(list.querySelectorAll("details.run"));
  var haystacks = [];

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null && text !== "") { node.textContent = String(text); }
    return node;
  }
  function add(parent, child) { parent.appendChild(child); return child; }
  function ms(v) {
    if (typeof v !== "number") { return "—"; }
    return v < 1000 ? Math.round(v) + " ms" : (v / 1000).toFixed(1) + " s";
  }
  function num(v) { return typeof v === "number" ? v.toLocaleString("en-US") : "—"; }
  function pair(dl, key, value, pre) {
    if (value === undefined || value === null || value === "") { return; }
    add(dl, el("dt", "", key));
    var dd = add(dl, el("dd"));
    if (pre) { add(dd, el("pre", "", value)); } else { dd.textContent = String(value); }
  }
  function clamp01(v) {
    return typeof v === "number" && isFinite(v) ? Math.max(0, Math.min(1, v)) : 0;
  }

  function optionCard(opt, chosen) {
    var card = el("div", "option" + (opt[0] === chosen ? " chosen" : ""));
    var head = add(card, el("div", "ohead"));
    add(head, el("span", "oid", (opt[0] === chosen ? "▶ " : "") + opt[0]));
    var given = typeof opt[2] === "number";
    var conf = add(head, el("span", "conf", given ? opt[2].toFixed(2) : "—"));
    conf.title = given ? "confidence the agent gave" : "the agent gave no confidence";
    var bar = add(card, el("div", "cbar"));
    add(bar, el("span")).style.width = (clamp01(opt[2]) * 100).toFixed(1) + "%";
    if (opt[1]) { add(card, el("p", "odesc", opt[1])); }
    if (opt[3].length) {
      var pros = add(card, el("ul", "pros"));
      opt[3].forEach(function (p) { add(pros, el("li", "", "+ " + p)); });
    }
    if (opt[4].length) {
      var cons = add(card, el("ul", "cons"));
      opt[4].forEach(function (c) { add(cons, el("li", "", "− " + c)); });
    }
    return card;
  }

  function evaluationTable(rows) {
    var wrap = el("div", "scroll");
    var table = add(wrap, el("table", "evals"));
    var head = add(add(table, el("thead")), el("tr"));
    ["evaluator", "score", "label", "explanation"].forEach(function (h) {
      add(head, el("th", "", h));
    });
    var body = add(table, el("tbody"));
    rows.forEach(function (r) {
      var tr = add(body, el("tr"));
      r.forEach(function (cell) {
        add(tr, el("td", "", typeof cell === "number" ? cell.toFixed(2) : cell));
      });
    });
    return wrap;
  }

  function decisionBlock(d, runEnd, problems) {
    var out = d.out;
    var state = !out ? "" : (out.ok ? " ok" : " bad");
    var box = el("section", "decision" + state);
    var head = add(box, el("div", "dhead"));
    add(head, el("span", "", d.id + " "));
    add(head, el("span", "node", "[" + d.node + "] "));
    add(head, el("span", "", d.intent));
    add(head, el("span", "dtype", " · " + d.type));
    if (d.chosen) { add(head, el("span", "", " → " + d.chosen)); }
    var facts = [!out ? (d.paused ? "paused, resumable" : "no outcome")
      : (out.ok ? "✓ succeeded" : "✗ failed")];
    if (d.svc) { facts.push("in " + d.svc); }
    if (out) { facts.push(ms(out.ms), num(out.tok) + " tokens"); }
    var line = add(box, el("div", "dfacts", facts.join(" · ")));
    if (d.span) {
      line.appendChild(document.createTextNode(" · span "));
      if (d.url && /^https?:\/\//i.test(d.url)) {
        var link = add(line, el("a", "", d.span));
        link.href = d.url;
        link.rel = "noopener noreferrer";
        link.target = "_blank";
      } else {
        line.appendChild(document.createTextNode(d.span));
      }
    }
    if (typeof d.at === "number" && typeof runEnd === "number" && runEnd > 0) {
      var track = add(box, el("div", "track"));
      var span = add(track, el("span"));
      var end = typeof d.end === "number" ? d.end : runEnd;
      span.style.left = (clamp01(d.at / runEnd) * 100).toFixed(2) + "%";
      span.style.width = (clamp01((end - d.at) / runEnd) * 100).toFixed(2) + "%";
      track.title = "from " + ms(d.at) + " to " + ms(end) + " of the run";
    }
    if (d.opts.length) {
      var grid = add(box, el("div", "options"));
      d.opts.forEach(function (o) { add(grid, optionCard(o, d.chosen)); });
    }
    if (d.why) {
      var why = add(box, el("p", "why"));
      add(why, el("b", "", "why"));
      why.appendChild(document.createTextNode(d.why));
    }
    if (out) {
      var p = add(box, el("p", "outcome"));
      add(p, el("b", "", "outcome"));
      var said = [out.ok ? "success" : "failure", out.err, out.sum].filter(Boolean);
      p.appendChild(document.createTextNode(said.join(" · ")));
      if (out.res) { add(box, el("pre", "", out.res)); }
    }
    var dl = el("dl", "kv");
    pair(dl, "constraints", d.cons.join(", "));
    pair(dl, "input", d.ctx, true);
    if (dl.childNodes.length) { add(box, dl); }
    var mine = problems.filter(function (pr) { return pr[2] === d.id; });
    if (mine.length) { add(box, problemList(mine)); }
    if (d.ev.length) {
      add(box, el("div", "dfacts", "evaluations"));
      add(box, evaluationTable(d.ev));
    }
    return box;
  }

  function problemList(problems) {
    var ul = el("ul", "problems");
    problems.forEach(function (pr) {
      var li = add(ul, el("li"));
      add(li, el("span", "sev-" + pr[0], pr[0]));
      li.appendChild(document.createTextNode(" " + pr[1] + (pr[2] ? " (" + pr[2] + ")" : "")));
      if (pr[3]) { li.appendChild(document.createTextNode(" · cause: " + pr[3])); }
      if (pr[4]) { li.appendChild(document.createTextNode(" · fix: " + pr[4])); }
    });
    return ul;
  }

  function renderRun(item) {
    if (item.getAttribute("data-rendered")) { return; }
    item.setAttribute("data-rendered", "1");
    var run = DATA[Number(item.getAttribute("data-i"))];
    var body = add(item, el("div", "runbody"));
    var dl = add(body, el("dl", "kv"));
    pair(dl, "goal", run.goal);
    pair(dl, "story", run.story);
    pair(dl, "input", run["in"], true);
    pair(dl, "output", run.out, true);
    pair(dl, "paused", run.paused ? "yes: resumable (the graph stopped at an interrupt)" : "");
    pair(dl, "thread", run.thread);
    pair(dl, "resumed from", run.resumed);
    if (run.trace) {
      add(dl, el("dt", "", "trace"));
      var dd = add(dl, el("dd"));
      if (run.url && /^https?:\/\//i.test(run.url)) {
        var a = add(dd, el("a", "", run.trace));
        a.href = run.url;
        a.rel = "noopener noreferrer";
        a.target = "_blank";
      } else {
        dd.textContent = run.trace;
      }
    }
    var ids = run.d.map(function (d) { return d.id; });
    var loose = run.p.filter(function (pr) { return !pr[2] || ids.indexOf(pr[2]) < 0; });
    if (loose.length) { add(body, el("h3", "", "Problems")); add(body, problemList(loose)); }
    add(body, el("h3", "", run.d.length + (run.d.length === 1 ? " decision" : " decisions")));
    run.d.forEach(function (d) { add(body, decisionBlock(d, run.end, run.p)); });
  }

  function haystack(i) {
    if (haystacks[i] === undefined) {
      var parts = [items[i].querySelector("summary").textContent];
      (function walk(v) {
        if (typeof v === "string") { parts.push(v); }
        else if (Array.isArray(v)) { v.forEach(walk); }
        else if (v && typeof v === "object") {
          Object.keys(v).forEach(function (k) { walk(v[k]); });
        }
      })(DATA[Number(items[i].getAttribute("data-i"))]);
      haystacks[i] = parts.join("\n").toLowerCase();
    }
    return haystacks[i];
  }

  var q = document.getElementById("q");
  var fStatus = document.getElementById("f-status");
  var fGoal = document.getElementById("f-goal");
  var fNode = document.getElementById("f-node");
  var fFrom = document.getElementById("f-from");
  var fTo = document.getElementById("f-to");
  var sortBy = document.getElementById("sort");
  var shown = document.getElementById("shown");

  function apply() {
    var text = q.value.trim().toLowerCase();
    var from = fFrom.value ? Date.parse(fFrom.value) : NaN;
    var to = fTo.value ? Date.parse(fTo.value) : NaN;
    var count = 0;
    items.forEach(function (item, i) {
      var ok = (!fStatus.value || item.getAttribute("data-status") === fStatus.value) &&
        (!fGoal.value || item.getAttribute("data-goal") === fGoal.value) &&
        (!fNode.value || item.getAttribute("data-nodes").split("\n").indexOf(fNode.value) >= 0);
      var start = Number(item.getAttribute("data-start"));
      if (ok && !isNaN(from)) { ok = start >= from; }
      if (ok && !isNaN(to)) { ok = start <= to; }
      if (ok && text) { ok = haystack(i).indexOf(text) >= 0; }
      item.hidden = !ok;
      if (ok) { count += 1; }
    });
    var noun = items.length === 1 ? " run" : " runs";
    shown.textContent = "Showing " + count + " of " + items.length + noun;
  }

  function sort() {
    var parts = sortBy.value.split(":");
    var key = "data-" + parts[0];
    var sign = parts[1] === "asc" ? 1 : -1;
    var ordered = items.slice().sort(function (a, b) {
      var d = Number(a.getAttribute(key)) - Number(b.getAttribute(key));
      if (d !== 0) { return sign * d; }
      return Number(a.getAttribute("data-i")) - Number(b.getAttribute("data-i"));
    });
    var frag = document.createDocumentFragment();
    ordered.forEach(function (item) { frag.appendChild(item); });
    list.appendChild(frag);
  }

  // #run-3 opens run 3 and scrolls to it; #open=run-3 opens it where the page stands.
  function openFromHash() {
    var id = decodeURIComponent(location.hash.slice(1)).replace(/^open=/, "");
    var target = id ? document.getElementById(id) : null;
    if (target && target.classList.contains("run")) {
      renderRun(target);
      target.open = true;
    }
  }

  var timer = null;
  q.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 120); });
  [fStatus, fGoal, fNode, fFrom, fTo].forEach(function (f) {
    f.addEventListener("change", apply);
  });
  sortBy.addEventListener("change", sort);
  list.addEventListener("toggle", function (event) {
    if (event.target.open) { renderRun(event.target); }
  }, true);
  document.getElementById("open-shown").addEventListener("click", function () {
    items.forEach(function (item) { if (!item.hidden) { renderRun(item); item.open = true; } });
  });
  document.getElementById("close-all").addEventListener("click", function () {
    items.forEach(function (item) { item.open = false; });
  });
  window.addEventListener("hashchange", openFromHash);
  apply();
  openFromHash();
  document.documentElement.setAttribute("data-ready", String(Math.round(performance.now())));
  requestAnimationFrame(function () {
    setTimeout(function () {
      document.documentElement.setAttribute("data-ready-ms", String(Math.round(performance.now())));
    }, 0);
  });
})();
"""
