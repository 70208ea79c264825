// The annotate page's script. annotator/ui/annotate.py draws the elements it fills and puts the task's
// settings (labels, keys, routes) in <script type="application/json" id="ann-config">, read here as data.
// Loaded once per page from a URL that names its content (annotator/ui/assets.py), cached for good.
(() => {
  'use strict';
  const annStart = (C) => {
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
    selected: new Set(), selectedFor: null,  // multi-label: the labels chosen for the record on screen (a suggestion is not chosen)
    spoken: '',           // the last saved/unsent state announced to a screen reader
    welcomed: false,      // the first-visit card was shown in this page already
  };
  // --- issue 15: the server sends a record's answer and suggestion by question name. Several questions
  // (or a rating or a text): static/questions.js draws and answers them (Q); one label (or labels) question:
  // this page reads them as its label list and suggested label, as before questions. ---
  const Q = C.questions ? window.annQuestions(C, {
    answer: (value) => answer('answer', value), showError: (text) => showError(text),
    focusStage: () => focusStage(), shown: () => A.shown, typing: (t) => typingIn(t)}) : null;
  const oneQuestion = (item) => {
    const chosen = item.answer[C.question], hint = item.suggestion[C.question];
    return {...item, answer: chosen === undefined ? [] : [].concat(chosen),
            suggestion: Array.isArray(hint) ? (hint.length === 1 ? hint[0] : null) : hint ?? null};
  };
  const adaptItem = Q ? Q.adaptItem : oneQuestion;
  const adapt = (view) => (view.item === undefined ? view
    : {...view, item: view.item && adaptItem(view.item), upcoming: (view.upcoming || []).map(adaptItem)});
  // --- end of issue 15's adapter ---
  const unsent = () => A.outbox.filter((e) => e.record).length;  // answers the server has not replied to
  const answersQueued = () => unsent() > 0;
  // what closing the tab would lose: an answer not sent, or sent but not yet committed
  const unsaved = () => answersQueued() || (!!A.view && !!(A.view.pending || A.view.retrying));

  // --- rendering ---------------------------------------------------------------------
  // a screen reader hears the new record and each change of saving state (polite live regions)
  const announce = (id, text) => { const box = $(id); if (box && box.textContent !== text) box.textContent = text; };
  // after every action the keys go on working: focus leaves buttons and text fields for the image's stage
  const focusStage = () => {
    const stage = $('ann-image');
    if (stage && document.activeElement !== stage) stage.focus({preventScroll: true});
  };
  const showError = (text) => {
    const slot = $('ann-error');
    if (slot) { slot.textContent = text || ''; slot.classList.toggle('ann-hidden', !text); }
  };
  // every image of a record (several when it has more than one: each with its link and size)
  const urlsOf = (item) => (item.images && item.images.length > 1 ? item.images.map((i) => i.url) : [item.image_url]);
  const preload = (items) => {
    const keep = new Set(items.flatMap(urlsOf));
    if (A.shown) urlsOf(A.shown).forEach((url) => keep.add(url));
    for (const url of A.images.keys()) if (!keep.has(url)) A.images.delete(url);
    for (const url of keep) {
      if (A.images.has(url)) continue;
      const img = new Image();
      img.src = url;
      img.decode().catch(() => {});
      A.images.set(url, img);
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
    if (css !== 'ann-pending' && text !== A.spoken) { A.spoken = text; announce('ann-live-status', text); }
  };
  const renderProgress = (view) => {
    const box = $('ann-progress');
    if (!box || !view || !view.progress) return;
    const p = view.progress;
    const share = p.team_total ? 100 * p.team_complete / p.team_total : 100;
    box.innerHTML = `You: <b>${p.mine_today}</b> today, <b>${p.mine_total}</b> in total` +
      ` (<b id="ann-goal-share">${p.goal_share}%</b> of the team goal) · ` +  // projector (issue 17)
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
      const how = C.multi ? 'press its key to choose it, or Enter to accept it alone' : 'press Enter to accept';
      notes = `<div class="ann-suggestion">Suggested: <b>${esc(item.suggestion)}</b> (${how})</div>`;
    }
    const texts = (item.texts || []).map((t) => `<div class="ann-text" data-name="${esc(t.name)}">${esc(t.text)}</div>`).join('');
    if (item.images && item.images.length > 1) { renderSeveral(box, item, notes, texts); }
    else { renderOne(box, item, notes, texts); }
    const shownKey = `${item.record_id}${item.editing ? ':earlier' : ''}`;
    if (A.selectedFor !== shownKey) {  // a new record: its earlier answer is chosen; a suggestion is only suggested
      A.selectedFor = shownKey;
      A.selected = new Set(C.multi && item.editing ? item.answer : []);
    }
    renderChoices();
    if (Q) Q.show(item);  // issue 15: several questions
    const comment = document.querySelector('#ann-comment textarea');
    if (comment) { comment.value = item.comment || ''; showComment(!!comment.value); }  // collapsed unless it has text
    const where = A.view && A.view.progress ? `; ${A.view.progress.remaining_for_me} left for you` : '';
    const said = item.editing ? `Changing your earlier answer on image ${item.record_id}`
                              : `Image ${item.record_id}${item.suggestion ? `, suggested: ${item.suggestion}` : ''}`;
    announce('ann-live', `${said}${where}.`);
  };
  // a record of one image: the page it always had, the image in the zoom layer (texts, when the task
  // has them, over the image as the notes are)
  const renderOne = (box, item, notes, texts) => {
    box.classList.remove('ann-several');
    const img = preloaded(item.image_url);
    box.innerHTML = notes + (texts ? `<div class="ann-texts ann-over">${texts}</div>` : '');
    // tiny images are enlarged with crisp pixels; every image fills the stage, contained
    img.className = item.width < 128 && item.height < 128 ? 'ann-main ann-tiny' : 'ann-main'; img.id = 'ann-img';
    img.alt = `record ${item.record_id}`; img.width = item.width; img.height = item.height;
    img.dataset.record = String(item.record_id);
    img.onerror = () => imageFailed(img);
    img.draggable = false;  // a drag pans a zoomed image; the browser's own image drag would cancel it
    const layer = document.createElement('div');  // what zoom scales and moves: the image, later its large one
    layer.id = 'ann-zoom';
    layer.appendChild(img);
    box.appendChild(layer);
    Z.scale = 1; Z.x = 0; Z.y = 0; Z.large = null;  // every record starts whole
    applyZoom();
    fitStage();
    if (img.complete && img.naturalWidth === 0) imageFailed(img);  // its preload had failed already
  };
  const preloaded = (url) => {
    let img = A.images.get(url);
    if (!img) { img = new Image(); img.src = url; A.images.set(url, img); }
    return img;
  };
  // a record of several images: its texts above them, the images side by side (stacked on a narrow window),
  // each under its number as a large badge (the key that chooses it); no zoom
  const renderSeveral = (box, item, notes, texts) => {
    box.classList.add('ann-several');
    box.innerHTML = `${notes}${texts ? `<div class="ann-texts">${texts}</div>` : ''}<div id="ann-pair"></div>`;
    const pair = box.querySelector('#ann-pair');
    item.images.forEach((info, i) => {
      const figure = document.createElement('figure');
      figure.className = 'ann-figure';
      figure.innerHTML = `<span class="ann-badge" aria-hidden="true">${i + 1}</span>`;
      const img = preloaded(info.url);
      img.className = 'ann-main'; img.id = `ann-img-${i + 1}`; img.alt = `record ${item.record_id}, image ${i + 1}`;
      img.width = info.width; img.height = info.height; img.draggable = false;
      img.dataset.record = String(item.record_id);
      img.onerror = () => showError(CANNOT_SHOW);
      figure.appendChild(img);
      pair.appendChild(figure);
      if (img.complete && img.naturalWidth === 0) showError(CANNOT_SHOW);
    });
    Z.scale = 1; Z.x = 0; Z.y = 0; Z.large = null;
    fitStage();
  };
  // the label buttons: chosen (pressed, ticked), suggested (a badge, not chosen), earlier answer
  const renderChoices = () => {
    const item = A.shown;
    if (!item) return;
    C.labels.forEach((l, i) => {
      const b = $('label-' + i);
      if (!b) return;
      const suggested = !item.editing && item.suggestion === l.name;
      b.classList.toggle('ann-suggested', suggested && !A.selected.has(l.name));
      b.classList.toggle('ann-earlier', !!item.editing && item.answer.includes(l.name));
      if (C.multi) {
        const on = A.selected.has(l.name);
        b.classList.toggle('ann-selected', on);
        b.setAttribute('aria-pressed', on ? 'true' : 'false');
      }
    });
    renderAccept(item);
  };
  // what Enter does on this record, on its button: keep the earlier answer, accept the suggestion, or submit
  const renderAccept = (item) => {
    const b = $('btn-accept');
    if (!b || Q) return;  // issue 15: several questions always "Submit (Enter)", as drawn
    const keep = !C.multi && item.editing && item.answer.length;
    const suggestionOnly = C.multi && !A.selected.size && item.suggestion && !item.editing;
    const text = C.multi && !suggestionOnly ? 'Submit (Enter)' : keep ? 'Keep earlier answer (Enter)' : 'Accept suggestion (Enter)';
    b.textContent = text;
    // invisible, not removed: the buttons after it keep their place
    b.classList.toggle('ann-invisible', !C.multi && !keep && !item.suggestion);
  };
  // the stage's height: what the window leaves under the page's top and above the action bar, fitted once per
  // window size (at the first record, when Gradio has drawn what is above), never per image
  const fitStage = () => {
    const stage = $('ann-image'), bar = $('ann-bar');
    const size = `${window.innerWidth}x${window.innerHeight}`;
    if (!stage || !bar || A.fittedFor === size) return;
    A.fittedFor = size;
    const top = stage.getBoundingClientRect().top + window.scrollY;
    const left = window.innerHeight - top - bar.offsetHeight - 12;
    stage.style.height = `${Math.max(200, Math.floor(left))}px`;
  };
  window.addEventListener('resize', () => { if (A.shown) { fitStage(); zoomTo(1); } });

  // --- zoom and pan ----------------------------------------------------------------------
  // The image's layer (#ann-zoom, the stage's size) is scaled and moved with a CSS transform: nothing around
  // the stage moves. Zooming in past the display size loads the record's large rendition once (the display
  // link with /large, signed alike), laid over the display image when decoded; the next record starts whole.
  const Z = {scale: 1, x: 0, y: 0, large: null, pointers: new Map(), pinch: 0, drag: null};
  const MAX_ZOOM = 8, ZOOM_STEP = 1.5, PAN_STEP = 0.15;
  const displaySide = () => Number(($('ann-image') || {dataset: {}}).dataset.displaySide) || Infinity;
  const applyZoom = () => {
    const layer = $('ann-zoom'), stage = $('ann-image');
    if (layer) layer.style.transform = Z.scale === 1 ? '' : `translate(${Z.x}px, ${Z.y}px) scale(${Z.scale})`;
    if (stage) stage.classList.toggle('ann-zoomed', Z.scale > 1);
  };
  // keep the layer covering the stage: no empty band beside a moved image
  const clampPan = (w, h) => {
    Z.x = Math.min(0, Math.max(w - w * Z.scale, Z.x));
    Z.y = Math.min(0, Math.max(h - h * Z.scale, Z.y));
  };
  // zoom to `scale` keeping the stage's point (px, py) where it is (the centre by default)
  const zoomTo = (scale, px, py) => {
    const stage = $('ann-image');
    if (!stage || !$('ann-zoom')) return;
    const w = stage.clientWidth, h = stage.clientHeight;
    const s = Math.min(MAX_ZOOM, Math.max(1, scale));
    const cx = px === undefined ? w / 2 : px, cy = py === undefined ? h / 2 : py;
    Z.x = cx - (cx - Z.x) * s / Z.scale; Z.y = cy - (cy - Z.y) * s / Z.scale; Z.scale = s;
    clampPan(w, h);
    applyZoom();
    if (s > 1) loadLarge();
  };
  const panBy = (dx, dy) => {
    const stage = $('ann-image');
    if (!stage || Z.scale === 1) return;
    Z.x += dx; Z.y += dy;
    clampPan(stage.clientWidth, stage.clientHeight);
    applyZoom();
  };
  const loadLarge = () => {
    const item = A.shown, layer = $('ann-zoom');
    if (!item || !layer || Z.large === item.image_url || Math.max(item.width, item.height) <= displaySide()) return;
    Z.large = item.image_url;
    const big = new Image();
    big.className = 'ann-main ann-large'; big.id = 'ann-img-large'; big.alt = '';  // the same picture, sharper
    big.draggable = false;
    big.src = item.image_url.replace(/^[^?]*/, (path) => `${path}/large`);
    big.decode().then(() => { if ($('ann-zoom') === layer) layer.appendChild(big); }, () => {});
  };
  const stageAt = (e) => {
    const stage = e.target && e.target.closest ? e.target.closest('#ann-image') : null;
    if (!stage || !A.shown) return null;
    const r = stage.getBoundingClientRect();
    return {stage, x: e.clientX - r.left, y: e.clientY - r.top};
  };
  document.addEventListener('wheel', (e) => {  // the wheel, and a touchpad's pinch (a wheel with Ctrl)
    const at = stageAt(e);
    if (!at) return;
    e.preventDefault();
    zoomTo(Z.scale * Math.exp(-e.deltaY * (e.ctrlKey ? 0.01 : 0.002)), at.x, at.y);
  }, {passive: false});
  // one pointer drags a zoomed image; two (fingers) pinch around their middle
  const spread = () => { const [a, b] = [...Z.pointers.values()]; return Math.hypot(a.x - b.x, a.y - b.y); };
  document.addEventListener('pointerdown', (e) => {
    const at = stageAt(e);
    if (!at || (e.pointerType === 'mouse' && e.button !== 0)) return;
    Z.pointers.set(e.pointerId, at);
    try { at.stage.setPointerCapture(e.pointerId); } catch (err) { /* a pointer already gone */ }
    if (Z.pointers.size === 2) Z.pinch = spread();
    Z.drag = Z.pointers.size === 1 && !(Q && Q.draws(e)) ? at : null;  // issue 16: a drag that draws a box
  });
  document.addEventListener('pointermove', (e) => {
    if (!Z.pointers.has(e.pointerId)) return;
    const at = stageAt(e);
    if (!at) return;
    const before = Z.pointers.get(e.pointerId);
    Z.pointers.set(e.pointerId, at);
    if (Z.pointers.size === 2 && Z.pinch) {
      const now = spread(), [a, b] = [...Z.pointers.values()];
      zoomTo(Z.scale * now / Z.pinch, (a.x + b.x) / 2, (a.y + b.y) / 2);
      Z.pinch = now;
    } else if (Z.drag) {
      panBy(at.x - before.x, at.y - before.y);
    }
  });
  const pointerGone = (e) => {
    Z.pointers.delete(e.pointerId);
    Z.pinch = 0;
    Z.drag = Z.pointers.size === 1 ? [...Z.pointers.values()][0] : null;
  };
  document.addEventListener('pointerup', pointerGone);
  document.addEventListener('pointercancel', pointerGone);

  // --- the comment, behind C: no room until asked for ---------------------------------------
  const commentBox = () => $('ann-comment');
  const showComment = (open) => {
    const box = commentBox(), b = $('btn-comment');
    if (!box) return;
    box.classList.toggle('ann-hidden', !open);
    if (b) b.setAttribute('aria-expanded', open ? 'true' : 'false');
  };
  const openComment = () => {
    const box = commentBox();
    if (!box || !A.shown) return;
    showComment(true);
    box.querySelector('textarea').focus({preventScroll: true});
  };
  // Esc (or Ctrl+Enter) leaves it: an empty one folds away, one with text stays in view until the answer
  const leaveComment = () => {
    const area = document.querySelector('#ann-comment textarea');
    if (area && !area.value) showComment(false);
    focusStage();
  };

  // --- the first-visit card: the guidelines and the keys, once per task in this browser ------------
  const SEEN_KEY = `ann-welcomed:${C.task}`;
  const welcomeOpen = () => { const w = $('ann-welcome'); return !!w && !w.classList.contains('ann-hidden'); };
  const seenBefore = () => { try { return localStorage.getItem(SEEN_KEY) === '1'; } catch (err) { return false; } };
  const showWelcome = () => {
    const card = $('ann-welcome');
    if (!card || A.welcomed || seenBefore()) return;
    A.welcomed = true;
    card.classList.remove('ann-hidden');
    const start = $('btn-welcome');
    if (start) start.focus({preventScroll: true});
  };
  // Enter or its button closes it; so does starting to annotate (any key or button): it never blocks a key
  const closeWelcome = () => {
    if (!welcomeOpen()) return;
    $('ann-welcome').classList.add('ann-hidden');
    try { localStorage.setItem(SEEN_KEY, '1'); } catch (err) { /* storage blocked: shown once per page */ }
  };
  // --- gold feedback (issue 17): after a gold answer, the expected one over the next record; Enter dismisses it
  const feedbackOpen = () => !!$('ann-feedback');
  const closeFeedback = () => { const card = $('ann-feedback'); if (card) { card.remove(); focusStage(); } };
  const showFeedback = (fb) => {
    closeFeedback();
    const card = document.createElement('div');
    card.id = 'ann-feedback'; card.setAttribute('role', 'alertdialog'); card.dataset.correct = String(!!fb.correct);
    card.style.cssText = 'position:fixed;left:50%;top:18%;transform:translateX(-50%);z-index:50;max-width:32rem;' +
      `padding:1rem 1.25rem;border-radius:.5rem;background:#fff;color:#111;box-shadow:0 8px 30px #0005;` +
      `border-left:.4rem solid ${fb.correct ? '#16a34a' : '#dc2626'}`;
    const shown = (v) => esc(Array.isArray(v) ? (v.length ? v.join(', ') : 'none') : String(v));
    const expected = Object.entries(fb.expected || {}).map(([q, v]) => shown(v) + (Object.keys(fb.expected).length > 1 ? ` (${esc(q)})` : '')).join('; ');
    card.innerHTML = `<strong>${fb.correct ? 'Right!' : 'Not quite.'}</strong> This was a practice image; the expected ` +
      `answer is <strong>${expected}</strong>.` + (fb.explanation ? `<p>${esc(fb.explanation)}</p>` : '') +
      '<p style="margin:.5rem 0 0;opacity:.7">Press Enter to go on.</p>';
    card.addEventListener('click', closeFeedback);
    document.body.appendChild(card);
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
        `annotated by others. The first one frees up ${esc(freesAt(view.frees_at))}; this page checks again by itself.</div>`;
    } else if (view.state === 'done') {
      box.innerHTML = '<div class="ann-state" id="ann-done">All done: there is nothing left for you to annotate. Thank you!</div>';
    } else if (view.state === 'signed_out' || view.state === 'quota') {
      box.innerHTML = `<div class="ann-state" id="ann-${view.state === 'quota' ? 'quota' : 'signin'}">${esc(view.message)}</div>`;
    } else {
      box.innerHTML = '<div class="ann-state" id="ann-loading">Loading the next image…</div>';
    }
  };
  // when a lease ends, in the person's own time zone (the server's clock is UTC on a Space), and saying so
  const freesAt = (epochSeconds) => {
    if (!epochSeconds) return 'soon';
    const at = new Date(epochSeconds * 1000), two = (n) => String(n).padStart(2, '0');
    const zone = (Intl.DateTimeFormat().resolvedOptions().timeZone || '').replace(/_/g, ' ');
    return `at ${two(at.getHours())}:${two(at.getMinutes())} your local time${zone ? ` (${zone})` : ''}`;
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
    view = adapt(view);  // issue 15
    A.view = view;
    if (view.feedback) showFeedback(view.feedback);
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
    if (Q) { Q.submit(); return; }  // issue 15: several questions
    const item = A.shown;
    if (!item) return;
    if (C.multi) {
      // the chosen labels in the task's order; with none chosen, Enter accepts the suggestion alone
      const chosen = C.labels.map((l) => l.name).filter((n) => A.selected.has(n));
      if (chosen.length) answer('answer', chosen);
      else if (item.suggestion && !item.editing) answer('answer', [item.suggestion]);
      else showError('Choose a label first, or press S to skip.');
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
      if (!A.shown) return;
      // a suggested label is not chosen yet: its key chooses it (confirms it); a chosen one's key un-chooses it
      const name = C.labels[i].name;
      if (A.selected.has(name)) A.selected.delete(name); else A.selected.add(name);
      renderChoices();
    } else {
      answer('answer', [C.labels[i].name]);
    }
  };
  const visible = () => { const root = $('ann-root'); return !!root && root.getClientRects().length > 0; };

  // --- the keys overlay (?) ----------------------------------------------------------------
  // G: the guidelines (Gradio's accordion under the view) as an overlay over the image, not in the page's flow
  const guidesOpen = () => { const g = $('ann-guidelines'); return !!g && g.classList.contains('ann-overlay'); };
  const toggleGuides = (open) => {
    const g = $('ann-guidelines'), head = g && g.querySelector('button');
    if (!g || !head) return;
    const body = g.querySelector('.prose, .md'), shown = !!body && body.getClientRects().length > 0;
    if (open !== shown) head.click();  // Gradio's accordion opens and closes from its own header
    g.classList.toggle('ann-overlay', open);
    if (open) { g.setAttribute('role', 'dialog'); g.setAttribute('aria-label', 'Guidelines'); head.focus(); }
    else { g.removeAttribute('role'); g.removeAttribute('aria-label'); focusStage(); }
  };
  const helpOpen = () => { const h = $('ann-help'); return !!h && !h.classList.contains('ann-hidden'); };
  const toggleHelp = (open) => {
    const h = $('ann-help');
    if (!h) return;
    h.classList.toggle('ann-hidden', !open);
    const hint = $('btn-help');
    if (hint) hint.setAttribute('aria-expanded', open ? 'true' : 'false');
    if (open) h.focus({preventScroll: true}); else focusStage();
  };

  document.addEventListener('click', (e) => {
    const b = e.target.closest && e.target.closest('#ann-root button');
    if (!b) return;
    closeWelcome();
    if (b.id === 'btn-comment') { if (commentBox().classList.contains('ann-hidden')) openComment(); else leaveComment(); return; }
    if (b.id.startsWith('label-')) pressLabel(Number(b.id.slice(6)));
    else if (b.id === 'btn-accept') accept();
    else if (b.id === 'btn-skip') answer('skip', null);
    else if (b.id === 'btn-back') back();
    else if (b.id === 'btn-help') { toggleHelp(true); return; }
    else if (b.id === 'btn-help-close') { toggleHelp(false); return; }
    else if (b.id !== 'btn-welcome') return;
    focusStage();  // not the button: Enter or Space must not press it again, and the keys keep working
  });
  const keyIndex = {};
  C.labels.forEach((l, i) => { if (l.key) keyIndex[l.key.toLowerCase()] = i; });
  const typingIn = (t) => !!t && (t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable ||
    (t.tagName === 'INPUT' && !['checkbox', 'radio', 'button', 'submit', 'reset', 'range'].includes(t.type)));
  document.addEventListener('keydown', (e) => {
    if (e.isComposing || !visible() || !A.view || A.view.state === 'signed_out') return;
    const t = (e.composedPath && e.composedPath()[0]) || e.target;
    if (feedbackOpen()) {  // modal: read it first; Enter (or Esc) dismisses it
      if (e.key !== 'Tab') e.preventDefault();
      if (e.key === 'Enter' || e.key === 'Escape') closeFeedback();
      return;
    }
    if (helpOpen()) {  // the overlay is modal: Esc or ? closes it, other keys do nothing behind it
      if (e.key === 'Escape' || e.key === '?') { e.preventDefault(); toggleHelp(false); }
      else if (e.key !== 'Tab') e.preventDefault();
      return;
    }
    if (guidesOpen()) {  // modal as the help is: Esc or G closes it, other keys do nothing behind it
      if (e.key === 'Escape' || e.key.toLowerCase() === 'g') { e.preventDefault(); toggleGuides(false); }
      else if (e.key !== 'Tab' && e.key !== 'Enter' && e.key !== ' ') e.preventDefault();
      return;
    }
    if (welcomeOpen() && !['Shift', 'Control', 'Alt', 'Meta', 'Tab'].includes(e.key)) {
      closeWelcome();  // the person starts: Enter and Esc only close the card, any other key acts as well
      if (e.key === 'Enter' || e.key === 'Escape') { e.preventDefault(); focusStage(); return; }
    }
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey) && !e.altKey) {  // submit from the comment, or anywhere
      e.preventDefault();
      if (!e.repeat) { accept(); focusStage(); }
      return;
    }
    if (Q && Q.key(e, t)) return;  // issue 15: Tab between questions, the active question's keys
    if (typingIn(t)) {  // a text field keeps every key it types; Esc leaves it
      if (e.key === 'Escape') { e.preventDefault(); t.blur(); if (t.closest('#ann-comment')) leaveComment(); else focusStage(); }
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const stage = $('ann-image'), step = stage ? PAN_STEP * Math.min(stage.clientWidth, stage.clientHeight) : 0;
    const pans = {ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step]};
    let hit = true;
    if (k in keyIndex) pressLabel(keyIndex[k]);
    else if (k === 'Enter') accept();
    else if (k === 's') answer('skip', null);
    else if (k === 'Backspace') back();
    else if (k === '?') toggleHelp(true);
    else if (k === 'g') toggleGuides(true);
    else if (k === 'c' && commentBox()) openComment();
    else if (k === '+' || k === '=') zoomTo(Z.scale * ZOOM_STEP);
    else if (k === '-') zoomTo(Z.scale / ZOOM_STEP);
    else if (k === '0') zoomTo(1);
    else if (k in pans && Z.scale > 1) panBy(...pans[k]);
    else if (k === 'Escape') { zoomTo(1); focusStage(); }
    else hit = false;
    if (!hit) return;
    e.preventDefault();  // else Enter or Space would also press a focused button
    if (t && t.tagName === 'BUTTON' && document.activeElement === t) focusStage();  // unless the key moved focus (C)
  });

  // --- start: the page load event hands over the first view; a re-drawn view is drawn again ---------
  // the file may load after Gradio drew the view (it is fetched, not inline): look once now, then on changes
  const bootOnce = () => {
    const boot = $('ann-boot-data');
    if (boot && boot.dataset.view && !boot.dataset.used) {
      boot.dataset.used = '1';
      const view = JSON.parse(boot.dataset.view);
      if (view.state === 'signed_out') { A.view = view; renderState(view); renderControls(); }
      else { apply(view); showWelcome(); }
      // the buffer fills just after the first view: ask once for it, so the first answer swaps at once too
      if (view.state === 'ready' && !view.upcoming.length) setTimeout(() => enqueue({path: 'next', body: {}, refill: true}), 700);
      if (unsaved()) checkSaved();  // answers of an earlier visit not committed yet
    }
    const root = $('ann-root');
    if (root && !root.dataset.bound) { root.dataset.bound = '1'; renderAll(); }
  };
  new MutationObserver(bootOnce).observe(document.documentElement, {childList: true, subtree: true});
  bootOnce();
};

  // Gradio adds the <head> elements itself, in order: the config is there before this file runs, but
  // wait for it all the same rather than run without it
  const readConfig = () => {
    const el = document.getElementById('ann-config');
    return el ? JSON.parse(el.textContent) : null;
  };
  const found = readConfig();
  if (found) annStart(found);
  else {
    const wait = new MutationObserver(() => {
      const c = readConfig();
      if (c) { wait.disconnect(); annStart(c); }
    });
    wait.observe(document.documentElement, {childList: true, subtree: true});
  }
})();
