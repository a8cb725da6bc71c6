/* Keyboard shortcuts for one-record-at-a-time pages (Review's focus mode; a judging page can reuse it).
   Knows: a page's legend element `.pk-legend[data-pk-keys]` carries its keymap as JSON,
   {"keys": {KEY: {"do": "click" | "focus", "target": CSS selector}}, "stamp": CSS selector}
   (studio/views/focus.py writes it); only legends on screen are bound. Does not know what the
   buttons do. Rules: a key never acts while the caret is in a text box (Escape there leaves the box);
   keys with Ctrl/Alt/Meta are left to the browser; after a click the next keys wait, in order,
   until the element at "stamp" shows a new data-pk-stamp (the server redrew the record), so a fast
   "a r" never sends the second decision with the first record's id. Loaded once, in the page head.
   Rows (the judging page's criteria): "score" clicks, inside the marked row of `target`, the choice
   whose value is the key, then marks the next row; "move" marks the row `step` places on (Shift
   turns it round). The mark goes back to the first row when the stamp changes (a new task); the
   marked row carries the class pk-on. Neither waits for a redraw: the choices are the page's own. */
(function () {
  if (window.palimpsestKeys) return;
  const WAIT_MS = 10000;  // give up waiting for a redraw after this long (an error, a lost connection)
  const queue = [];
  let busy = null;  // {stamp, since} while a click's answer is awaited
  let mark = {stamp: null, at: 0};  // the marked row of "score"/"move" keys, per stamp

  function typing(el) {
    if (!el || el === document.body) return false;
    if (el.isContentEditable) return true;
    const tag = el.tagName;
    if (tag === "TEXTAREA" || tag === "SELECT") return true;
    if (tag !== "INPUT") return false;
    return !["radio", "checkbox", "button", "submit", "reset", "range", "color", "file"].includes((el.type || "").toLowerCase());
  }
  function shown(el) { return !!el && el.getClientRects().length > 0; }
  function activeMap() {
    for (const el of document.querySelectorAll(".pk-legend[data-pk-keys]")) {
      if (!shown(el)) continue;
      try { return JSON.parse(el.getAttribute("data-pk-keys")); } catch (e) { return null; }
    }
    return null;
  }
  function stampOf(map) {
    const el = map && map.stamp ? document.querySelector(map.stamp) : null;
    return el ? el.getAttribute("data-pk-stamp") : null;
  }
  function rows(bind) { return Array.from(document.querySelectorAll(bind.target)).filter(shown); }
  function marked(map) {
    const s = stampOf(map);
    if (s !== mark.stamp) mark = {stamp: s, at: 0};
    return mark;
  }
  function paint() {
    const map = activeMap();
    if (!map) return;
    const bind = Object.values(map.keys).find(function (b) { return b.do === "score" || b.do === "move"; });
    if (!bind) return;
    const all = rows(bind), m = marked(map);
    if (all.length && m.at >= all.length) m.at = all.length - 1;
    all.forEach(function (el, i) {
      const on = i === m.at;
      el.classList.toggle("pk-on", on);
      el.style.boxShadow = on ? "inset 4px 0 0 #3b5bdb" : "";  // inline: a block's overflow clips an outline
      el.style.background = on ? "rgba(59, 91, 219, 0.07)" : "";
    });
  }
  function onRows(key, bind, map, shift) {
    const all = rows(bind), m = marked(map);
    if (!all.length) return;
    if (bind.do === "move") {
      const step = (bind.step || 1) * (shift ? -1 : 1);
      m.at = Math.min(all.length - 1, Math.max(0, m.at + step));
    } else {
      const row = all[Math.min(m.at, all.length - 1)];
      const choice = row.querySelector('input[value="' + key + '"]');
      if (choice && !choice.disabled) choice.click();
      m.at = Math.min(all.length - 1, m.at + 1);
    }
    paint();
  }
  function act(key, shift) {
    const map = activeMap();
    const bind = map && map.keys[key];
    if (!bind) return;
    if (bind.do === "score" || bind.do === "move") { onRows(key, bind, map, shift); return; }
    const el = Array.from(document.querySelectorAll(bind.target)).find(shown);
    if (!el) return;
    if (bind.do === "focus") { el.focus(); return; }
    if (el.disabled) return;
    busy = {stamp: stampOf(map), since: Date.now(), map: map};
    el.click();
  }
  function pump() {
    if (busy) {
      if (stampOf(busy.map) === busy.stamp && Date.now() - busy.since < WAIT_MS) return;
      busy = null;
    }
    while (queue.length && !busy) { const k = queue.shift(); act(k.key, k.shift); }
  }
  setInterval(function () { pump(); paint(); }, 40);

  document.addEventListener("keydown", function (ev) {
    if (ev.ctrlKey || ev.altKey || ev.metaKey || ev.isComposing) return;
    const map = activeMap();
    if (!map || !map.keys[ev.key]) return;
    if (typing(ev.target)) {
      if (ev.key === "Escape") { ev.target.blur(); ev.preventDefault(); ev.stopPropagation(); }
      return;
    }
    ev.preventDefault();
    ev.stopPropagation();
    if (ev.repeat) return;  // a held key acts once
    queue.push({key: ev.key, shift: ev.shiftKey});
    pump();
  }, true);

  window.palimpsestKeys = {pending: function () { return queue.length + (busy ? 1 : 0); }};
})();
