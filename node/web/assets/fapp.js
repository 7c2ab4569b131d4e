// meshd web UI: FAPP (free appointments). Loaded only when the node has the
// FAPP API. Patients search (the mesh sees at most three digits of the
// postcode) and reserve; therapists keep a profile, slots and answer
// requests. docs/fapp.md has the protocol.
'use strict';
(function () {
const M = window.meshd, h = M.h, t = M.t, get = M.get, post = M.post, api = M.api, enc = M.enc;

Object.assign(M.TEXT.en, {
  f_VT: 'Behaviour therapy (VT)', f_TP: 'Psychodynamic (TP)', f_AP: 'Psychoanalytic (AP)', f_ST: 'Systemic (ST)',
  'f_erwachsene': 'Adults', 'f_kinder-jugendliche': 'Children and adolescents', f_einzel: 'Individual', f_gruppe: 'Group',
  f_gkv: 'Statutory insurance (GKV)', f_pkv: 'Private insurance (PKV)', f_beihilfe: 'Beihilfe', f_selbstzahler: 'Self-pay',
  f_praxis: 'In the practice', f_video: 'Video', f_telefon: 'Phone',
  f_sprechstunde: 'Consultation (Sprechstunde)', f_probatorik: 'Trial session (Probatorik)', f_akutbehandlung: 'Acute treatment', f_therapieplatz: 'Therapy place',
  verfahren: 'Method', altersgruppen: 'Age group', settings: 'Setting', kostentraeger: 'Payer', modalitaeten: 'How', slotType: 'Kind of appointment',
  plzLabel: 'Postcode (PLZ) or its beginning', plzHint: 'The mesh search carries at most the first three digits; the full postcode only filters the answers on this node.',
  language: 'Language (e.g. de, en, tr)', network: 'Ask the mesh (anonymous search)', networkHint: 'Without it only this node\u2019s cache is searched: nothing leaves the node.',
  minutes: '{0} min', freeSlot: 'free', booked: 'booked', pendingN: '{0} waiting', therapistKey: 'Therapist', plz: 'PLZ', languages: 'Languages',
  document: 'Approbation (profession, authority, date, number)', documentHint: 'Stays on this node; only its commitment is published, for trust anchors to endorse.',
  commitment: 'Commitment', endorsements: 'Endorsements', noProfile: 'No profile yet: fill in the form to offer appointments.',
  contactMsg: 'Message (optional)', requestsT: 'Reservation requests', outcome: 'State', received: 'Received', answer: 'Answer',
  o_pending: 'waiting', o_confirmed: 'confirmed', o_declined: 'declined', o_taken: 'taken by someone else', o_gone: 'slot withdrawn', o_expired: 'expired',
  roleNote: 'This node\u2019s FAPP role: {0}', newRequest: 'New reservation request', answerArrived: 'The therapist answered your reservation',
  moreArriving: 'More answers may arrive from the mesh for a while.', moreFilters: 'More filters', removeSlot: 'Remove', published: 'Published.', slotAdded: 'Slot added.'
});
Object.assign(M.TEXT.de, {
  f_VT: 'Verhaltenstherapie (VT)', f_TP: 'Tiefenpsychologisch fundiert (TP)', f_AP: 'Analytische Psychotherapie (AP)', f_ST: 'Systemische Therapie (ST)',
  'f_erwachsene': 'Erwachsene', 'f_kinder-jugendliche': 'Kinder und Jugendliche', f_einzel: 'Einzel', f_gruppe: 'Gruppe',
  f_gkv: 'Gesetzlich (GKV)', f_pkv: 'Privat (PKV)', f_beihilfe: 'Beihilfe', f_selbstzahler: 'Selbstzahler',
  f_praxis: 'In der Praxis', f_video: 'Video', f_telefon: 'Telefon',
  f_sprechstunde: 'Sprechstunde', f_probatorik: 'Probatorische Sitzung', f_akutbehandlung: 'Akutbehandlung', f_therapieplatz: 'Therapieplatz',
  verfahren: 'Verfahren', altersgruppen: 'Altersgruppe', settings: 'Setting', kostentraeger: 'Kostenträger', modalitaeten: 'Wie', slotType: 'Art des Termins',
  plzLabel: 'Postleitzahl oder ihr Anfang', plzHint: 'Die Suche im Mesh enthält höchstens die ersten drei Ziffern; die ganze PLZ filtert nur die Antworten auf diesem Knoten.',
  language: 'Sprache (z. B. de, en, tr)', network: 'Im Mesh fragen (anonyme Suche)', networkHint: 'Ohne dies wird nur der Zwischenspeicher dieses Knotens durchsucht: nichts verlässt den Knoten.',
  minutes: '{0} Min.', freeSlot: 'frei', booked: 'vergeben', pendingN: '{0} warten', therapistKey: 'Praxis', plz: 'PLZ', languages: 'Sprachen',
  document: 'Approbation (Beruf, Behörde, Datum, Nummer)', documentHint: 'Bleibt auf diesem Knoten; veröffentlicht wird nur ihr Commitment, das Vertrauensstellen bestätigen.',
  commitment: 'Commitment', endorsements: 'Bestätigungen', noProfile: 'Noch kein Profil: Formular ausfüllen, um Termine anzubieten.',
  contactMsg: 'Nachricht (freiwillig)', requestsT: 'Reservierungsanfragen', outcome: 'Stand', received: 'Eingegangen', answer: 'Antwort',
  o_pending: 'wartet', o_confirmed: 'bestätigt', o_declined: 'abgesagt', o_taken: 'anderweitig vergeben', o_gone: 'Termin zurückgezogen', o_expired: 'abgelaufen',
  roleNote: 'FAPP-Rolle dieses Knotens: {0}', newRequest: 'Neue Reservierungsanfrage', answerArrived: 'Die Praxis hat auf deine Reservierung geantwortet',
  moreArriving: 'Weitere Antworten aus dem Mesh können noch eintreffen.', moreFilters: 'Weitere Filter', removeSlot: 'Entfernen', published: 'Veröffentlicht.', slotAdded: 'Termin hinzugefügt.'
});

const SETS = {
  verfahren: ['VT', 'TP', 'AP', 'ST'], altersgruppen: ['erwachsene', 'kinder-jugendliche'], settings: ['einzel', 'gruppe'],
  kostentraeger: ['gkv', 'pkv', 'beihilfe', 'selbstzahler'], modalitaeten: ['praxis', 'video', 'telefon'],
  slot_types: ['sprechstunde', 'probatorik', 'akutbehandlung', 'therapieplatz']
};
const F = { role: 'any', search: null, results: [], plz: '' };

function names(v) { return !v || v === '-' ? [] : String(v).split(','); }
function label(v) { return names(v).map(function (x) { return t('f_' + x); }).join(', '); }
function checks(key, legend, selected, idp) {
  const sel = names(selected);
  return h('fieldset', { id: idp + key }, h('legend', { text: legend }), SETS[key].map(function (v) {
    const id = idp + key + '-' + v;
    return h('label', { class: 'check', for: id }, h('input', { type: 'checkbox', id: id, name: key, value: v, checked: sel.indexOf(v) >= 0 }), t('f_' + v));
  }));
}
function checked(form, key) {
  return Array.prototype.map.call(form.querySelectorAll('input[name="' + key + '"]:checked'), function (i) { return i.value; }).join(',');
}
function when(s, withDate) {
  const d = new Date(s);
  try {
    return new Intl.DateTimeFormat(M.S.lang, withDate === false ? { hour: '2-digit', minute: '2-digit' } : { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' }).format(d);
  } catch (e) { return d.toLocaleString(); }
}
function seg(active) {
  const items = [];
  if (F.role === 'any' || F.role === 'patient' || F.role === 'relay') items.push(['search', t('fappSearch')]);
  if (F.role === 'any' || F.role === 'patient') items.push(['reservations', t('fappMine')]);
  if (F.role === 'any' || F.role === 'therapist') items.push(['therapist', t('fappTherapist')]);
  return h('nav', { class: 'seg', 'aria-label': t('appointments') }, items.map(function (it) {
    return h('a', { href: '#/fapp/' + it[0], 'aria-current': it[0] === active ? 'page' : null, id: 'fapp-tab-' + it[0], text: it[1] });
  }));
}

window.meshdFAPP = async function (sub) {
  const st = await get('/v1/fapp/stats');
  F.role = st.role || 'any';
  if (!sub) sub = F.role === 'therapist' ? 'therapist' : 'search';
  M.setTitle(t('appointments'));
  if (sub === 'reservations') return reservations();
  if (sub === 'therapist') return therapist();
  return search();
};

// ---- patient: search -------------------------------------------------------
function resultItem(r) {
  const p = r.profile || {};
  const err = M.errorBox();
  const contact = h('textarea', { name: 'contact', id: 'contact-' + r.slot.replace('/', '-'), rows: '2', maxlength: '160', required: true });
  const form = h('form', { class: 'reserve-form', hidden: true, onsubmit: async function (ev) {
    ev.preventDefault();
    err.textContent = t('sending');
    try {
      await post('/v1/fapp/reservations', { slot: r.slot, contact: contact.value.trim() });
      M.toast(t('reserved'));
      location.hash = '#/fapp/reservations';
    } catch (e) { M.showError(err, e); }
  } }, M.field(t('contactInfo'), contact, t('contactHint')), err, h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('reserve') })));
  const toggle = h('button', { class: 'btn secondary', type: 'button', text: t('reserve'), 'aria-expanded': 'false', onclick: function () {
    form.hidden = !form.hidden;
    toggle.setAttribute('aria-expanded', String(!form.hidden));
    if (!form.hidden) contact.focus();
  } });
  return h('li', { class: 'card result', 'data-slot': r.slot },
    h('p', { class: 'row' }, h('strong', { class: 'grow', text: when(r.start) }), h('span', { class: 'small muted', text: t('minutes', r.duration_minutes) })),
    h('p', { text: t('f_' + r.type) + ' \u00b7 ' + label(r.modalitaet) + ' \u00b7 ' + label(r.setting) }),
    h('p', { class: 'small', text: label(p.verfahren) + ' \u00b7 ' + label(p.kostentraeger) }),
    h('p', { class: 'small muted', text: t('plz') + ' ' + p.plz + ' \u00b7 ' + t('languages') + ': ' + (p.languages || []).join(', ') }),
    h('p', { class: 'small' }, r.verified ? h('span', { class: 'verified', text: '\u2713 ' + t('verifiedBy', r.anchor || '') }) : h('span', { class: 'unverified', text: t('therapistUnverified') + (r.trust_note ? ' (' + r.trust_note + ')' : '') }),
      ' \u00b7 ', h('span', { class: 'mono', text: r.therapist.slice(0, 8) + '\u2026' })),
    h('div', { class: 'actions' }, toggle), form);
}
function showResults(box) {
  box.textContent = '';
  const rs = F.results.filter(function (r) { return !F.plz || (r.profile && String(r.profile.plz).indexOf(F.plz) === 0); });
  rs.sort(function (a, b) { return a.start < b.start ? -1 : a.start > b.start ? 1 : 0; });
  box.appendChild(h('h2', { text: t('results') + ' (' + rs.length + ')' }));
  if (!rs.length) box.appendChild(h('p', { class: 'empty', text: F.search && F.search.running ? t('searching') : t('noResults') }));
  box.appendChild(h('ul', { class: 'plain', id: 'fapp-results' }, rs.map(resultItem)));
  if (F.search && F.search.running) box.appendChild(h('p', { class: 'hint', text: t('moreArriving') }));
}
function search() {
  const idp = 's-';
  const plz = h('input', { type: 'text', name: 'plz', id: 'fapp-plz', inputmode: 'numeric', pattern: '[0-9]{0,5}', maxlength: '5', autocomplete: 'postal-code', value: F.lastPLZ || '' });
  const lang = h('input', { type: 'text', name: 'language', id: 'fapp-lang', maxlength: '2', autocomplete: 'off' });
  const from = h('input', { type: 'date', name: 'from', id: 'fapp-from' });
  const to = h('input', { type: 'date', name: 'to', id: 'fapp-to' });
  const net = h('input', { type: 'checkbox', id: 'fapp-network', checked: F.role !== 'relay', disabled: F.role === 'relay' });
  const err = M.errorBox();
  const out = h('section', { id: 'fapp-out', 'aria-live': 'polite' });
  const btn = h('button', { class: 'btn', type: 'submit', text: t('search') });
  const form = h('form', { class: 'card', id: 'fapp-search', onsubmit: async function (ev) {
    ev.preventDefault();
    err.textContent = '';
    const full = plz.value.trim();
    F.lastPLZ = full;
    const q = { verfahren: checked(form, 'verfahren'), altersgruppen: checked(form, 'altersgruppen'), kostentraeger: checked(form, 'kostentraeger'),
      modalitaeten: checked(form, 'modalitaeten'), slot_types: checked(form, 'slot_types'), language: lang.value.trim().toLowerCase(),
      from: from.value, to: to.value, plz: net.checked ? full.slice(0, 3) : full, network: net.checked, wait_seconds: net.checked ? 3 : 0 };
    F.plz = full;
    btn.disabled = true;
    out.textContent = '';
    out.appendChild(h('p', { class: 'muted', text: t('searching') }));
    try {
      F.search = await post('/v1/fapp/search', q);
      F.results = F.search.results || [];
      showResults(out);
      out.scrollIntoView();
    } catch (e) { out.textContent = ''; M.showError(err, e); } finally { btn.disabled = false; }
  } },
  h('h2', { text: t('fappSearchTitle') }),
  M.field(t('plzLabel'), plz, t('plzHint')),
  checks('slot_types', t('slotType'), '', idp),
  h('details', { id: 'fapp-more' }, h('summary', { text: t('moreFilters') }),
    checks('verfahren', t('verfahren'), '', idp), checks('kostentraeger', t('kostentraeger'), '', idp),
    checks('modalitaeten', t('modalitaeten'), '', idp), checks('altersgruppen', t('altersgruppen'), '', idp),
    h('div', { class: 'row' }, h('div', { class: 'grow' }, M.field(t('fromDate'), from)), h('div', { class: 'grow' }, M.field(t('toDate'), to))),
    M.field(t('language'), lang)),
  h('label', { class: 'check', for: 'fapp-network' }, net, t('network')), h('p', { class: 'hint', text: t('networkHint') }),
  err, h('div', { class: 'actions' }, btn));
  const node = h('div', null, seg('search'), form, out);
  if (F.search) showResults(out);
  return node;
}

// ---- patient: reservations ------------------------------------------------------
async function reservations() {
  const rs = await get('/v1/fapp/reservations');
  rs.sort(function (a, b) { return a.created < b.created ? 1 : -1; });
  return h('div', null, seg('reservations'),
    rs.length ? h('ul', { class: 'plain', id: 'fapp-reservations' }, rs.map(function (r) {
      return h('li', { class: 'card', 'data-id': r.id },
        h('p', { class: 'row' }, h('strong', { class: 'grow', text: when(r.slot_start) }), h('span', { class: 'outcome o-' + r.outcome, text: t('o_' + r.outcome) })),
        r.message ? h('p', { class: 'msgtext', dir: 'auto', text: r.message }) : null,
        h('p', { class: 'small muted', text: t('therapistKey') + ' ' + r.therapist.slice(0, 8) + '\u2026 \u00b7 ' + M.fmtTime(r.updated) }));
    })) : h('p', { class: 'empty', text: t('noReservations') }));
}

// ---- therapist ------------------------------------------------------------------------
async function therapist() {
  let prof = null;
  try { prof = await get('/v1/fapp/profile'); } catch (e) { if (e.code !== 'not_therapist') throw e; }
  const parts = [seg('therapist')];
  if (prof) {
    const res = await Promise.all([get('/v1/fapp/requests'), get('/v1/fapp/slots')]);
    parts.push(requestsSection(res[0]), slotsSection(res[1], prof));
  } else parts.push(h('p', { class: 'card', text: t('noProfile') }));
  parts.push(profileSection(prof));
  return h('div', null, parts);
}

function requestsSection(reqs) {
  reqs.sort(function (a, b) { return a.received < b.received ? 1 : -1; });
  return h('section', { 'aria-labelledby': 'req-h' }, h('h2', { id: 'req-h', text: t('requestsT') }),
    reqs.length ? h('ul', { class: 'plain', id: 'fapp-requests' }, reqs.map(function (q) {
      const msg = h('input', { type: 'text', name: 'message', id: 'msg-' + q.id, maxlength: '400' });
      const err = M.errorBox();
      const decide = function (how) {
        return async function () {
          try { await post('/v1/fapp/requests/' + enc(q.id) + '/' + how, { message: msg.value }); M.route(true); } catch (e) { M.showError(err, e); }
        };
      };
      return h('li', { class: 'card', 'data-id': q.id },
        h('p', { class: 'row' }, h('strong', { class: 'grow', text: when(q.slot_start) }), h('span', { class: 'outcome o-' + q.outcome, text: t('o_' + q.outcome) })),
        h('p', { class: 'msgtext', dir: 'auto', text: q.contact || '' }),
        h('p', { class: 'small muted', text: t('received') + ' ' + M.fmtTime(q.received) }),
        q.message ? h('p', { class: 'small', text: t('answer') + ': ' + q.message }) : null,
        q.outcome === 'pending' ? [M.field(t('contactMsg'), msg), err, h('div', { class: 'actions' },
          h('button', { class: 'btn confirm', type: 'button', text: t('confirm'), onclick: decide('confirm') }),
          h('button', { class: 'btn danger', type: 'button', text: t('decline'), onclick: decide('decline') }))] : null);
    })) : h('p', { class: 'empty', text: t('noRequests') }));
}

function toLocalInput(d) {
  const p = function (n) { return String(n).padStart(2, '0'); };
  return d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes());
}
function slotsSection(slots, prof) {
  slots.sort(function (a, b) { return a.start < b.start ? -1 : 1; });
  const err = M.errorBox();
  const type = h('select', { name: 'type', id: 'slot-type' }, SETS.slot_types.map(function (v) { return h('option', { value: v, text: t('f_' + v) }); }));
  const next = new Date(Date.now() + 86400000);
  next.setMinutes(0, 0, 0);
  const start = h('input', { type: 'datetime-local', name: 'start', id: 'slot-start', step: '300', required: true, value: toLocalInput(next) });
  const dur = h('input', { type: 'number', name: 'duration', id: 'slot-duration', min: '5', max: '240', step: '5', value: '50' });
  const form = h('form', { class: 'card', id: 'fapp-add-slot', onsubmit: async function (ev) {
    ev.preventDefault();
    err.textContent = '';
    try {
      await post('/v1/fapp/slots', { type: type.value, start: new Date(start.value).toISOString(), duration_minutes: +dur.value,
        setting: checked(form, 'settings') || prof.profile.settings, modalitaet: checked(form, 'modalitaeten') || prof.profile.modalitaeten });
      M.toast(t('slotAdded'));
      M.route(true);
    } catch (e) { M.showError(err, e); }
  } }, h('h2', { text: t('addSlot') }), M.field(t('slotType'), type), M.field(t('start2'), start), M.field(t('duration'), dur),
  checks('settings', t('settings'), prof.profile.settings, 'a-'), checks('modalitaeten', t('modalitaeten'), prof.profile.modalitaeten, 'a-'),
  err, h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('add') })));
  const perr = M.errorBox();
  return h('section', { 'aria-labelledby': 'slots-h' }, h('h2', { id: 'slots-h', text: t('slots') + ' (' + slots.length + ')' }),
    slots.length ? h('ul', { class: 'list wrap', id: 'fapp-slots' }, slots.map(function (s) {
      return h('li', null, h('div', { class: 'item' }, h('span', { class: 'grow' },
        h('span', { class: 'name', text: when(s.start) + ' \u00b7 ' + t('minutes', s.duration_minutes) }),
        h('span', { class: 'sub', text: t('f_' + s.type) + ' \u00b7 ' + label(s.modalitaet) + ' \u00b7 ' + (s.booked ? t('booked') : t('freeSlot')) + (s.pending ? ' \u00b7 ' + t('pendingN', s.pending) : '') })),
      h('button', { class: 'btn danger', type: 'button', text: t('removeSlot'), onclick: async function () {
        try { await api('DELETE', '/v1/fapp/slots/' + s.id); M.route(true); } catch (e) { M.showError(perr, e); }
      } })));
    })) : h('p', { class: 'empty', text: t('noSlots') }),
    perr,
    h('div', { class: 'actions' }, h('button', { class: 'btn secondary', type: 'button', id: 'fapp-publish', text: t('publish'), onclick: async function () {
      try { await post('/v1/fapp/publish'); M.toast(t('published')); } catch (e) { M.showError(perr, e); }
    } })),
    form);
}

function profileSection(prof) {
  const p = (prof && prof.profile) || {};
  const err = M.errorBox();
  const plz = h('input', { type: 'text', name: 'plz', id: 'prof-plz', inputmode: 'numeric', pattern: '[0-9]{5}', maxlength: '5', required: true, value: p.plz || '' });
  const langs = h('input', { type: 'text', name: 'languages', id: 'prof-langs', required: true, value: (p.languages || ['de']).join(', ') });
  const doc = h('textarea', { name: 'document', id: 'prof-doc', rows: '3', required: !prof, maxlength: '1024', value: (prof && prof.document) || '' });
  const form = h('form', { class: 'card', id: 'fapp-profile', onsubmit: async function (ev) {
    ev.preventDefault();
    err.textContent = '';
    try {
      await api('PUT', '/v1/fapp/profile', { verfahren: checked(form, 'verfahren'), altersgruppen: checked(form, 'altersgruppen'), settings: checked(form, 'settings'),
        kostentraeger: checked(form, 'kostentraeger'), modalitaeten: checked(form, 'modalitaeten'), plz: plz.value.trim(),
        languages: langs.value.split(/[\s,]+/).filter(Boolean).map(function (x) { return x.toLowerCase(); }), document: doc.value.trim() });
      M.toast(t('saved'));
      M.route(true);
    } catch (e) { M.showError(err, e); }
  } }, h('h2', { text: t('profile') }),
  checks('verfahren', t('verfahren'), p.verfahren, 'p-'), checks('altersgruppen', t('altersgruppen'), p.altersgruppen, 'p-'),
  checks('settings', t('settings'), p.settings, 'p-'), checks('kostentraeger', t('kostentraeger'), p.kostentraeger, 'p-'),
  checks('modalitaeten', t('modalitaeten'), p.modalitaeten, 'p-'),
  M.field(t('plz'), plz), M.field(t('languages'), langs), M.field(t('document'), doc, t('documentHint')),
  prof ? h('p', { class: 'small muted' }, t('commitment') + ': ', h('span', { class: 'mono', text: prof.commitment })) : null,
  prof ? h('p', { class: 'small', text: t('endorsements') + ': ' + (prof.endorsements.length ? prof.endorsements.map(function (e) { return e.anchor_name || e.anchor; }).join(', ') : '\u2013') }) : null,
  err, h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('save') })));
  return form;
}

// ---- live events ----------------------------------------------------------------------
window.meshdFAPPEvent = function (type, d) {
  const r = M.S.route;
  if (type === 'fapp-search') {
    if (!F.search || d.id !== F.search.id) return;
    F.results = F.results.concat(d.new || []);
    if (d.done) F.search.running = false;
    const out = document.getElementById('fapp-out');
    if (out && r[0] === 'fapp' && (!r[1] || r[1] === 'search')) showResults(out);
  } else if (type === 'fapp-reservation') {
    if (d.outcome !== 'pending') M.toast(t('answerArrived'));
    if (r[0] === 'fapp' && r[1] === 'reservations') M.route(true);
  } else if (type === 'fapp-request') {
    M.toast(t('newRequest'));
    if (r[0] === 'fapp' && r[1] === 'therapist') M.route(true);
  }
};
})();
