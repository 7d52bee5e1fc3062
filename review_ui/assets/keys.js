// gapfill's review keys: every key press reaches the server once, in order, or is refused on
// screen; none is silently dropped. Trusted code (it ships with gapfill); it never touches
// candidate text.
//
// Why not Streamlit's button shortcuts: a shortcut is bound to a button, so a key pressed while
// the page re-renders (no button yet, or a stale one) is lost or lands on whatever the server
// shows next. Here each press is queued in the browser with the id of the item on screen and a
// sequence number, and sent when the previous one is acknowledged and the script is idle. The
// server applies it only to that item, once per sequence number (review_ui/keys.py).
const SCROLL = { j: 1, ArrowDown: 1, k: -1, ArrowUp: -1 };
const RESEND_MS = 3000;
const HOSTLESS_MS = 5000;
// A click (a button, the sign-in form) asks the server for a run, and the page hears that the
// run started a moment later. A press sent in that moment would interrupt the run the click
// started, and Streamlit would drop the click (seen: a sign-in lost to a key pressed at once).
const SETTLE_MS = 400;
let lastClick = 0;

function scriptRunning() {
  if (Date.now() - lastClick < SETTLE_MS) return true;
  const app = document.querySelector('[data-testid="stApp"]');
  return app !== null && app.getAttribute("data-test-script-state") === "running";
}

function editable(target) {
  if (!target || !target.tagName) return false;
  const tag = target.tagName.toUpperCase();
  return tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable;
}

function hostShown(state) {
  const shown = state.host !== null && state.host !== undefined && state.host.isConnected;
  if (shown) state.hostSeenAt = Date.now();
  return shown;
}

// A review screen is on the page, or was a moment ago (between two runs, Streamlit may have
// taken the old screen's keyboard away before the new one's script has loaded).
function reviewScreen(state) {
  return hostShown(state) || Date.now() - (state.hostSeenAt || 0) < HOSTLESS_MS;
}

function scrollPane(step, toTop = false) {
  const pane = document.querySelector(".st-key-item-pane");
  if (pane === null) return;
  // The pane's own scroller: the element Streamlit gives the fixed height to.
  const scroller = [pane, ...pane.querySelectorAll("div")].find(
    (e) => e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== "visible",
  );
  if (toTop) (scroller || pane).scrollTop = 0;
  else (scroller || pane).scrollBy({ top: step * 80, behavior: "auto" });
}

function pump(state) {
  if (state.inflight !== null || state.queue.length === 0 || scriptRunning()) return;
  if (!hostShown(state)) {
    // The next screen's keyboard may still be loading (its script loads after the run ends):
    // hold the presses; only a screen that has had no keyboard for a while takes none.
    state.idleSince = state.idleSince || Date.now();
    if (Date.now() - state.idleSince > HOSTLESS_MS) state.queue = [];
    return;
  }
  state.idleSince = 0;
  state.inflight = state.queue.shift();
  state.sentAt = Date.now();
  state.send("key", state.inflight);
}

// A form sent (the sign-in): its field gives up the focus, so the keys pressed while the next
// screen is drawn reach the review keys, not a field that is about to disappear.
function leaveSentForm(target) {
  if (target && target.closest && target.closest('[data-testid="stForm"]')) {
    setTimeout(() => {
      const active = document.activeElement;
      if (active && active.closest && active.closest('[data-testid="stForm"]')) active.blur();
    }, 0);
  }
}

function onKey(state, event) {
  if (event.key === "Enter") {
    lastClick = Date.now(); // submits a form or presses a button
    leaveSentForm(event.target);
  }
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) return;
  if (editable(event.target)) return;
  const key = event.key;
  const data = state.data || {};
  // Idle with no review screen: not ours. Mid-run, the review screen may be on its way.
  if (!reviewScreen(state) && !scriptRunning()) return;
  if (key in SCROLL && (data.scroll || false)) {
    event.preventDefault();
    scrollPane(SCROLL[key]);
    return;
  }
  if (!(data.keys || []).includes(key)) return;
  event.preventDefault();
  event.stopPropagation();
  state.seq += 1;
  state.queue.push({ key: key, seq: state.seq, page: state.page, item: data.item ?? null });
  pump(state);
}

function create() {
  const bytes = new Uint8Array(8);
  crypto.getRandomValues(bytes);
  const state = {
    page: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join(""),
    seq: 0,
    queue: [],
    inflight: null,
    outcomes: {},
    sentAt: 0,
    data: null,
    host: null,
    send: null,
  };
  document.addEventListener("keydown", (event) => onKey(state, event), true);
  for (const type of ["click", "change", "submit"]) {
    document.addEventListener(type, (event) => {
      lastClick = Date.now();
      if (type !== "change") leaveSentForm(event.target);
    }, true);
  }
  const app = document.querySelector('[data-testid="stApp"]');
  if (app !== null) {
    new MutationObserver(() => pump(state)).observe(app, {
      attributes: true,
      attributeFilter: ["data-test-script-state"],
    });
  }
  // A press whose run never came back (a dropped connection) is sent again; the server applies
  // each sequence number once, so a repeat only brings the acknowledgement.
  setInterval(() => {
    if (state.inflight !== null && Date.now() - state.sentAt > RESEND_MS && !scriptRunning()) {
      state.sentAt = Date.now();
      state.send("key", state.inflight);
    }
    pump(state);
  }, 500);
  return state;
}

export default function (component) {
  const { data, setTriggerValue, parentElement } = component;
  window.__gapfillKeys = window.__gapfillKeys || create();
  const state = window.__gapfillKeys;
  state.send = setTriggerValue;
  state.data = data;
  state.host = parentElement;
  const ack = data.ack;
  if (state.inflight !== null && ack && ack.page === state.page && ack.seq >= state.inflight.seq) {
    // Every press gets an outcome (applied, or refused with a message on the page): a press
    // with none was lost. Tests and bench/review_ui.py count them.
    state.outcomes[ack.outcome] = (state.outcomes[ack.outcome] || 0) + 1;
    state.inflight = null;
  }
  if (data.item !== state.shownItem) {
    state.shownItem = data.item;
    // A new item opens at its start (the pane is the same element from item to item).
    requestAnimationFrame(() => scrollPane(0, true));
  }
  const host = parentElement;
  if (host && host.dataset) host.dataset.keysPage = state.page; // for tests: which page is this
  pump(state);
}
