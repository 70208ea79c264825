// The drawing layer of a `boxes` question (issue 16): an SVG over the record's image, inside the zoom layer
// (#ann-zoom), so the boxes scale and move with the image. questions.js makes one for the task's boxes
// question and calls it where a record is shown, a key is pressed and Enter submits; annotate.js asks it
// whether a pointer draws (then that drag does not pan). A task without a boxes question never loads this file.
//
// Coordinates are the original image's pixels as shown (the item's width/height, after EXIF rotation): the
// SVG's viewBox is 0 0 width height with preserveAspectRatio "meet", which places it exactly as the image's
// object-fit: contain does, whatever rendition (display or /large) fills it, and its screen matrix (CSS zoom
// included) turns a pointer into image pixels. Boxes are clamped to the image and rounded to 0.1 px.
//
// The model: the boxes of the record on screen (a list the question holds: {label, bbox: [x, y, w, h]},
// `suggested: true` on a pre-label left as it came), one selected box or none, the label new boxes get (the
// last label key pressed), and an undo stack per record. A drag draws; a click selects the smallest box under
// it (or nothing); a drag starting on the selected box moves it. While a pointer moves, only numbers are
// stored: the SVG is written once per animation frame.
(() => {
  'use strict';
  const NS = 'http://www.w3.org/2000/svg';
  const CLICK_PX = 4;     // a pointer that moved less than this (screen px) clicked rather than dragged
  const UNDO_LIMIT = 200;
  const round = (v) => Math.round(v * 10) / 10;

  window.annBoxes = (spec, host) => {
    const labels = spec.labels.map((l) => l.name);
    const B = {list: [], sel: -1, label: labels[0], undo: [], W: 1, H: 1, space: false, font: 13};
    // the pointer at work: its id, what it does (draw or move), where it started and is now (client px),
    // and the image-from-screen matrix taken when it went down (the zoom does not change mid-drag)
    const P = {id: null, mode: '', sx: 0, sy: 0, cx: 0, cy: 0, moved: false, a: 1, b: 0, c: 0, d: 1, e: 0, f: 0,
               box: [0, 0, 0, 0]};
    let frame = 0;

    // --- the SVG, made once and moved into each record's zoom layer ------------------------------------
    const svg = document.createElementNS(NS, 'svg');
    svg.id = 'ann-boxes';
    svg.setAttribute('class', 'ann-boxes');
    svg.setAttribute('aria-hidden', 'true');  // the list is spoken as text (host.say), not as shapes
    svg.setAttribute('preserveAspectRatio', 'xMidYMid meet');
    const group = document.createElementNS(NS, 'g');
    const draft = document.createElementNS(NS, 'rect');
    draft.setAttribute('class', 'ann-box-draft');
    draft.setAttribute('visibility', 'hidden');
    svg.append(group, draft);
    const pool = [];  // one <g><rect/><text/></g> per box, reused from record to record
    const shape = (i) => {
      while (pool.length <= i) {
        const g = document.createElementNS(NS, 'g'), r = document.createElementNS(NS, 'rect');
        const t = document.createElementNS(NS, 'text');
        g.append(r, t);
        group.appendChild(g);
        pool.push({g, r, t});
      }
      return pool[i];
    };
    const setRect = (r, x, y, w, h) => {
      r.setAttribute('x', x); r.setAttribute('y', y); r.setAttribute('width', w); r.setAttribute('height', h);
    };

    // screen pixels per image pixel now (zoom included): the label's size and a key's step follow it
    const pxPerUnit = () => { const m = svg.getScreenCTM(); return m && m.a > 0 ? m.a : 1; };
    // a box's rectangle and its label above it (inside it at the image's top edge)
    const place = (s, x, y, w, h) => {
      setRect(s.r, x, y, w, h);
      s.t.setAttribute('x', x); s.t.setAttribute('y', y > B.font * 1.2 ? y - B.font * 0.3 : y + B.font);
    };
    // once per animation frame: every box when the list changed (`full`), else only what a pointer drags (the
    // draft, or the selected box being moved): a drag reads no layout and writes four numbers per frame
    let full = false;
    const draw = () => {
      frame = 0;
      if (P.id !== null && P.moved) dragged();
      const moving = P.id !== null && P.moved && P.mode === 'move';
      if (full) {
        full = false;
        B.font = 13 / pxPerUnit();
        B.list.forEach((box, i) => {
          const s = shape(i), [x, y, w, h] = box.bbox;
          s.g.setAttribute('class', `ann-box ann-box-c${labels.indexOf(box.label) % 8}` +
            (box.suggested ? ' ann-box-suggested' : '') + (i === B.sel ? ' ann-box-selected' : ''));
          s.g.removeAttribute('display');
          s.t.setAttribute('font-size', B.font);
          s.t.textContent = box.suggested ? `${box.label} (suggested)` : box.label;
          place(s, x, y, w, h);
        });
        for (let i = B.list.length; i < pool.length; i++) pool[i].g.setAttribute('display', 'none');
      }
      if (moving) place(pool[B.sel], P.box[0], P.box[1], P.box[2], P.box[3]);
      if (P.id !== null && P.moved && P.mode === 'draw') {
        draft.setAttribute('class', `ann-box-draft ann-box-c${labels.indexOf(B.label) % 8}`);
        setRect(draft, P.box[0], P.box[1], P.box[2], P.box[3]);
        draft.setAttribute('visibility', 'visible');
      } else {
        draft.setAttribute('visibility', 'hidden');
      }
    };
    const redraw = (all = true) => {
      full = full || all;
      if (!frame) frame = requestAnimationFrame(draw);
    };

    // what a screen reader hears and the question shows: how many boxes, their labels, the selection
    const say = () => {
      const n = B.list.length, names = B.list.slice(0, 20).map((b) => b.label);
      let text = n ? `${n} box${n === 1 ? '' : 'es'}: ${names.join(', ')}${n > 20 ? ` and ${n - 20} more` : ''}` : 'No boxes';
      if (B.sel >= 0) text += `. Selected: box ${B.sel + 1}, ${B.list[B.sel].label}`;
      host.say(`${text}.`, B.label);
    };
    const changed = () => { redraw(); say(); host.showError(''); host.changed(); };  // a message on Enter is stale now

    // --- changes, each undoable ----------------------------------------------------------------------
    const copy = (box) => ({label: box.label, bbox: box.bbox.slice(), ...(box.suggested ? {suggested: true} : {})});
    const remember = () => {
      B.undo.push({list: B.list.map(copy), sel: B.sel});
      if (B.undo.length > UNDO_LIMIT) B.undo.shift();
    };
    const undo = () => {
      const last = B.undo.pop();
      if (!last) return;
      B.list.splice(0, B.list.length, ...last.list);
      B.sel = last.sel < B.list.length ? last.sel : -1;
      changed();
    };
    // a box inside the image, rounded to 0.1 px, or null when nothing of it is left
    const clampBox = (x, y, w, h) => {
      const x0 = Math.min(B.W, Math.max(0, x)), y0 = Math.min(B.H, Math.max(0, y));
      const x1 = Math.min(B.W, Math.max(0, x + w)), y1 = Math.min(B.H, Math.max(0, y + h));
      const rx = round(x0), ry = round(y0), rw = round(round(x1) - rx), rh = round(round(y1) - ry);
      return rw > 0 && rh > 0 ? [rx, ry, rw, rh] : null;
    };
    // a pre-label that is changed is no longer the suggestion as it came
    const setBox = (i, bbox, label) => {
      const box = B.list[i];
      B.list[i] = {label: label || box.label, bbox};
    };
    const add = (bbox) => {
      if (B.list.length >= spec.max_boxes) {
        host.showError(`“${spec.title}” takes at most ${spec.max_boxes} boxes; remove one first (select it, Delete).`);
        return;
      }
      remember();
      B.list.push({label: B.label, bbox});
      host.activate();  // drawing makes the boxes question the outlined one: the label keys are its own now
      changed();
    };
    const select = (i) => {
      B.sel = i;
      if (i >= 0) host.activate();
      redraw(); say();
    };
    const remove = () => {
      remember();
      B.list.splice(B.sel, 1);
      B.sel = -1;
      changed();
    };
    // arrows: move the selected box by a screen pixel (Shift: its right or bottom edge), kept inside the image
    const nudge = (key, resize, repeat) => {
      const step = Math.max(0.1, 1 / pxPerUnit()), [x, y, w, h] = B.list[B.sel].bbox;
      const dx = key === 'ArrowLeft' ? -step : key === 'ArrowRight' ? step : 0;
      const dy = key === 'ArrowUp' ? -step : key === 'ArrowDown' ? step : 0;
      const next = resize ? clampBox(x, y, Math.max(0.1, w + dx), Math.max(0.1, h + dy))
        : clampBox(Math.min(B.W - w, Math.max(0, x + dx)), Math.min(B.H - h, Math.max(0, y + dy)), w, h);
      if (!next) return;
      if (!repeat) remember();  // a held key is one step to undo
      setBox(B.sel, next);
      changed();
    };

    // --- pointers: draw, click to select, drag the selected box ----------------------------------------
    const imageX = (cx, cy) => P.a * cx + P.c * cy + P.e, imageY = (cx, cy) => P.b * cx + P.d * cy + P.f;
    const within = (box, x, y) => x >= box.bbox[0] && x <= box.bbox[0] + box.bbox[2] &&
      y >= box.bbox[1] && y <= box.bbox[1] + box.bbox[3];
    // P.box from where the pointer went down and where it is: the draft, or the selected box moved
    function dragged() {
      const x0 = imageX(P.sx, P.sy), y0 = imageY(P.sx, P.sy), x1 = imageX(P.cx, P.cy), y1 = imageY(P.cx, P.cy);
      if (P.mode === 'draw') {
        P.box[0] = Math.max(0, Math.min(x0, x1)); P.box[1] = Math.max(0, Math.min(y0, y1));
        P.box[2] = Math.min(B.W, Math.max(x0, x1)) - P.box[0]; P.box[3] = Math.min(B.H, Math.max(y0, y1)) - P.box[1];
      } else {
        const [x, y, w, h] = B.list[B.sel].bbox;
        P.box[0] = Math.min(B.W - w, Math.max(0, x + x1 - x0)); P.box[1] = Math.min(B.H - h, Math.max(0, y + y1 - y0));
        P.box[2] = w; P.box[3] = h;
      }
    }
    const cancel = () => { P.id = null; redraw(); };
    svg.addEventListener('pointerdown', (e) => {
      if (P.id !== null) { cancel(); return; }  // a second finger: the two pinch (annotate.js), nothing is drawn
      if (B.space || (e.pointerType === 'mouse' && e.button !== 0) || !host.shown()) return;  // Space+drag pans
      const m = svg.getScreenCTM();
      if (!m) return;
      const inv = m.inverse();
      Object.assign(P, {id: e.pointerId, sx: e.clientX, sy: e.clientY, cx: e.clientX, cy: e.clientY, moved: false,
                        a: inv.a, b: inv.b, c: inv.c, d: inv.d, e: inv.e, f: inv.f});
      P.mode = B.sel >= 0 && within(B.list[B.sel], imageX(P.sx, P.sy), imageY(P.sx, P.sy)) ? 'move' : 'draw';
    });
    document.addEventListener('pointermove', (e) => {
      if (e.pointerId !== P.id) return;
      P.cx = e.clientX; P.cy = e.clientY;
      if (!P.moved && Math.hypot(P.cx - P.sx, P.cy - P.sy) < CLICK_PX) return;
      P.moved = true;
      redraw(false);  // the frame computes the box: many moves between two frames cost nothing
    });
    document.addEventListener('pointerup', (e) => {
      if (e.pointerId !== P.id) return;
      P.cx = e.clientX; P.cy = e.clientY;
      const mode = P.mode, moved = P.moved;
      if (moved) dragged();
      P.id = null;
      if (!moved) {  // a click: the smallest box under it, or none
        const x = imageX(P.cx, P.cy), y = imageY(P.cx, P.cy);
        let best = -1;
        B.list.forEach((box, i) => {
          if (within(box, x, y) && (best < 0 || box.bbox[2] * box.bbox[3] < B.list[best].bbox[2] * B.list[best].bbox[3])) best = i;
        });
        select(best);
        return;
      }
      const bbox = clampBox(...P.box);
      if (bbox && mode === 'draw') add(bbox);
      else if (bbox && mode === 'move') { remember(); setBox(B.sel, bbox); changed(); }
      else redraw();
    });
    document.addEventListener('pointercancel', (e) => { if (e.pointerId === P.id) cancel(); });
    // a zoom or a new window size: the labels' text is sized again for the screen (strokes never scale)
    const zoomed = new MutationObserver(() => redraw());
    window.addEventListener('resize', () => redraw());
    // Space held: a drag pans a zoomed image instead of drawing
    const spaceHeld = (on) => { B.space = on; svg.classList.toggle('ann-boxes-pan', on); };
    document.addEventListener('keyup', (e) => { if (e.key === ' ') spaceHeld(false); });
    window.addEventListener('blur', () => spaceHeld(false));

    // --- what questions.js calls ---------------------------------------------------------------------
    return {
      // a record on screen: its boxes (the question's list, changed in place) in its image's zoom layer
      show(list, item, fresh) {
        B.list = list; B.W = item.width; B.H = item.height;
        if (fresh) { B.sel = -1; B.undo = []; P.id = null; }
        svg.setAttribute('viewBox', `0 0 ${B.W} ${B.H}`);
        const layer = document.getElementById('ann-zoom');
        if (layer && svg.parentNode !== layer) {
          layer.appendChild(svg);
          zoomed.disconnect();
          zoomed.observe(layer, {attributes: true, attributeFilter: ['style']});
        }
        redraw(); say();
      },
      // a label key or chip: new boxes get it, and the selected box becomes one
      press(name) {
        B.label = name;
        if (B.sel >= 0 && B.list[B.sel].label !== name) { remember(); setBox(B.sel, B.list[B.sel].bbox, name); changed(); }
        else say();
      },
      activeLabel: () => B.label,
      // Tab within the boxes: the next (previous) box; false when it runs off the end (the question is left)
      tab(dir) {
        const next = B.sel < 0 ? (dir > 0 ? 0 : B.list.length - 1) : B.sel + dir;
        if (next < 0 || next >= B.list.length) { select(-1); return false; }
        select(next);
        return true;
      },
      // the keys that act on the boxes; true when the key was taken
      key(e) {
        const k = e.key;
        if ((e.ctrlKey || e.metaKey) && !e.altKey && !e.shiftKey && k.toLowerCase() === 'z') {
          e.preventDefault(); undo(); return true;
        }
        if (e.ctrlKey || e.metaKey || e.altKey) return false;
        if (k === ' ') { e.preventDefault(); spaceHeld(true); return true; }
        if (B.sel < 0) return false;
        if (k === 'Delete' || k === 'Backspace') remove();
        else if (k === 'Escape') select(-1);
        else if (k.startsWith('Arrow')) nudge(k, e.shiftKey, e.repeat);
        else return false;
        e.preventDefault();
        return true;
      },
      // a pointer this layer took (it draws or moves a box): annotate.js does not pan with it
      draws: (e) => e.pointerId === P.id,
      // what Enter sends: the boxes as drawn (a pre-label left as it came keeps `suggested: true`)
      value: () => B.list.map(copy),
      count: () => B.list.length,
    };
  };
})();
