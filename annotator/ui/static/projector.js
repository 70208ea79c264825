// The projector view's script: asks the page's data route (main[data-src]) every `refresh_seconds` and draws
// the goal bar, the estimated finish (in this browser's time zone, named), the answers per minute, the
// labels and the leaderboard when the server sends one. Every string from the server goes in as text,
// never as HTML. One request per interval per screen; the server shares one computation between screens.
(() => {
  'use strict';
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = String(text);
    return node;
  };
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const day = (iso) => new Date(iso).toDateString() === new Date().toDateString() ? ''
    : ' ' + new Date(iso).toLocaleDateString([], { weekday: 'short', day: 'numeric', month: 'short' });
  const num = (n) => Number(n).toLocaleString();
  let timer = null;
  let every = 5;

  const renderGoal = (g) => {
    const text = $('proj-goal-text');
    text.replaceChildren(el('span', null, `${num(g.done)} `),
      el('span', 'proj-of', `of ${num(g.target)} ${g.unit === 'answers' ? 'answers' : 'records complete'}`),
      el('span', null, ` · ${g.percent}%`));
    $('proj-bar-fill').style.width = `${Math.min(100, g.percent)}%`;
    $('proj-bar').setAttribute('aria-valuenow', String(g.percent));
    $('proj-bar').setAttribute('aria-label', `Team goal: ${g.text}`);
    const est = $('proj-estimate');
    est.replaceChildren();
    if (g.reached) {
      est.append(el('b', null, 'Goal reached!'), ` ${g.text}.`);
    } else if (g.finish_at) {
      est.append('Estimated finish at the current pace: ',
        el('b', null, `${clock(g.finish_at)}${day(g.finish_at)}`), ` (${zone})`,
        ` · ${num(g.remaining_answers)} answers to go`);
    } else {
      est.append('Estimated finish: ', el('b', null, 'as soon as answers come in'),
        ` · ${num(g.remaining_answers)} answers to go`);
    }
    if (!g.reachable) {
      est.append(el('div', 'proj-warn', `The goal is more than this task holds (${num(g.possible)} ` +
        `${g.unit === 'answers' ? 'answers' : 'records'}); an organizer can lower GOAL.`));
    }
  };

  const renderPace = (data) => {
    const g = data.goal;
    $('proj-rate').replaceChildren(el('span', null, g.per_minute), el('small', null, ' a minute, last 10 minutes'));
    const cols = $('proj-minutes');
    const top = Math.max(1, ...data.minutes.map((m) => m[1]));
    cols.replaceChildren(...data.minutes.map(([at, n]) => {
      const bar = el('div');
      bar.style.height = `${(100 * n) / top}%`;
      bar.title = `${clock(at)}: ${n}`;
      return bar;
    }));
    cols.setAttribute('aria-label', `answers in each of the last ${data.minutes.length} minutes`);
  };

  // [question's title, label, answers]: the question's title heads its labels when the task asks several
  const renderLabels = (labels) => {
    const box = $('proj-label-bars');
    const top = Math.max(1, ...labels.map((l) => l[2]));
    const several = new Set(labels.map((l) => l[0])).size > 1;
    const rows = [];
    let heading = null;
    for (const [question, name, n] of labels) {
      if (several && question !== heading) {
        heading = question;
        rows.push(el('div', 'proj-question', question));
      }
      const track = el('div', 'proj-track');
      const fill = el('div', 'proj-fill');
      fill.style.width = `${(100 * n) / top}%`;   // from zero: the smallest label is never cut away
      track.append(fill);
      rows.push(el('div', 'proj-name', name), track, el('div', 'proj-n', num(n)));
    }
    box.replaceChildren(...rows);
  };

  const renderBoard = (board) => {
    const box = $('proj-board');
    box.hidden = !board;
    if (!board) return;
    const rows = board.rows.map((r) => {
      const li = el('li');
      const agree = r.agreement === null ? '' : `, ${r.agreement}% agree`;
      li.append(el('span', 'proj-rank', `${r.rank}.`), el('span', 'proj-who', r.name),
        el('span', 'proj-score', `${num(r.answers)} answers${agree}`));
      return li;
    });
    $('proj-board-rows').replaceChildren(...rows);
    let how = board.how;
    if (!board.rows.length) how = 'Nobody is ranked yet: people are ranked once their answers can be compared ' +
      'with others\' on the same images. ' + how;
    else if (board.unranked) how += ` ${board.unranked} more not ranked yet (no answer compared).`;
    $('proj-board-how').textContent = how;
  };

  const status = (text, error, link) => {
    const box = $('proj-status');
    box.className = error ? 'proj-error' : '';
    box.replaceChildren(text);
    if (link) {
      const a = el('a', null, 'Open the app to sign in');
      a.href = '/';
      box.append(' ', a, ', then come back to this address.');
    }
  };

  // a hidden tab (another tab in front, the laptop's lid closed) asks nothing until it is shown again
  const schedule = () => { clearTimeout(timer); if (!document.hidden) timer = setTimeout(refresh, every * 1000); };

  const refresh = async () => {
    const src = $('proj').dataset.src;
    try {
      const reply = await fetch(src, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (reply.status === 401) {
        status('This screen shows the team\'s numbers to people signed in.', true, true);
        return schedule();
      }
      if (reply.status === 429) { every = Math.min(60, every * 2); }
      if (!reply.ok) {
        let message = `The server answered ${reply.status}.`;
        try { message = (await reply.json()).error || message; } catch (e) { /* not JSON */ }
        status(`${message} Trying again in ${every} s.`, true);
        return schedule();
      }
      const data = await reply.json();
      every = Math.max(2, Number(data.refresh_seconds) || 5);
      document.title = `${data.title} · projector`;
      $('proj-title').textContent = data.title;
      renderGoal(data.goal);
      renderPace(data);
      renderLabels(data.labels);
      renderBoard(data.leaderboard);
      status(`${num(data.active)} annotating now · updated ${clock(data.at)} (${zone}) · refreshes every ${every} s`);
    } catch (e) {
      status(`Cannot reach the server (${e.message || e}); trying again in ${every} s.`, true);
    }
    schedule();
  };

  document.addEventListener('visibilitychange', () => { if (!document.hidden) refresh(); });
  refresh();
})();
