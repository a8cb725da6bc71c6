/* Keyboard shortcuts for one-record-at-a-time pages (Review's focus mode; a judging page can reuse it).
   Knows: a page's legend element `.pk-legend[data-pk-keys]` carries its keymap as JSON,
   {"keys": {KEY: {"do": "click" | "focus", "target": CSS selector}}, "stamp": CSS selector}
   (studio/views/focus.py writes it); only legends on screen are bound. Does not know what the
   buttons do. Rules: a key never acts while the caret is in a text box (Escape there leaves the box);
   keys with Ctrl/Alt/Meta are left to the browser; after a click the next keys wait, in order,
   until the element at "stamp" shows a new data-pk-stamp (the server redrew the record), so a fast
   "a r" never sends the second decision with the first record's id. Loaded once, in the page head. */
(function () {
  if (window.palimpsestKeys) return;
  const WAIT_MS = 10000;  // give up waiting for a redraw after this long (an error, a lost connection)
  const queue = [];
  let busy = null;  // {stamp, since} while a click's answer is awaited

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
  function act(key) {
    const map = activeMap();
    const bind = map && map.keys[key];
    if (!bind) return;
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
    while (queue.length && !busy) act(queue.shift());
  }
  setInterval(pump, 40);

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
    queue.push(ev.key);
    pump();
  }, true);

  window.palimpsestKeys = {pending: function () { return queue.length + (busy ? 1 : 0); }};
})();
