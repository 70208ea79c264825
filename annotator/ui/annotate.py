"""The annotate view: the page's own script answers through plain JSON routes, memory only.

Gradio draws the frame (title, guidelines) and runs two events per tab: the
page load, which hands the script its first view and tells the service that a
tab opened, and the unload, which tells it that the tab closed (the service
frees a person's leases when their last tab closes). Every click after that
is the script's: it posts the answer to `annotator.ui.clicks` (about 2 ms
of server CPU against 5-6 ms for the cheapest Gradio event, and none of
Gradio's front-end update work in the browser) and shows the next record at
once. The view carries the buffered records that come next with
their tickets and preloaded images, so the swap needs no round trip; the
answers go out one at a time, in order, and each answer names the record the
person saw (its ticket), so a burst of presses gives one answer per image
shown and a repeat is ignored by the service.
"""

from __future__ import annotations

import html
import json
import time
from typing import Any

import gradio as gr

from annotator.auth import AuthError
from annotator.config import TaskSpec
from annotator.runtime import Runtime
from annotator.service import View
from annotator.ui.identity import identify

# An answer sent with nothing queued behind it asks its reply to wait for the commit (a fraction of a
# second, see annotator.ui.clicks), so "All answers saved" usually needs no request of its own. When a
# reply still says pending (commits lag or fail), the page asks /saved, whose reply waits for the
# commit, and asks again this long after a reply that still says pending.
SAVED_CHECK_DELAY_MS = 1000
CLICK_ROUTE = "/ann"  # the page's JSON routes, see annotator.ui.clicks


def page_view(view: View) -> dict[str, Any]:
    """The JSON the page's script renders: the service's view plus when a waiting tab asks again."""
    out = view.as_dict()
    out["recheck_after"] = None
    if view.state == "waiting":  # at most every 20 s, waiting tabs only: one cheap request
        out["recheck_after"] = 20.0 if not view.frees_at else min(20.0, max(5.0, view.frees_at - time.time() + 1))
        out["frees_at_text"] = time.strftime("%H:%M", time.localtime(view.frees_at)) if view.frees_at else "soon"
    return out


# What could end or bend a <script> from inside a JSON string: `</script>`, `<!--`, and line separators
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                                 "\u2029": "\\u2029"})


def script_json(value: Any) -> str:
    """`value` as JSON that stays inert inside <script>, whatever strings a task file puts in it."""
    return json.dumps(value).translate(_SCRIPT_ESCAPES)


def page_script(task: TaskSpec) -> str:
    """The view's script and style, injected into <head>: keys, rendering, the answer queue, the saved check."""
    config = script_json({"labels": [{"name": l.name, "key": l.key} for l in task.labels],
                          "multi": task.kind == "multi_label", "route": CLICK_ROUTE,
                          "savedDelay": SAVED_CHECK_DELAY_MS})
    return "<script>\nconst ANN_CONFIG = %s;\n%s\n</script>\n%s" % (config, _SCRIPT, _STYLE)


_SCRIPT = r"""
(() => {
  const C = ANN_CONFIG;
  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c]));
  const A = {
    view: null,         // the last view the server sent
    shown: null,        // the record on screen (an item of a view), or null
    shownAt: 0,
    buffer: [],         // records that come next, with tickets: shown at once on the next answer
    outbox: [],         // actions not yet answered by the server, sent one at a time in order
    sending: false,
    lost: false,        // the last request got no answer: the status says so until one gets through
    blocked: false,     // an answer the page cannot apply ahead of the server is in flight
    answered: new Set(),
    seenIds: new Set(),
    images: new Map(),  // url -> preloaded, decoded <img>
    sentAnswers: 0,     // answers sent so far: a saved reply counts only if none was sent after its request
    checking: false, checkAgain: false,  // the saved check in flight (at most one), and one more asked for
    imageRetried: new Set(),  // records whose image failed and for which a fresh view was asked once
    savedTimer: null, recheckTimer: null,
  };
  const unsent = () => A.outbox.filter((e) => e.record).length;  // answers the server has not replied to
  const answersQueued = () => unsent() > 0;
  // what closing the tab would lose: an answer not sent, or sent but not yet committed
  const unsaved = () => answersQueued() || (!!A.view && !!(A.view.pending || A.view.retrying));

  // --- rendering ---------------------------------------------------------------------
  const showError = (text) => {
    const slot = $('ann-error');
    if (slot) { slot.textContent = text || ''; slot.classList.toggle('ann-hidden', !text); }
  };
  const preload = (items) => {
    const keep = new Set(items.map((i) => i.image_url));
    if (A.shown) keep.add(A.shown.image_url);
    for (const url of A.images.keys()) if (!keep.has(url)) A.images.delete(url);
    for (const item of items) {
      if (A.images.has(item.image_url)) continue;
      const img = new Image();
      img.src = item.image_url;
      img.decode().catch(() => {});
      A.images.set(item.image_url, img);
    }
  };
  // the server's word on saving counts only once the page has nothing left to send; offline, the page
  // says how many answers only it holds, never that they are saved
  const renderStatus = () => {
    const box = $('ann-status');
    const view = A.view;
    if (!box || !view || view.saved === undefined) return;  // signed out: nothing to say about saving
    const n = unsent();
    const refused = view.rejected && view.rejected.length;  // an answer that can never be saved: say so in red
    let css = view.retrying || refused ? 'ann-failed' : view.pending ? 'ann-pending' : 'ann-saved', text = view.saved;
    if (A.lost && n) {
      css = 'ann-failed'; text = `${n} answer${n === 1 ? '' : 's'} not sent yet — keep this tab open`;
    } else if (A.lost) {
      css = 'ann-failed';
      text = view.pending ? 'Connection lost before your last answers were confirmed saved — keep this tab open'
                          : 'Connection lost; your answers so far are saved';
    } else if (n) {
      css = 'ann-pending'; text = 'Saving…';
    }
    const msg = view.message ? ` · <span id="ann-message">${esc(view.message)}</span>` : '';
    box.innerHTML = `<span class="${css}" id="ann-saved">${esc(text)}</span>${msg}`;
  };
  const renderProgress = (view) => {
    const box = $('ann-progress');
    if (!box || !view || !view.progress) return;
    const p = view.progress;
    const share = p.team_total ? 100 * p.team_complete / p.team_total : 100;
    box.innerHTML = `You: <b>${p.mine_today}</b> today, <b>${p.mine_total}</b> in total · ` +
      `Team: <b>${p.team_complete}</b> of ${p.team_total} records complete · <b>${p.remaining_for_me}</b> left for you` +
      `<div class="ann-bar"><div style="width:${share.toFixed(1)}%"></div></div>`;
  };
  const renderItem = () => {
    const box = $('ann-image');
    const item = A.shown;
    if (!box || !item) return;
    let notes = '';
    if (item.editing) {
      notes = `<div class="ann-suggestion" id="ann-editing">Changing your earlier answer: ` +
              `<b>${esc(item.answer.join(', ') || 'skipped')}</b></div>`;
    } else if (item.suggestion) {
      notes = `<div class="ann-suggestion">Suggested: <b>${esc(item.suggestion)}</b> (press Enter to accept)</div>`;
    }
    let img = A.images.get(item.image_url);
    if (!img) { img = new Image(); img.src = item.image_url; A.images.set(item.image_url, img); }
    box.innerHTML = notes;
    img.className = 'ann-main'; img.id = 'ann-img';
    img.alt = `record ${item.record_id}`; img.width = item.width; img.height = item.height;
    img.dataset.record = String(item.record_id);
    img.onerror = () => imageFailed(img);
    box.appendChild(img);
    if (img.complete && img.naturalWidth === 0) imageFailed(img);  // its preload had failed already
    const chosen = item.answer.length ? item.answer : (item.suggestion ? [item.suggestion] : []);
    C.labels.forEach((l, i) => {
      const b = $('label-' + i);
      if (!b) return;
      b.classList.toggle('ann-suggested', !item.editing && item.suggestion === l.name);
      b.classList.toggle('ann-earlier', !!item.editing && item.answer.includes(l.name));
    });
    renderAccept(item);
    document.querySelectorAll('#ann-choices input[type=checkbox]').forEach((box) => { box.checked = chosen.includes(box.value); });
    const comment = document.querySelector('#ann-comment textarea');
    if (comment) comment.value = item.comment || '';
  };
  // what Enter does on this record, on its button: keep the earlier answer, accept the suggestion, or submit
  const renderAccept = (item) => {
    const b = $('btn-accept');
    if (!b) return;
    const keep = !C.multi && item.editing && item.answer.length;
    const text = C.multi ? 'Submit (Enter)' : keep ? 'Keep earlier answer (Enter)' : 'Accept suggestion (Enter)';
    b.textContent = text;
    b.classList.toggle('ann-hidden', !C.multi && !keep && !item.suggestion);
  };
  // the controls are there only while a record is on screen; Back stays (to change an earlier answer)
  const renderControls = () => {
    const root = $('ann-root');
    if (!root) return;
    root.classList.toggle('ann-idle', !A.shown);
    root.classList.toggle('ann-signed-out', !!A.view && A.view.state === 'signed_out');
  };
  const renderState = (view) => {
    const box = $('ann-image');
    if (!box) return;
    if (view.state === 'waiting') {
      box.innerHTML = `<div class="ann-state" id="ann-waiting">Waiting: ${view.held_by_others} record(s) are being ` +
        `annotated by others. The first one frees up at ${esc(view.frees_at_text)}; this page checks again by itself.</div>`;
    } else if (view.state === 'done') {
      box.innerHTML = '<div class="ann-state" id="ann-done">All done: there is nothing left for you to annotate. Thank you!</div>';
    } else if (view.state === 'signed_out') {
      box.innerHTML = `<div class="ann-state" id="ann-signin">${esc(view.message)}</div>`;
    } else {
      box.innerHTML = '<div class="ann-state" id="ann-loading">Loading the next image…</div>';
    }
  };
  // the image on screen did not load (its link expired, or the server could not render it): ask once
  // for a fresh view, whose links are signed anew; if that fails too, say what to do
  const imageFailed = (img) => {
    const item = A.shown;
    if (!item || img.id !== 'ann-img' || img.getAttribute('src') !== item.image_url) return;
    if (A.imageRetried.has(item.record_id)) { showError(CANNOT_SHOW); return; }
    A.imageRetried.add(item.record_id);
    enqueue({path: 'next', body: {}});
  };
  const CANNOT_SHOW = 'This image cannot be shown right now; press S to skip it.';
  // the reply to that request: load the fresh link in place (nothing else on screen changes); the same
  // link again means the link was not the problem
  const repairImage = (view) => {
    const item = A.shown, img = $('ann-img');
    if (!item || !A.imageRetried.has(item.record_id) || view.state !== 'ready' || !img ||
        img.dataset.record !== String(item.record_id) || !(img.complete && img.naturalWidth === 0)) return;
    const fresh = [view.item, ...view.upcoming].find((i) => i.record_id === item.record_id && !i.editing);
    if (!fresh || fresh.image_url === item.image_url) { showError(CANNOT_SHOW); return; }
    item.image_url = fresh.image_url;
    img.src = fresh.image_url;
    A.images.set(fresh.image_url, img);
  };
  const show = (item) => {
    A.shown = item; A.shownAt = performance.now();
    if (item) { A.seenIds.add(item.record_id); renderItem(); }
    renderControls();
  };
  const renderAll = () => {
    if (!A.view) return;
    renderProgress(A.view); renderStatus(); renderControls();
    if (A.shown) renderItem(); else renderState(A.view);
  };

  // --- the server's answers ----------------------------------------------------------------
  const apply = (view, refill) => {
    A.view = view;
    renderProgress(view); renderStatus();
    if (refill && A.shown && A.shown.editing) {
      // a refill asked for before the person pressed Back only fills the buffer: the earlier answer stays on screen
      const next = view.state === 'ready' ? [view.item, ...view.upcoming] : [];
      A.buffer = next.filter((i) => !A.answered.has(i.record_id) && i.record_id !== A.shown.record_id);
      preload(A.buffer);
      return;
    }
    clearTimeout(A.recheckTimer);
    if (view.state !== 'ready') {
      if (answersQueued()) return;  // answers still queued name records the page showed: they decide
      A.buffer = []; show(null); renderState(view); preload([]);
      if (view.recheck_after) A.recheckTimer = setTimeout(() => enqueue({path: 'next', body: {}}), view.recheck_after * 1000);
      return;
    }
    const next = [view.item, ...view.upcoming];
    if (answersQueued()) {
      // the page is ahead of the server: keep what it showed, take the rest in the server's order
      A.buffer = next.filter((i) => !A.seenIds.has(i.record_id));
    } else {
      if (!A.shown || A.shown.record_id !== view.item.record_id || A.shown.editing !== view.item.editing) show(view.item);
      else A.shown = {...view.item, image_url: A.shown.image_url};  // the image on screen stays (see repairImage)
      A.buffer = view.upcoming.filter((i) => !A.answered.has(i.record_id) && i.record_id !== view.item.record_id);
    }
    repairImage(view);
    preload(A.buffer);
  };
  const refused = (entry, status, message) => {
    if (status === 401) message = 'You are signed out (the server may have restarted): reload the page to sign in again.';
    showError(message || 'The server could not do that; reload the page.');
    if (entry.record) A.answered.delete(entry.record.record_id);
    if (entry.record && !answersQueued() && (!A.shown || A.shown.record_id !== entry.record.record_id)) {
      if (A.shown) A.buffer.unshift(A.shown);  // the answer was not taken: its record comes back
      show({...entry.record, comment: entry.body.comment || ''});
    }
  };
  const pump = async () => {
    if (A.sending || !A.outbox.length) return;
    A.sending = true;
    const entry = A.outbox[0];
    if (entry.record) A.sentAnswers += 1;
    // the last answer queued, with the next record already on screen: its reply may wait for the
    // commit, so "saved" needs no request of its own (the page's saved check covers what lags longer)
    const wait = entry.record && !entry.blocking && A.outbox.length === 1 ? '?saved=wait' : '';
    let res = null, body = null;
    try {
      res = await fetch(`${C.route}/${entry.path}${wait}`, {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'}, body: JSON.stringify(entry.body)});
      body = await res.json().catch(() => null);
    } catch (err) { res = null; }
    A.sending = false;
    if (res === null || res.status >= 500 && !(body && body.error)) {
      connectionLost();
      setTimeout(pump, 1500);
      return;
    }
    A.outbox.shift();
    if (entry.blocking) A.blocked = false;
    if (res.ok) {
      reconnected();
      apply(body, entry.refill);
    } else {
      refused(entry, res.status, body && (body.error || body.detail));
    }
    renderStatus();
    if (!answersQueued() && unsaved()) checkSaved();
    pump();
  };
  const enqueue = (entry) => { A.outbox.push(entry); renderStatus(); pump(); };
  const connectionLost = () => {
    A.lost = true;
    showError('The connection to the server was lost; your answers are kept and sent again…');
    renderStatus();
  };
  const reconnected = () => {
    if (A.lost) { A.lost = false; showError(''); }
  };

  // --- "saved" follows the commit ---------------------------------------------------------
  // Asked when the page has no answer left to send and the server's last word was "pending"; the
  // server replies once the commit is done (or after a few seconds if it lags). Beside the answer
  // queue, not in it: the next answer never waits behind this check.
  const checkSaved = async () => {
    if (A.checking) { A.checkAgain = true; return; }
    clearTimeout(A.savedTimer);
    A.checking = true; A.checkAgain = false;
    const asOf = A.sentAnswers;
    let res = null, body = null;
    try {
      res = await fetch(`${C.route}/saved`, {method: 'POST', credentials: 'same-origin',
        headers: {'Content-Type': 'application/json'}, body: '{}'});
      body = await res.json().catch(() => null);
    } catch (err) { res = null; }
    A.checking = false;
    if (res === null || res.status >= 500 && !(body && body.error)) {
      connectionLost();
      A.savedTimer = setTimeout(checkSaved, 1500);
      return;
    }
    if (!res.ok) {
      refused({path: 'saved', body: {}}, res.status, body && (body.error || body.detail));
      return;
    }
    reconnected();
    // an answer sent after this request may be missing from the reply: only a later check can tell
    if (asOf === A.sentAnswers && !answersQueued() && A.view) {
      Object.assign(A.view, body);
      renderProgress(A.view);
    }
    renderStatus();
    if (A.checkAgain) checkSaved();
    else if (!answersQueued() && unsaved()) A.savedTimer = setTimeout(checkSaved, C.savedDelay);
  };
  window.addEventListener('beforeunload', (e) => {
    if (!unsaved()) return;
    e.preventDefault();
    e.returnValue = '';  // the browser asks the person whether to leave; answers only this tab holds would be lost
  });

  // --- what the person does -------------------------------------------------------------
  const answer = (path, labels) => {
    const item = A.shown;
    if (!item || A.blocked) return;  // nothing on screen to answer (the next record is on its way)
    const area = document.querySelector('#ann-comment textarea');
    const comment = area ? area.value : '';
    const body = {ticket: item.record, comment, time_spent_ms: Math.round(performance.now() - A.shownAt)};
    if (labels) body.answer = labels;
    const ahead = !item.editing && !comment && A.buffer.length > 0;
    const entry = {path, body, record: item, blocking: !ahead};
    A.answered.add(item.record_id);
    showError('');
    if (ahead) {
      show(A.buffer.shift());
      preload(A.buffer);
    } else {
      A.blocked = true;
    }
    enqueue(entry);
  };
  const back = () => {
    if (A.blocked) return;
    A.blocked = true;
    showError('');
    enqueue({path: 'back', body: {ticket: A.shown ? A.shown.record : ''}, blocking: true});
  };
  const accept = () => {
    const item = A.shown;
    if (!item) return;
    if (C.multi) {
      const chosen = [...document.querySelectorAll('#ann-choices input[type=checkbox]')].filter((b) => b.checked).map((b) => b.value);
      if (!chosen.length) { showError('Choose a label first, or press S to skip.'); return; }
      answer('answer', chosen);
    } else if (item.editing && item.answer.length) {
      answer('answer', item.answer.slice(0, 1));  // Enter keeps the earlier answer when changing one
    } else if (item.suggestion) {
      answer('answer', [item.suggestion]);
    } else {
      showError('Choose a label with its key or button; this record has no suggestion to accept.');
    }
  };
  const pressLabel = (i) => {
    if (C.multi) {
      const boxes = document.querySelectorAll('#ann-choices input[type=checkbox]');
      if (boxes[i]) boxes[i].checked = !boxes[i].checked;
    } else {
      answer('answer', [C.labels[i].name]);
    }
  };
  const visible = () => { const root = $('ann-root'); return !!root && root.getClientRects().length > 0; };

  document.addEventListener('click', (e) => {
    const b = e.target.closest && e.target.closest('#ann-root button');
    if (!b) return;
    if (b.id.startsWith('label-')) pressLabel(Number(b.id.slice(6)));
    else if (b.id === 'btn-accept') accept();
    else if (b.id === 'btn-skip') answer('skip', null);
    else if (b.id === 'btn-back') back();
  });
  const keyIndex = {};
  C.labels.forEach((l, i) => { if (l.key) keyIndex[l.key.toLowerCase()] = i; });
  document.addEventListener('keydown', (e) => {
    const t = e.target;
    const typing = t && (t.tagName === 'TEXTAREA' || t.isContentEditable ||
                         (t.tagName === 'INPUT' && !['checkbox', 'radio', 'button'].includes(t.type)));
    if (typing || e.ctrlKey || e.metaKey || e.altKey || !visible() || !A.view || A.view.state === 'signed_out') return;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    let hit = true;
    if (k in keyIndex) pressLabel(keyIndex[k]);
    else if (k === 'Enter') accept();
    else if (k === 's') answer('skip', null);
    else if (k === 'Backspace') back();
    else if (k === '?') { const h = $('ann-keys'); if (h) h.classList.toggle('ann-hidden'); }
    else hit = false;
    if (hit) e.preventDefault();
  });

  // --- start: the page load event hands over the first view; a re-drawn view is drawn again ---------
  new MutationObserver(() => {
    const boot = $('ann-boot-data');
    if (boot && boot.dataset.view && !boot.dataset.used) {
      boot.dataset.used = '1';
      const view = JSON.parse(boot.dataset.view);
      if (view.state === 'signed_out') { A.view = view; renderState(view); renderControls(); }
      else apply(view);
      // the buffer fills just after the first view: ask once for it, so the first answer swaps at once too
      if (view.state === 'ready' && !view.upcoming.length) setTimeout(() => enqueue({path: 'next', body: {}, refill: true}), 700);
      if (unsaved()) checkSaved();  // answers of an earlier visit not committed yet
    }
    const root = $('ann-root');
    if (root && !root.dataset.bound) { root.dataset.bound = '1'; renderAll(); }
  }).observe(document.documentElement, {childList: true, subtree: true});
})();
"""

_STYLE = """<style>
  .ann-hidden { display: none !important; }
  #ann-image img.ann-main { max-width: 100%; max-height: 70vh; width: auto; height: auto; display: block; margin: 0 auto; }
  #ann-image .ann-state { font-size: 1.3em; padding: 2em; text-align: center; }
  #ann-root .ann-row { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0; }
  #ann-root button { padding: 6px 14px; border-radius: 6px; border: 1px solid #d1d5db; background: #f9fafb; cursor: pointer; }
  #ann-root button.ann-primary { background: #2563eb; color: white; border-color: #2563eb; }
  #ann-root button.ann-suggested { outline: 3px solid #ea580c; }
  #ann-root button.ann-earlier { outline: 3px solid #2563eb; font-weight: bold; }
  #ann-root.ann-idle .ann-needs-item, #ann-root.ann-signed-out .ann-controls { display: none; }
  #ann-comment textarea { width: 100%; box-sizing: border-box; }
  #ann-status .ann-saved { color: #15803d; } #ann-status .ann-pending { color: #a16207; }
  #ann-status .ann-failed, #ann-error { color: #b91c1c; font-weight: bold; }
  .ann-suggestion { color: #9a3412; }
  .ann-bar { background: #e5e7eb; border-radius: 4px; height: 10px; }
  .ann-bar > div { background: #2563eb; height: 10px; border-radius: 4px; }
</style>"""


def skeleton(task: TaskSpec) -> str:
    """The view's fixed elements; the script fills in the record, progress and status."""
    esc = html.escape
    multi = task.kind == "multi_label"
    if multi:
        boxes = "".join(f'<label><input type="checkbox" value="{esc(l.name)}" data-label="{esc(l.name)}"> {esc(l.name)}'
                        f'{f" ({esc(l.key)})" if l.key else ""}</label>' for l in task.labels)
        choices = f'<div class="ann-row ann-needs-item" id="ann-choices">{boxes}</div>'
    else:
        choices = '<div class="ann-row ann-needs-item" id="ann-choices">' + "".join(
            f'<button type="button" id="label-{i}" data-label="{esc(l.name)}">{esc(l.name)}{f" ({esc(l.key)})" if l.key else ""}</button>'
            for i, l in enumerate(task.labels)) + "</div>"
    comment = ('<div id="ann-comment" class="ann-needs-item"><label>Comment (optional)<br><textarea rows="2"></textarea></label></div>'
               if task.comment else "")
    keys = " · ".join(f"<b>{esc(l.key)}</b> {esc(l.name)}" for l in task.labels if l.key)
    accept = "Submit (Enter)" if multi else "Accept suggestion (Enter)"
    return (f'<div id="ann-root"><div id="ann-progress-box"><div id="ann-progress"></div></div>'
            f'<div id="ann-image"><div class="ann-state" id="ann-loading">Loading…</div></div>'
            f'<div class="ann-controls">{choices}{comment}'
            f'<div class="ann-row"><button type="button" id="btn-back">Back (Backspace)</button>'
            f'<button type="button" id="btn-skip" class="ann-needs-item">Skip (S)</button>'
            f'<button type="button" id="btn-accept" class="ann-primary ann-needs-item">{accept}</button></div></div>'
            f'<div id="ann-status"></div><div id="ann-error" class="ann-hidden" role="alert"></div>'
            f'<div id="ann-keys" class="ann-hidden">Keys: {keys} · <b>Enter</b> submit · <b>S</b> skip · '
            f'<b>Backspace</b> back · <b>?</b> show or hide this help</div></div>')


def boot_html(data: dict[str, Any]) -> str:
    return f'<div id="ann-boot-data" data-view="{html.escape(json.dumps(data), quote=True)}"></div>'


class AnnotateView:
    """Builds the view inside a Blocks; tells the service when a tab opens and closes."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self.task = runtime.task

    def build(self, demo: gr.Blocks) -> None:
        task, service = self.task, self.rt.service
        gr.Markdown(f"## {html.escape(task.title)}\n{html.escape(task.question)}")
        with gr.Accordion("Guidelines", open=False):
            gr.Markdown(task.guidelines or "No guidelines were given for this task.")
        gr.HTML(skeleton(task), elem_id="ann-view", js_on_load=None)
        boot = gr.HTML(visible="hidden", elem_id="ann-boot", js_on_load=None)

        def on_load(profile: gr.OAuthProfile | None, request: gr.Request) -> str:
            try:
                who = identify(self.rt.access, profile, request)
            except AuthError as exc:
                return boot_html({"state": "signed_out", "message": str(exc)})
            service.tab_opened(getattr(request, "session_hash", None), who.name)
            return boot_html(page_view(service.next(who)))

        def unload_handler(request: gr.Request) -> None:
            service.tab_closed(getattr(request, "session_hash", None))

        demo.load(on_load, None, [boot], api_name="page_load", queue=False, show_progress="hidden")
        demo.unload(unload_handler)
