// The review section's keys (issue 17, adjudication): while the admin's Review section is on screen, the task's
// keys choose the final answer as when annotating (a label's key, a rating's last digit; on a labels question
// the key toggles the label) and Enter saves it and opens the next record of the list. Keys typed into a text
// field stay there. The keys come from the server as inert JSON (#review-config); the server checks every
// final answer again, so this script only clicks the page's own controls.
(() => {
  'use strict';
  const config = JSON.parse(document.getElementById('review-config')?.textContent || '{"questions": []}');
  const typing = (t) => t instanceof HTMLElement && (t.isContentEditable || t.tagName === 'TEXTAREA' ||
    t.tagName === 'SELECT' || (t.tagName === 'INPUT' && !['radio', 'checkbox', 'button'].includes(t.type)));
  const shown = () => {
    const box = document.getElementById('review-box');
    return box !== null && box.offsetParent !== null && document.getElementById('review-record')
      ?.querySelector('input, textarea')?.value;
  };

  // the radio or checkbox of question `name` that stands for `value` (Gradio gives it that value)
  const control = (name, value) => [...document.querySelectorAll(`#review-q-${name} input`)]
    .find((input) => input.value === value) || null;

  document.addEventListener('keydown', (e) => {
    if (e.isComposing || e.ctrlKey || e.metaKey || e.altKey || e.repeat || !shown()) return;
    const t = (e.composedPath && e.composedPath()[0]) || e.target;
    if (typing(t)) return;
    if (e.key === 'Enter') {
      e.preventDefault();
      document.querySelector('#review-save')?.click();
      return;
    }
    for (const q of config.questions) {
      const value = q.keys[e.key] ?? q.keys[e.key.toLowerCase()];
      const input = value === undefined ? null : control(q.name, value);
      if (input) {
        e.preventDefault();
        input.click();
        return;
      }
    }
  });
})();
