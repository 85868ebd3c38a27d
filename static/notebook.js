// The notebook's list of cells: the body of the list's gr.HTML js_on_load (gradio passes `element`,
// `trigger`, `props` and `watch`). One row per cell, and only the rows on screen are in the DOM, so
// the page costs the same at 1,000 cells as at 10. Rows arrive as messages (playground/ui/rows.py).
// Prompts and notes are untrusted: they are set as textContent, never parsed as HTML.
const ROW_H = 30;          // px; every row is one line (static/notebook.css agrees)
const OVERSCAN = 6;        // rows drawn above and below the visible ones, for smooth scrolling
const LOG_SIZE = 200;      // recent messages kept, to replay those newer than a reset
const PEND_MAX_MS = 4000;  // the open-cell view never stays locked longer than this
const RESYNC_MS = 300;     // a gap in the messages asks for every row again after this pause
const LANES = ['standard', 'reasoning'];
const ICONS = {queued: '…', running: '▸', done: '✓', stopped: '■', error: '✗', interrupted: '✗'};
const GRADES = {pass: '✅', fail: '❌', ungraded: '➖', error: '⚠️'};

const list = element.querySelector('.nb-list');
const spacer = element.querySelector('.nb-spacer');
const holder = element.querySelector('.nb-rows');
const st = {rows: [], at: new Map(), open: null, cursor: -1, seq: 0, resetSeq: 0, log: [], pool: [], frame: 0,
            session: null, pendTimer: 0, resyncTimer: 0};

const view = () => document.getElementById('open-cell');

function reindex() {
  st.at.clear();
  st.rows.forEach((r, i) => st.at.set(r.id, i));
}

function draw() {
  if (!st.frame) st.frame = requestAnimationFrame(render);
}

function render() {
  st.frame = 0;
  const n = st.rows.length;
  spacer.style.height = n * ROW_H + 'px';
  const top = list.scrollTop, height = list.clientHeight || 12 * ROW_H;
  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(n, Math.ceil((top + height) / ROW_H) + OVERSCAN);
  while (st.pool.length < last - first) {
    const el = makeRow();
    holder.appendChild(el);
    st.pool.push(el);
  }
  holder.style.transform = `translateY(${first * ROW_H}px)`;
  st.pool.forEach((el, j) => {
    const i = first + j;
    el.hidden = i >= last;
    if (!el.hidden) fill(el, st.rows[i], i);
  });
  element.classList.toggle('nb-none', n === 0);
}

function makeRow() {
  const el = document.createElement('div');
  el.className = 'cell-row';
  el.setAttribute('role', 'option');
  for (const cls of ['row-n', 'row-text', 'row-turns']) el.appendChild(part('span', cls));
  for (const lane of LANES) {
    const box = part('span', 'row-lane row-' + lane);
    for (const cls of ['row-st', 'row-g', 'row-tok', 'row-s']) box.appendChild(part('span', cls));
    el.appendChild(box);
  }
  return el;
}

function part(tag, cls) {
  const el = document.createElement(tag);
  el.className = cls;
  return el;
}

function fill(el, r, i) {
  const isOpen = r.id === st.open, isCursor = i === st.cursor;
  const key = JSON.stringify([r, i, isOpen, isCursor]);
  if (el._key === key) return;  // unchanged: a scroll or an update elsewhere touches nothing here
  el._key = key;
  el.dataset.id = r.id;
  el.dataset.index = String(i);
  el.classList.toggle('note-row', r.kind === 'note');
  el.classList.toggle('is-open', isOpen);
  el.classList.toggle('is-cursor', isCursor);
  el.setAttribute('aria-selected', String(isOpen));
  el.title = r.text || '';
  el.children[0].textContent = String(i + 1);
  el.children[1].textContent = r.text || (r.kind === 'note' ? '(empty note)' : '(empty prompt)');
  el.children[2].textContent = r.turns > 1 ? `${r.turns} turns` : '';
  LANES.forEach((lane, k) => {
    const box = el.children[3 + k], l = r.lanes && r.lanes[k];
    box.hidden = r.kind === 'note';
    box.className = `row-lane row-${lane} st-${l ? l.st : 'none'}`;
    box.children[0].textContent = l ? `${ICONS[l.st] || ''} ${l.st}` : '–';
    box.children[1].textContent = l && l.g ? (GRADES[l.g] || l.g) : '';
    box.children[2].textContent = l && l.tok ? `${l.tok} tok` : '';
    box.children[3].textContent = l && l.s != null ? `${Number(l.s).toFixed(1)} s` : '';
  });
}

// --- messages -------------------------------------------------------------------------------
function receive(raw) {
  let m = null;
  try { m = JSON.parse(raw || 'null'); } catch (e) { return; }
  if (!m || !m.op) return;
  if (m.op === 'reset') {
    if (m.seq <= st.resetSeq) return;
    st.resetSeq = m.seq;
    reset(m);
    // Changes made after the reset read the store may have arrived before it: apply them again.
    st.log.filter((x) => x.seq > m.seq).sort((a, b) => a.seq - b.seq).forEach(apply);
  } else {
    if (m.seq <= st.resetSeq || st.log.some((x) => x.seq === m.seq)) return;
    if (m.seq !== st.seq + 1) resyncSoon();  // a message never came: ask for every row again
    apply(m);
  }
  st.seq = Math.max(st.seq, m.seq);
  st.log.push(m);
  if (st.log.length > LOG_SIZE) st.log.shift();
  draw();
}

function reset(m) {
  if (m.session !== st.session) list.scrollTop = 0;
  st.session = m.session;
  st.rows = m.rows || [];
  st.cursor = -1;
  reindex();
  setOpen(m.open);
}

function apply(m) {
  const i = st.at.get(m.op === 'insert' ? m.row.id : m.id);
  if (m.op === 'insert') {
    if (i !== undefined) st.rows.splice(i, 1);
    st.rows.splice(Math.min(m.at, st.rows.length), 0, m.row);
    reindex();
  } else if (m.op === 'move') {
    if (i === undefined) return resyncSoon();
    const [r] = st.rows.splice(i, 1);
    st.rows.splice(Math.min(m.to, st.rows.length), 0, r);
    reindex();
    if (st.cursor === i) st.cursor = st.at.get(m.id);
  } else if (m.op === 'delete') {
    if (i !== undefined) {
      st.rows.splice(i, 1);
      reindex();
    }
  } else if (m.op === 'rows') {
    for (const p of m.rows || []) {
      const j = st.at.get(p.id);
      if (j !== undefined) st.rows[j] = Object.assign({}, st.rows[j], p);
    }
    if (m.refresh && st.open && m.refresh.includes(st.open)) trigger('refresh_cell', {id: st.open});
  }
  if ('open' in m) setOpen(m.open);
}

function setOpen(id) {
  st.open = id || null;
  const known = st.open && st.at.has(st.open);
  if (known) {
    st.cursor = st.at.get(st.open);
    reveal(st.cursor);
  }
  // Which part of the view shows (notebook.css): set here, in the same update as the view's values,
  // rather than by the server writing the view's Column (ui/detail.py Detail.shown says why).
  const v = view();
  if (v) {
    const kind = known ? st.rows[st.at.get(st.open)].kind : null;
    for (const k of ['prompt', 'note', 'closed']) v.classList.toggle('view-' + k, k === (kind || 'closed'));
  }
  requestAnimationFrame(unpend);  // the view's new values are in place by the next frame
}

function resyncSoon() {
  clearTimeout(st.resyncTimer);
  st.resyncTimer = setTimeout(() => trigger('resync'), RESYNC_MS);
}

// --- opening cells --------------------------------------------------------------------------
// While a cell is being opened the view takes no clicks or typing: they would land in the cell it
// shows now, not in the one asked for (a test clicks right after "+ Prompt cell").
function pend() {
  const v = view();
  if (!v) return;
  v.classList.add('nb-pending');
  v.querySelectorAll('textarea, input').forEach((x) => {
    if (!x.readOnly) {
      x.readOnly = true;
      x.dataset.nbPend = '1';
    }
  });
  clearTimeout(st.pendTimer);
  st.pendTimer = setTimeout(unpend, PEND_MAX_MS);
}

function unpend() {
  clearTimeout(st.pendTimer);
  const v = view();
  if (!v) return;
  v.classList.remove('nb-pending');
  v.querySelectorAll('[data-nb-pend]').forEach((x) => {
    x.readOnly = false;
    delete x.dataset.nbPend;
  });
}

function openAt(i) {
  const r = st.rows[i];
  if (!r) return;
  st.cursor = i;
  reveal(i);
  draw();
  if (r.id === st.open && view()) return;
  pend();
  trigger('open_cell', {id: r.id});
}

function reveal(i) {
  const top = i * ROW_H, height = list.clientHeight || 12 * ROW_H;
  if (top < list.scrollTop) list.scrollTop = top;
  else if (top + ROW_H > list.scrollTop + height) list.scrollTop = top + ROW_H - height;
}

function neighbour(id) {
  const i = st.at.get(id);
  if (i === undefined) return '';
  const next = st.rows[i + 1] || st.rows[i - 1];
  return next ? next.id : '';
}

holder.addEventListener('click', (e) => {
  const row = e.target.closest('.cell-row');
  if (!row) return;
  list.focus({preventScroll: true});
  openAt(Number(row.dataset.index));
});
list.addEventListener('scroll', draw, {passive: true});
window.addEventListener('resize', draw);

// --- keyboard: up/down between cells, Enter opens, Esc closes, Ctrl+Enter runs ------------------
function onKey(e) {
  const t = e.target;
  const typing = t && (t.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName));
  if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
    const cell = (t && t.closest && t.closest('.cell')) || view();
    // In the follow-up box it sends the follow-up; anywhere else in the cell it runs the cell.
    const inFollowUp = t && t.closest && t.closest('.follow-up');
    const btn = cell && cell.querySelector(inFollowUp ? '.send-btn' : '.run-btn');
    if (btn && btn.offsetParent !== null) {
      e.preventDefault();
      btn.click();
    }
    return;
  }
  if (e.key === 'Escape') {
    if (st.open) {
      e.preventDefault();
      trigger('close_cell');
      list.focus({preventScroll: true});
    }
    return;
  }
  if (typing || e.altKey || e.ctrlKey || e.metaKey || !st.rows.length) return;
  if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
    e.preventDefault();
    const from = st.cursor >= 0 ? st.cursor : (st.at.has(st.open) ? st.at.get(st.open) : -1);
    st.cursor = Math.max(0, Math.min(st.rows.length - 1, from + (e.key === 'ArrowDown' ? 1 : -1)));
    reveal(st.cursor);
    draw();
  } else if (e.key === 'Enter' && st.cursor >= 0 && (t === document.body || list.contains(t))) {
    e.preventDefault();
    openAt(st.cursor);
  }
}

if (!window.pgNotebookKeys) {  // once per page, whatever remounts the list
  window.pgNotebookKeys = true;
  document.addEventListener('keydown', (e) => window.pgNotebook && window.pgNotebook.onKey(e));
  // A button that opens a new cell (notebook.py ADDS): lock the view at the click, before gradio sends it.
  document.addEventListener('click', (e) => {
    if (window.pgNotebook && e.target.closest && e.target.closest('.add-cell')) window.pgNotebook.pend();
  }, true);
}
window.pgNotebook = {
  pend, neighbour, onKey,
  state: () => ({rows: st.rows.length, open: st.open, cursor: st.cursor, seq: st.seq}),
  ids: () => st.rows.map((r) => r.id),
};
receive(props.value);
watch('value', () => receive(props.value));
draw();
