// The annotate page's questions when a task asks several (or a rating or a text): annotator/ui/annotate.py
// draws one block per question (#ann-q-<i>), annotate.js calls the object made here at the few places where
// a record is shown, a key is pressed and Enter submits. A task of one label (or labels) question never
// loads this file: annotate.js answers it as it always did.
//
// The model: one question is ACTIVE (outlined, aria-current) and takes the keys; Tab / Shift+Tab move
// between questions, a question answered by a key hands over to the next one. Each question holds what the
// person chose; a record's suggestion is shown as "suggested" (not chosen) and counts as the answer when
// nothing is chosen, as Enter accepts a suggestion on a one-question page. Enter submits once every
// required question has a value, else says which one has none and makes it the active one.
(() => {
  'use strict';
  window.annQuestions = (C, host) => {
    const QS = C.questions;
    const $ = (id) => document.getElementById(id);
    const block = (i) => $(`ann-q-${i}`);
    const box = (i) => { const b = block(i); return b ? b.querySelector('textarea') : null; };
    const S = {key: null, active: 0, chosen: [], suggested: {}, typed: []};  // typed: text boxes edited by hand
    const kept = new Map();  // record -> its state, so a record that comes back (a refused answer) keeps it
    // issue 16: the boxes question draws on the image (static/boxes.js, loaded with this file when the task has
    // one); its value is the list of boxes, kept in S.chosen like any other question's
    const boxIndex = QS.findIndex((q) => q.kind === 'boxes');
    const B = boxIndex < 0 ? null : window.annBoxes(QS[boxIndex], {
      shown: host.shown, showError: host.showError, changed: () => render(),
      activate: () => { if (S.active !== boxIndex) { S.active = boxIndex; render(); } },
      say: (text, label) => {
        const live = $(`ann-q-${boxIndex}-boxes`), now = $(`ann-q-${boxIndex}-label`);
        if (live && live.textContent !== text) live.textContent = text;
        if (now && now.textContent !== label) now.textContent = label;
        render();
      }});
    const boxProblem = (i) => {
      const q = QS[i], n = S.chosen[i].length;
      if (q.required && n < q.min_boxes) return `Draw at least ${q.min_boxes} box${q.min_boxes === 1 ? '' : 'es'} for “${q.title}” (${n} drawn), or press S to skip this image.`;
      return n > q.max_boxes ? `“${q.title}” takes at most ${q.max_boxes} boxes (${n} drawn); remove some first.` : null;
    };

    // a question's value as it would be sent: what was chosen, else the suggestion; null: none
    const valueOf = (i) => {
      const q = QS[i], chosen = S.chosen[i];
      if (q.kind === 'text') { const b = box(i); const v = b ? b.value.trim() : ''; return v || null; }
      if (q.kind === 'boxes') return chosen.length || q.required ? B.value() : null;  // required: none is an answer
      if (q.kind === 'labels') {
        if (chosen.size) return q.labels.map((l) => l.name).filter((n) => chosen.has(n));
        const s = S.suggested[q.name];
        return s && s.length ? s : null;
      }
      return chosen !== null ? chosen : (S.suggested[q.name] ?? null);
    };
    const chars = (text) => [...text].length;  // characters as the server counts them (an emoji is one)
    const textProblem = (i) => {
      const q = QS[i], v = valueOf(i);
      if (q.kind !== 'text' || v === null) return null;
      const n = chars(v);
      if (n < q.min_chars) return `“${q.title}” is too short (${n} characters); write at least ${q.min_chars}.`;
      if (n > q.max_chars) return `“${q.title}” is too long (${n} characters); keep it to at most ${q.max_chars}.`;
      return null;
    };
    const summary = (answers) => QS.filter((q) => answers[q.name] !== undefined).map((q) => {
      const v = answers[q.name];
      const text = q.kind === 'boxes' ? `${v.length} box${v.length === 1 ? '' : 'es'}`
        : Array.isArray(v) ? v.join(', ') || 'none' : String(v);
      return text.length > 40 ? text.slice(0, 39) + '…' : text;
    });

    // --- drawing ---------------------------------------------------------------------------------
    const render = () => {
      QS.forEach((q, i) => {
        const b = block(i);
        if (!b) return;
        const active = i === S.active;
        b.classList.toggle('ann-active', active);
        if (active) b.setAttribute('aria-current', 'true'); else b.removeAttribute('aria-current');
        if (valueOf(i) !== null) b.classList.remove('ann-missing');
        if (q.kind === 'text') {
          const t = box(i), count = $(`ann-q-${i}-count`);
          t.classList.toggle('ann-suggested-text', !S.typed[i] && !!S.suggested[q.name] && t.value === S.suggested[q.name]);
          if (count) count.textContent = `${chars(t.value.trim())} / ${q.min_chars ? q.min_chars + '–' : 'at most '}${q.max_chars} characters`;
          return;
        }
        const chosen = q.kind === 'boxes' ? B.activeLabel() : S.chosen[i], suggested = S.suggested[q.name];
        b.querySelectorAll('button.ann-chip').forEach((c) => {
          const v = q.kind === 'rating' ? Number(c.dataset.value) : c.dataset.value;
          const on = q.kind === 'labels' ? chosen.has(v) : chosen === v;
          const nothing = q.kind === 'labels' ? !chosen.size : chosen === null;
          const hinted = q.kind === 'labels' ? !!suggested && suggested.includes(v) : q.kind !== 'boxes' && suggested === v;
          c.classList.toggle('ann-selected', on);
          c.classList.toggle('ann-suggested', nothing && hinted);
          c.setAttribute('aria-pressed', on ? 'true' : 'false');
        });
      });
    };
    const activate = (i, focusText) => {
      S.active = (i + QS.length) % QS.length;
      render();
      const t = box(S.active);
      if (t && focusText) t.focus({preventScroll: true});
      else if (host.typing(document.activeElement)) host.focusStage();  // Tab out of a text box: the keys work again
    };

    // --- what the person does ----------------------------------------------------------------------
    // a label or rating value: choose it (a chosen one again un-chooses it); one value answers the question,
    // so the next one becomes active (by a key, a text box next takes the typing at once); a list of labels
    // stays active for more
    const press = (i, value, byKey) => {
      const q = QS[i];
      S.active = i;
      if (q.kind === 'boxes') { B.press(value); return; }  // the label of new boxes, and of the selected one
      if (q.kind === 'labels') {
        if (S.chosen[i].has(value)) S.chosen[i].delete(value); else S.chosen[i].add(value);
        render();
        return;
      }
      const again = S.chosen[i] === value;
      S.chosen[i] = again ? null : value;
      if (again || i === QS.length - 1) render(); else activate(i + 1, byKey);
    };
    const submit = () => {
      const missing = QS.findIndex((q, i) => q.required && valueOf(i) === null);
      if (missing >= 0) {
        const q = QS[missing];
        block(missing).classList.add('ann-missing');
        activate(missing, q.kind === 'text');
        host.showError(`Answer “${q.title}” first (it is required), or press S to skip this image.`);
        return;
      }
      const few = QS.findIndex((q, i) => q.kind === 'boxes' && boxProblem(i) !== null);
      if (few >= 0) { activate(few, false); host.showError(boxProblem(few)); return; }
      const long = QS.findIndex((q, i) => textProblem(i) !== null);
      if (long >= 0) { activate(long, true); host.showError(textProblem(long)); return; }
      const answer = {};
      QS.forEach((q, i) => { const v = valueOf(i); if (v !== null) answer[q.name] = v; });
      host.answer(answer);
    };
    // the keys of the active question first, then a text question's key (it focuses that box)
    const keyFor = (k) => {
      const q = QS[S.active];
      if (q.kind === 'label' || q.kind === 'labels' || q.kind === 'boxes' || q.kind === 'preference') {
        const l = q.labels.find((x) => x.key && x.key.toLowerCase() === k);
        if (l) return () => press(S.active, l.name, true);
      } else if (q.kind === 'rating') {
        const v = Object.keys(q.keys).find((value) => q.keys[value] === k);
        if (v !== undefined) return () => press(S.active, Number(v), true);
      }
      const t = QS.findIndex((x) => x.kind === 'text' && x.key && x.key === k);
      return t >= 0 ? () => activate(t, true) : null;
    };
    const key = (e, target) => {
      // the boxes' own keys (Ctrl+Z, Delete, arrows and Esc on a selected box) come first, outside text boxes
      if (B && host.shown() && !host.typing(target) && B.key(e)) return true;
      if (e.ctrlKey || e.metaKey || e.altKey) return false;
      const inPage = !target || target === document.body || !!(target.closest && target.closest('#ann-root'));
      if (e.key === 'Tab' && inPage && host.shown()) {
        e.preventDefault();
        // on the boxes question Tab walks its boxes first, and leaves it after the last (Shift+Tab: the first)
        if (S.active !== boxIndex || !B.tab(e.shiftKey ? -1 : 1)) activate(S.active + (e.shiftKey ? -1 : 1), true);
        return true;
      }
      if (host.typing(target) || !host.shown()) return false;
      const act = keyFor(e.key.length === 1 ? e.key.toLowerCase() : e.key);
      if (!act) return false;
      e.preventDefault();
      if (!e.repeat) act();
      return true;
    };

    // a click on a chip chooses its value; a click into a question makes it the active one
    document.addEventListener('click', (e) => {
      const c = e.target.closest && e.target.closest('.ann-q button.ann-chip');
      if (!c || !host.shown()) return;
      const i = Number(c.closest('.ann-q').dataset.q);
      press(i, QS[i].kind === 'rating' ? Number(c.dataset.value) : c.dataset.value, false);
      host.focusStage();
    });
    document.addEventListener('focusin', (e) => {
      const b = e.target.closest && e.target.closest('.ann-q');
      if (b && Number(b.dataset.q) !== S.active) { S.active = Number(b.dataset.q); render(); }
    });
    document.addEventListener('input', (e) => {
      const b = e.target.closest && e.target.closest('.ann-q');
      if (b && e.target.tagName === 'TEXTAREA') { S.typed[Number(b.dataset.q)] = true; render(); }
    });

    // a record on screen: its own state if it was shown before, else its earlier answer (Back) or its
    // suggestion, with the first question active
    const show = (item) => {
      const k = `${item.record_id}${item.editing ? ':earlier' : ''}`;
      if (S.key === k) { render(); if (B) B.show(S.chosen[boxIndex], item, false); return; }
      if (S.key !== null) {
        S.texts = QS.map((q, i) => (box(i) ? box(i).value : null));
        kept.set(S.key, {...S});
        while (kept.size > 8) kept.delete(kept.keys().next().value);
      }
      const earlier = item.editing ? item.answers : {};
      const back = kept.get(k);
      Object.assign(S, back || {
        key: k, active: 0, suggested: item.editing ? {} : item.suggested, typed: QS.map(() => false),
        chosen: QS.map((q) => (q.kind === 'labels' ? new Set(earlier[q.name] || [])
          : q.kind === 'boxes' ? startBoxes(item, q) : (earlier[q.name] ?? null))),
        texts: QS.map((q) => (q.kind === 'text' ? earlier[q.name] ?? (item.editing ? '' : item.suggested[q.name] ?? '') : null)),
      });
      QS.forEach((q, i) => { const t = box(i); if (t) t.value = S.texts[i] ?? ''; });
      render();
      if (B) B.show(S.chosen[boxIndex], item, true);
    };
    // a record's boxes at first: its earlier answer's (Back), else its pre-labels, marked suggested
    const startBoxes = (item, q) => {
      const from = item.editing ? item.answers[q.name] : item.suggested[q.name];
      return (Array.isArray(from) ? from : []).map((b) => ({label: b.label, bbox: b.bbox.slice(),
                                                             ...(b.suggested || !item.editing ? {suggested: true} : {})}));
    };
    // the server sends an answer and a suggestion by question name: kept as `answers` and `suggested`;
    // `answer` becomes the values in question order (the page's "Changing your earlier answer: …") and the
    // one-question `suggestion` none (the questions show theirs)
    const adaptItem = (item) => ({...item, answers: item.answer, suggested: item.suggestion,
                                   answer: summary(item.answer), suggestion: null});
    const draws = (e) => !!B && B.draws(e);  // a pointer that draws a box: annotate.js does not pan with it
    return {adaptItem, show, key, submit, draws};
  };
})();
