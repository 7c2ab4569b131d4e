// meshd web UI: plain JavaScript, no framework, no build step.
// Every request goes to this node's own API (docs/api.md) with the session
// cookie; state-changing ones carry the session's CSRF token.
'use strict';
(function () {

// ---- text (English and German) ----------------------------------------
const TEXT = {
  en: {
    langName: 'English', otherLang: 'DE', otherLangName: 'Deutsch', skip: 'Skip to content', back: 'Back', sections: 'Sections',
    login: 'Log in', logout: 'Log out', password: 'Password', loginTitle: 'meshd on this router',
    loginHint: 'The operator sets this password with: meshd web passwd',
    wrongPassword: 'Wrong password.', noPassword: 'No password is set yet. The operator sets one on the router with: meshd web passwd',
    rateLimited: 'Too many attempts. Try again in {0} s.', loggedOut: 'Logged out.', sessionEnded: 'Your session ended. Please log in again.',
    chats: 'Chats', channels: 'Channels', contacts: 'Contacts', node: 'Node', appointments: 'Appointments',
    noChats: 'No conversations yet.', newMessage: 'New message', to: 'To', toHint: 'A contact, or an address (32 hex digits) or public key (64).',
    start: 'Start', message: 'Message', send: 'Send', sending: 'Sending…', you: 'You',
    st_accepted: 'sending', st_queued: 'queued', st_sent: 'sent', st_delivered: 'delivered', st_expired: 'expired', st_failed: 'failed',
    stateHelp: 'queued: stored, waiting for a route · sent: on its way · delivered: the recipient confirmed it',
    newFrom: 'New message from {0}', unverifiedName: '{0} (unverified name)',
    myId: 'This node', address: 'Address', publicKey: 'Public key', fingerprint: 'Fingerprint', showQR: 'Show QR code', hideQR: 'Hide QR code', copy: 'Copy', copied: 'Copied.',
    addrHint: 'An address (32 hex digits) or a public key (64); with the key the safety number is known at once.', addContact: 'Add a contact', name: 'Name', addressOrKey: 'Address or public key', add: 'Add', noContacts: 'No contacts yet.',
    known: 'Other nodes this node knows', reachable: 'reachable', unreachable: 'not reachable', neighbour: 'neighbour',
    verified: 'verified', notVerified: 'not verified', safetyNumber: 'Safety number',
    safetyHelp: 'Compare these numbers with the ones on the other person\u2019s screen, in person or over a channel you trust. If they match, mark the contact as verified.',
    keyUnknown: 'The key of this contact is not known yet: it arrives with the node\u2019s announce. The safety number appears then.',
    markVerified: 'Mark as verified', remove: 'Remove', confirmRemove: 'Remove {0}?', contactAdded: 'Contact added.',
    noChannels: 'No channels yet.', createChannel: 'Create a channel', policy: 'Kind', pol_private: 'Private (invite only)', pol_signed: 'Private, every message signed', pol_announce: 'Announcements (only owners and admins post)',
    create: 'Create', joinChannel: 'Join with an invite code', inviteCode: 'Invite code', join: 'Join', joinOpen: 'Join an open channel', openHint: 'Open channels are not private: anyone who knows the name reads and writes.',
    role_owner: 'owner', role_admin: 'admin', role_member: 'member', open: 'open',
    joining: 'joining', active: 'active', removedSt: 'removed', members: 'Members', membersN: '{0} members', role: 'Role', requests: 'Join requests', admit: 'Admit', reject: 'Reject',
    invite: 'Invite', leave: 'Leave', confirmLeave: 'Leave {0}? Its messages are deleted from this node.', noMessages: 'No messages yet.',
    signed: 'signed', history: 'from history', inviteTitle: 'Invite to {0}', uses: 'Uses', validHours: 'Valid for (hours)', approve: 'Requests need approval', makeInvite: 'Create invite',
    inviteHelp: 'Give this code to the person you invite (QR or text). Whoever has it can join until it is used up or expires.', grouped: 'To read aloud', self: 'this node',
    joinWait: 'Waiting for the inviter\u2026', joined: 'Joined.', requested: 'Join requested; an admin must approve it.',
    status: 'Status', uptime: 'Uptime', version: 'Version', links: 'Links', peers: 'Known nodes', routes: 'Reachable', outbox: 'Awaiting acknowledgement',
    held: 'Held for others', store: 'Store', unread: 'Unread', radio: 'LoRa radio', noRadio: 'No LoRa radio configured.', airtime: 'Airtime used (duty-cycle budget)',
    airtimeOf: '{0} s of {1} s per {2}', region: 'Region', frequency: 'Frequency', dutyCycle: 'Duty cycle', totalAir: 'Airtime since start', connected: 'connected', disconnected: 'not connected',
    listenOnly: 'Listen only (no region set)', noLinks: 'No links.', neighbours: 'Neighbours', noNeighbours: 'No neighbours.', messagesN: '{0} messages', bytesN: '{0} bytes',
    e_unknown_recipient: 'Unknown recipient: not a contact, an address or a key.', e_too_large: 'Too long for one message.', e_outbox_full: 'Too many messages are waiting to be delivered; try again later.',
    e_exists: 'A contact with this name exists already.', e_key_unknown: 'The key is not known yet; try again when the node has been heard.', e_bad_request: 'Please check the input: {0}',
    e_rate_limited: 'Too many requests; try again shortly.', e_invite_corrupt: 'This invite code is mistyped or damaged.', e_invite_used: 'This invite code has been used up.',
    e_invite_expired: 'This invite code has expired.', e_join_refused: 'The inviter refused the request.', e_not_member: 'This node is not a member (any more).', e_not_allowed: 'Your role does not allow this.',
    e_already_member: 'Already a member.', e_slot_taken: 'This slot has just been taken.', e_precision: 'A mesh search carries at most three digits of the postcode.', e_role: 'This node\u2019s FAPP role does not allow this.',
    e_network: 'Connection to the node lost; retrying\u2026',
    error: 'Error: {0}', offline: 'Connection to the node lost; retrying\u2026', refresh: 'Refresh',
    // FAPP
    fappSearch: 'Find', fappMine: 'My requests', fappTherapist: 'Therapist', fappSearchTitle: 'Find a free appointment',
    specialty: 'Specialty', anySpecialty: 'Any', area: 'Area (postcode prefix)', fromDate: 'From', toDate: 'To', modality: 'Setting', anyModality: 'Any',
    search: 'Search', searching: 'Searching the mesh\u2026', results: 'Free slots', noResults: 'No free slots found yet. Results keep arriving for a while.',
    reserve: 'Reserve', reserveTitle: 'Reserve this slot', contactInfo: 'How the therapist reaches you', contactHint: 'Sent encrypted to the therapist only.',
    reserved: 'Reservation sent.', noReservations: 'No reservations yet.', profile: 'Profile', slots: 'Slots', publish: 'Publish now', save: 'Save',
    addSlot: 'Add a slot', start2: 'Start', duration: 'Minutes', confirm: 'Confirm', decline: 'Decline', noRequests: 'No requests.', noSlots: 'No slots.',
    verifiedBy: 'verified by {0}', therapistUnverified: 'not verified', saved: 'Saved.', rs_pending: 'waiting for the therapist', rs_confirmed: 'confirmed', rs_declined: 'declined', rs_expired: 'expired', rs_taken: 'slot taken'
  },
  de: {
    langName: 'Deutsch', otherLang: 'EN', otherLangName: 'English', skip: 'Zum Inhalt springen', back: 'Zurück', sections: 'Bereiche',
    login: 'Anmelden', logout: 'Abmelden', password: 'Passwort', loginTitle: 'meshd auf diesem Router',
    loginHint: 'Das Passwort legt der Betreiber fest mit: meshd web passwd',
    wrongPassword: 'Falsches Passwort.', noPassword: 'Es ist noch kein Passwort gesetzt. Der Betreiber setzt es auf dem Router mit: meshd web passwd',
    rateLimited: 'Zu viele Versuche. Bitte in {0} s erneut versuchen.', loggedOut: 'Abgemeldet.', sessionEnded: 'Die Sitzung ist abgelaufen. Bitte neu anmelden.',
    chats: 'Chats', channels: 'Kanäle', contacts: 'Kontakte', node: 'Knoten', appointments: 'Termine',
    noChats: 'Noch keine Unterhaltungen.', newMessage: 'Neue Nachricht', to: 'An', toHint: 'Ein Kontakt, oder eine Adresse (32 Hex-Ziffern) oder ein öffentlicher Schlüssel (64).',
    start: 'Beginnen', message: 'Nachricht', send: 'Senden', sending: 'Wird gesendet…', you: 'Du',
    st_accepted: 'wird gesendet', st_queued: 'wartet', st_sent: 'gesendet', st_delivered: 'zugestellt', st_expired: 'abgelaufen', st_failed: 'fehlgeschlagen',
    stateHelp: 'wartet: gespeichert, noch kein Weg · gesendet: unterwegs · zugestellt: vom Empfänger bestätigt',
    newFrom: 'Neue Nachricht von {0}', unverifiedName: '{0} (Name nicht geprüft)',
    myId: 'Dieser Knoten', address: 'Adresse', publicKey: 'Öffentlicher Schlüssel', fingerprint: 'Fingerabdruck', showQR: 'QR-Code zeigen', hideQR: 'QR-Code ausblenden', copy: 'Kopieren', copied: 'Kopiert.',
    addrHint: 'Eine Adresse (32 Hex-Ziffern) oder ein öffentlicher Schlüssel (64); mit dem Schlüssel ist die Sicherheitsnummer sofort bekannt.', addContact: 'Kontakt hinzufügen', name: 'Name', addressOrKey: 'Adresse oder öffentlicher Schlüssel', add: 'Hinzufügen', noContacts: 'Noch keine Kontakte.',
    known: 'Weitere bekannte Knoten', reachable: 'erreichbar', unreachable: 'nicht erreichbar', neighbour: 'Nachbar',
    verified: 'verifiziert', notVerified: 'nicht verifiziert', safetyNumber: 'Sicherheitsnummer',
    safetyHelp: 'Vergleiche diese Zahlen mit denen auf dem Bildschirm der anderen Person, persönlich oder über einen vertrauenswürdigen Weg. Stimmen sie überein, markiere den Kontakt als verifiziert.',
    keyUnknown: 'Der Schlüssel dieses Kontakts ist noch nicht bekannt; er kommt mit der Ankündigung des Knotens. Dann erscheint die Sicherheitsnummer.',
    markVerified: 'Als verifiziert markieren', remove: 'Entfernen', confirmRemove: '{0} entfernen?', contactAdded: 'Kontakt hinzugefügt.',
    noChannels: 'Noch keine Kanäle.', createChannel: 'Kanal erstellen', policy: 'Art', pol_private: 'Privat (nur mit Einladung)', pol_signed: 'Privat, jede Nachricht signiert', pol_announce: 'Ankündigungen (nur Besitzer und Admins schreiben)',
    create: 'Erstellen', joinChannel: 'Mit Einladungscode beitreten', inviteCode: 'Einladungscode', join: 'Beitreten', joinOpen: 'Offenem Kanal beitreten', openHint: 'Offene Kanäle sind nicht privat: Wer den Namen kennt, liest und schreibt mit.',
    role_owner: 'Besitzer', role_admin: 'Admin', role_member: 'Mitglied', open: 'offen',
    joining: 'tritt bei', active: 'aktiv', removedSt: 'entfernt', members: 'Mitglieder', membersN: '{0} Mitglieder', role: 'Rolle', requests: 'Beitrittsanfragen', admit: 'Aufnehmen', reject: 'Ablehnen',
    invite: 'Einladen', leave: 'Verlassen', confirmLeave: '{0} verlassen? Die Nachrichten werden von diesem Knoten gelöscht.', noMessages: 'Noch keine Nachrichten.',
    signed: 'signiert', history: 'aus dem Verlauf', inviteTitle: 'Einladung zu {0}', uses: 'Verwendungen', validHours: 'Gültig (Stunden)', approve: 'Anfragen müssen bestätigt werden', makeInvite: 'Einladung erstellen',
    inviteHelp: 'Gib diesen Code der eingeladenen Person (QR oder Text). Wer ihn hat, kann beitreten, bis er verbraucht oder abgelaufen ist.', grouped: 'Zum Vorlesen', self: 'dieser Knoten',
    joinWait: 'Warte auf die einladende Person\u2026', joined: 'Beigetreten.', requested: 'Beitritt angefragt; ein Admin muss zustimmen.',
    status: 'Status', uptime: 'Laufzeit', version: 'Version', links: 'Verbindungen', peers: 'Bekannte Knoten', routes: 'Erreichbar', outbox: 'Warten auf Bestätigung',
    held: 'Für andere zwischengespeichert', store: 'Speicher', unread: 'Ungelesen', radio: 'LoRa-Funk', noRadio: 'Kein LoRa-Funkmodul eingerichtet.', airtime: 'Sendezeit (Duty-Cycle-Budget)',
    airtimeOf: '{0} s von {1} s je {2}', region: 'Region', frequency: 'Frequenz', dutyCycle: 'Duty-Cycle', totalAir: 'Sendezeit seit Start', connected: 'verbunden', disconnected: 'nicht verbunden',
    listenOnly: 'Nur Empfang (keine Region gesetzt)', noLinks: 'Keine Verbindungen.', neighbours: 'Nachbarn', noNeighbours: 'Keine Nachbarn.', messagesN: '{0} Nachrichten', bytesN: '{0} Bytes',
    e_unknown_recipient: 'Unbekannter Empfänger: kein Kontakt, keine Adresse, kein Schlüssel.', e_too_large: 'Zu lang für eine Nachricht.', e_outbox_full: 'Zu viele Nachrichten warten auf Zustellung; bitte später erneut versuchen.',
    e_exists: 'Ein Kontakt mit diesem Namen existiert schon.', e_key_unknown: 'Der Schlüssel ist noch unbekannt; später erneut versuchen, wenn der Knoten gehört wurde.', e_bad_request: 'Bitte die Eingabe prüfen: {0}',
    e_rate_limited: 'Zu viele Anfragen; bitte gleich erneut versuchen.', e_invite_corrupt: 'Dieser Einladungscode ist vertippt oder beschädigt.', e_invite_used: 'Dieser Einladungscode ist verbraucht.',
    e_invite_expired: 'Dieser Einladungscode ist abgelaufen.', e_join_refused: 'Die einladende Person hat abgelehnt.', e_not_member: 'Dieser Knoten ist (nicht mehr) Mitglied.', e_not_allowed: 'Deine Rolle erlaubt das nicht.',
    e_already_member: 'Schon Mitglied.', e_slot_taken: 'Dieser Termin wurde gerade vergeben.', e_precision: 'Eine Suche im Mesh enthält höchstens drei Ziffern der PLZ.', e_role: 'Die FAPP-Rolle dieses Knotens erlaubt das nicht.',
    e_network: 'Verbindung zum Knoten verloren; neuer Versuch\u2026',
    error: 'Fehler: {0}', offline: 'Verbindung zum Knoten verloren; neuer Versuch\u2026', refresh: 'Aktualisieren',
    fappSearch: 'Suchen', fappMine: 'Meine Anfragen', fappTherapist: 'Therapeut:in', fappSearchTitle: 'Freien Termin finden',
    specialty: 'Fachrichtung', anySpecialty: 'Alle', area: 'Gebiet (PLZ-Anfang)', fromDate: 'Von', toDate: 'Bis', modality: 'Setting', anyModality: 'Alle',
    search: 'Suchen', searching: 'Suche im Mesh\u2026', results: 'Freie Termine', noResults: 'Noch keine freien Termine gefunden. Ergebnisse treffen noch eine Weile ein.',
    reserve: 'Reservieren', reserveTitle: 'Diesen Termin reservieren', contactInfo: 'Wie dich die Praxis erreicht', contactHint: 'Wird verschlüsselt nur an die Praxis gesendet.',
    reserved: 'Reservierung gesendet.', noReservations: 'Noch keine Reservierungen.', profile: 'Profil', slots: 'Termine', publish: 'Jetzt veröffentlichen', save: 'Speichern',
    addSlot: 'Termin hinzufügen', start2: 'Beginn', duration: 'Minuten', confirm: 'Bestätigen', decline: 'Absagen', noRequests: 'Keine Anfragen.', noSlots: 'Keine Termine.',
    verifiedBy: 'verifiziert durch {0}', therapistUnverified: 'nicht verifiziert', saved: 'Gespeichert.', rs_pending: 'wartet auf die Praxis', rs_confirmed: 'bestätigt', rs_declined: 'abgesagt', rs_expired: 'abgelaufen', rs_taken: 'Termin vergeben'
  }
};

const S = { lang: 'en', csrf: null, me: null, contacts: [], convs: [], es: null, route: [], renderSeq: 0, outState: {}, fapp: false, timer: null, badgeTimer: null };

function t(key) {
  let s = (TEXT[S.lang] && TEXT[S.lang][key]) || TEXT.en[key] || key;
  for (let i = 1; i < arguments.length; i++) s = s.split('{' + (i - 1) + '}').join(String(arguments[i]));
  return s;
}

// ---- DOM helpers: text is always set as text, never parsed as HTML ------
function h(tag, attrs) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const k in attrs) {
      const v = attrs[k];
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k.slice(0, 2) === 'on') el.addEventListener(k.slice(2), v);
      else if (k === 'value') el.value = v;
      else if (k === 'css') { for (const c in v) el.style[c] = v[c]; } // CSSOM: allowed by the CSP, style attributes are not
      else el.setAttribute(k, v === true ? '' : v);
    }
  }
  for (let i = 2; i < arguments.length; i++) add(el, arguments[i]);
  return el;
}
function add(el, c) {
  if (c === null || c === undefined || c === false) return;
  if (Array.isArray(c)) { c.forEach(function (x) { add(el, x); }); return; }
  el.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
}
const $ = function (sel, root) { return (root || document).querySelector(sel); };
function field(label, input, hint) {
  const id = input.id || ('f' + Math.random().toString(36).slice(2));
  input.id = id;
  let hintEl = null;
  if (hint) { hintEl = h('p', { class: 'hint', id: id + '-hint', text: hint }); input.setAttribute('aria-describedby', id + '-hint'); }
  return h('div', null, h('label', { for: id, text: label }), input, hintEl);
}
function toast(msg) {
  const el = $('#toast');
  el.textContent = msg;
  el.classList.add('show');
  clearTimeout(toast.t);
  toast.t = setTimeout(function () { el.classList.remove('show'); }, 3500);
}
function errorBox() { return h('p', { class: 'error', role: 'alert' }); }
// showError says what went wrong, in the page's language for the API's
// common error codes (docs/api.md), else with the server's message.
function showError(box, e) {
  const key = e && e.code ? 'e_' + e.code : '';
  box.textContent = key && (TEXT[S.lang][key] || TEXT.en[key]) ? t(key, e.message || '') : t('error', e && e.message ? e.message : e);
}

// ---- formatting ----------------------------------------------------------
function short(addr) { return addr ? addr.slice(0, 8) + '\u2026' : ''; }
function fmtTime(s) {
  if (!s) return '';
  const d = new Date(s), now = new Date();
  const same = d.toDateString() === now.toDateString();
  const o = same ? { hour: '2-digit', minute: '2-digit' } : { day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  try { return new Intl.DateTimeFormat(S.lang, o).format(d); } catch (e) { return d.toLocaleString(); }
}
function fmtNum(n, digits) {
  try { return new Intl.NumberFormat(S.lang, { maximumFractionDigits: digits || 0 }).format(n); } catch (e) { return String(n); }
}
function fmtBytes(n) {
  if (n < 1024) return t('bytesN', fmtNum(n));
  if (n < 1048576) return fmtNum(n / 1024, 1) + ' KiB';
  return fmtNum(n / 1048576, 1) + ' MiB';
}
function fmtDur(sec) {
  sec = Math.floor(sec);
  const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60);
  if (d) return d + ' d ' + hh + ' h';
  if (hh) return hh + ' h ' + m + ' min';
  return m + ' min ' + (sec % 60) + ' s';
}
function hue(s) { let x = 0; for (let i = 0; i < s.length; i++) x = (x * 31 + s.charCodeAt(i)) % 360; return x; }
function avatar(label, seed) {
  return h('span', { class: 'avatar', 'aria-hidden': 'true', css: { background: 'hsl(' + hue(seed || label) + ',50%,34%)' } }, (label || '?').slice(0, 1).toUpperCase());
}
function contactFor(addr) { for (const c of S.contacts) if (c.address === addr) return c; return null; }
// peerName is what a person sees for an address: the petname, else the
// node's self-chosen name marked unverified, else a short address.
function peerName(addr, claimed) {
  const c = contactFor(addr);
  if (c) return c.name;
  if (claimed) return t('unverifiedName', claimed);
  return short(addr);
}

// ---- API -----------------------------------------------------------------
function ApiError(status, code, message) { this.status = status; this.code = code; this.message = message; }
async function api(method, path, body, retried) {
  const opt = { method: method, headers: {}, credentials: 'same-origin' };
  if (body !== undefined) { opt.headers['Content-Type'] = 'application/json'; opt.body = JSON.stringify(body); }
  if (method !== 'GET') opt.headers['X-CSRF-Token'] = S.csrf || '';
  let r;
  try { r = await fetch(path, opt); } catch (e) { throw new ApiError(0, 'network', t('offline')); }
  if (r.status === 401 && path.indexOf('/web/') !== 0) { sessionLost(); throw new ApiError(401, 'unauthorized', t('sessionEnded')); }
  if (r.status === 204) return null;
  const ct = r.headers.get('Content-Type') || '';
  if (!r.ok) {
    let e = { code: 'http_' + r.status, message: r.statusText };
    if (ct.indexOf('json') >= 0) { try { e = (await r.json()).error || e; } catch (x) { /* keep */ } }
    if (r.status === 403 && e.code === 'csrf' && !retried && await loadSession()) return api(method, path, body, true);
    throw new ApiError(r.status, e.code, e.message);
  }
  if (ct.indexOf('json') >= 0) return r.json();
  return r.blob();
}
const get = function (p) { return api('GET', p); };
const post = function (p, b) { return api('POST', p, b === undefined ? {} : b); };
const enc = encodeURIComponent;

async function loadSession() {
  try {
    const r = await fetch('/web/session', { credentials: 'same-origin' });
    if (!r.ok) return false;
    S.csrf = (await r.json()).csrf;
    return true;
  } catch (e) { return false; }
}

// ---- language --------------------------------------------------------------
function pickLang() {
  let l = null;
  try { l = localStorage.getItem('meshd-lang'); } catch (e) { /* private mode */ }
  if (l === 'de' || l === 'en') return l;
  const langs = navigator.languages || [navigator.language || 'en'];
  for (const x of langs) { const p = String(x).slice(0, 2).toLowerCase(); if (p === 'de' || p === 'en') return p; }
  return 'en';
}
function setLang(l) {
  S.lang = l;
  document.documentElement.lang = l;
  const b = $('#lang');
  b.textContent = t('otherLang');
  b.setAttribute('aria-label', t('otherLangName'));
  b.setAttribute('lang', l === 'de' ? 'en' : 'de');
  $('#skip').textContent = t('skip');
  $('#back').setAttribute('aria-label', t('back'));
  $('#logout').textContent = t('logout');
  $('#tabs').setAttribute('aria-label', t('sections'));
}

// ---- login -------------------------------------------------------------------
function showLogin(reason) {
  stopLive();
  S.csrf = null;
  $('#tabs').hidden = true;
  $('#logout').hidden = true;
  $('#back').hidden = true;
  setTitle('meshd');
  const pw = h('input', { type: 'password', name: 'password', autocomplete: 'current-password', required: true, minlength: '1' });
  const err = errorBox();
  if (reason) err.textContent = reason;
  const btn = h('button', { class: 'btn', type: 'submit', text: t('login') });
  const form = h('form', { id: 'login-form', class: 'card login', onsubmit: async function (ev) {
    ev.preventDefault();
    btn.disabled = true;
    err.textContent = '';
    try {
      const r = await fetch('/web/login', { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ password: pw.value }) });
      const body = await r.json().catch(function () { return {}; });
      if (r.ok) { S.csrf = body.csrf; pw.value = ''; startApp(); return; }
      const code = body.error && body.error.code;
      if (code === 'wrong_password') err.textContent = t('wrongPassword');
      else if (code === 'no_password') err.textContent = t('noPassword');
      else if (code === 'rate_limited') err.textContent = t('rateLimited', r.headers.get('Retry-After') || '30');
      else err.textContent = t('error', (body.error && body.error.message) || r.status);
      pw.select();
    } catch (e) {
      err.textContent = t('offline');
    } finally { btn.disabled = false; }
  } },
  h('h2', { text: t('loginTitle') }),
  field(t('password'), pw, t('loginHint')),
  err,
  h('div', { class: 'actions' }, btn));
  const main = $('#main');
  main.textContent = '';
  main.appendChild(form);
  pw.focus();
  ready();
}
// ready marks the first screen rendered (for load-time measurements).
function ready() { if (!ready.done && window.performance && performance.mark) { ready.done = true; performance.mark('meshd-ready'); } }

function sessionLost() {
  if (S.csrf === null) return;
  showLogin(t('sessionEnded'));
}

// ---- app shell -------------------------------------------------------------
const ICONS = {
  chats: 'M4 5h16v11H8l-4 4z',
  channels: 'M5 9h14M5 15h14M10 4 8 20M16 4l-2 16',
  contacts: 'M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM4 21c0-4 4-6 8-6s8 2 8 6',
  fapp: 'M4 6h16v14H4zM4 10h16M8 3v5M16 3v5',
  status: 'M3 12h4l3-7 4 14 3-7h4'
};
function tabs() {
  const nav = $('#tabs');
  nav.textContent = '';
  const items = [['chats', '#/chats', t('chats')], ['channels', '#/channels', t('channels')], ['contacts', '#/contacts', t('contacts')]];
  if (S.fapp) items.push(['fapp', '#/fapp', t('appointments')]);
  items.push(['status', '#/status', t('node')]);
  for (const it of items) {
    const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    const p = document.createElementNS('http://www.w3.org/2000/svg', 'path');
    p.setAttribute('d', ICONS[it[0]]);
    svg.appendChild(p);
    nav.appendChild(h('a', { href: it[1], 'data-tab': it[0] }, svg, h('span', { text: it[2] }), it[0] === 'chats' ? h('span', { class: 'badge', id: 'unread', hidden: true }) : null));
  }
  nav.hidden = false;
  markTab();
  refreshBadge();
}
function markTab() {
  const r = S.route[0] || 'chats';
  const tab = { chat: 'chats', 'new': 'chats', contact: 'contacts', channel: 'channels', chats: 'chats' }[r] || r;
  document.querySelectorAll('#tabs a').forEach(function (a) {
    if (a.getAttribute('data-tab') === tab) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  });
}
function refreshBadge() {
  clearTimeout(S.badgeTimer);
  S.badgeTimer = setTimeout(async function () {
    try {
      const st = await get('/v1/status');
      const b = $('#unread');
      if (!b) return;
      b.hidden = !st.unread;
      b.textContent = st.unread;
      b.setAttribute('aria-label', t('unread') + ': ' + st.unread);
    } catch (e) { /* shown elsewhere */ }
  }, 300);
}
function setTitle(s) { $('#title').textContent = s; document.title = s === 'meshd' ? 'meshd' : s + ' \u2013 meshd'; }

async function startApp() {
  $('#logout').hidden = false;
  try {
    const res = await Promise.all([get('/v1/id'), get('/v1/contacts'), probeFAPP()]);
    S.me = res[0]; S.contacts = res[1]; S.fapp = res[2];
    if (S.fapp && !window.meshdFAPP) await loadScript('/fapp.js');
  } catch (e) { if (e.status === 401) return; S.fapp = !!window.meshdFAPP; }
  tabs();
  startLive();
  if (!location.hash || location.hash === '#') location.replace('#/chats'); else route();
}
function loadScript(src) {
  return new Promise(function (resolve, reject) {
    const el = h('script', { src: src });
    el.onload = resolve;
    el.onerror = function () { reject(new ApiError(0, 'network', src)); };
    document.head.appendChild(el);
  });
}
async function probeFAPP() {
  try { await get('/v1/fapp/stats'); return true; } catch (e) { return false; }
}

// ---- live events (server-sent events) -------------------------------------------
function startLive() {
  stopLive();
  const types = ['message', 'status', 'link-up', 'link-down', 'channel-message', 'channel-event'];
  if (S.fapp) types.push('fapp-search', 'fapp-reservation', 'fapp-request');
  const es = new EventSource('/v1/events?types=' + types.join(','));
  S.es = es;
  let opened = false;
  es.addEventListener('open', function () { if (opened) route(true); opened = true; });
  es.addEventListener('message', function (ev) { onEvent('message', ev); });
  types.slice(1).forEach(function (typ) {
    es.addEventListener(typ, function (ev) { onEvent(typ, ev); });
  });
  es.addEventListener('error', async function () {
    if (es.readyState !== 2 || S.es !== es) return; // the browser reconnects by itself
    if (await loadSession()) setTimeout(function () { if (S.es === es) startLive(); }, 3000);
    else sessionLost();
  });
}
function stopLive() { if (S.es) { S.es.close(); S.es = null; } clearInterval(S.timer); }

const RANK = { accepted: 0, queued: 1, sent: 2, delivered: 3, expired: 4, failed: 4 };
function onEvent(type, ev) {
  let e;
  try { e = JSON.parse(ev.data); } catch (x) { return; }
  const d = e.data || {};
  const view = S.route[0];
  if (type === 'message') {
    refreshBadge();
    if (view === 'chat' && S.route[1] === d.from) { appendChat(msgFromIn(d)); markRead([d]); }
    else { toast(t('newFrom', d.from_name || peerName(d.from, d.claimed_name))); if (view === 'chats' || !view) route(true); }
  } else if (type === 'status') {
    const old = S.outState[d.id];
    if (!old || RANK[d.state] >= RANK[old]) S.outState[d.id] = d.state;
    const el = document.querySelector('[data-out="' + d.id + '"] .state');
    if (el) setState(el, S.outState[d.id], d.reason);
    if (view === 'chats') route(true);
  } else if (type === 'channel-message') {
    if (view === 'channel' && !S.route[2] && sameChannel(d.channel)) appendChannelMsg(d);
    else if (view === 'channels') route(true);
  } else if (type === 'channel-event') {
    if (view === 'channels' || (view === 'channel' && sameChannel(d.channel))) route(true);
  } else if (type === 'link-up' || type === 'link-down') {
    if (view === 'status') route(true);
  } else if (type.indexOf('fapp-') === 0 && window.meshdFAPPEvent) {
    window.meshdFAPPEvent(type, d);
  }
}
function sameChannel(id) { return S.route[1] === id || (S.chan && S.chan.id === id); }

// ---- routing -------------------------------------------------------------------
function route(soft) {
  const hash = location.hash.replace(/^#\/?/, '');
  S.route = hash ? hash.split('/').map(function (x) { try { return decodeURIComponent(x); } catch (e) { return x; } }) : ['chats'];
  markTab();
  clearInterval(S.timer);
  const views = { chats: viewChats, chat: viewChat, 'new': viewNew, contacts: viewContacts, contact: viewContact,
    channels: viewChannels, channel: viewChannel, status: viewStatus, fapp: viewFAPP };
  const v = views[S.route[0]] || viewChats;
  const back = { chat: '#/chats', 'new': '#/chats', contact: '#/contacts', channel: S.route[2] ? '#/channel/' + enc(S.route[1] || '') : '#/channels' }[S.route[0]];
  const b = $('#back');
  b.hidden = !back;
  b.onclick = function () { location.hash = back; };
  const seq = ++S.renderSeq;
  const main = $('#main');
  const scroll = soft ? window.scrollY : 0;
  Promise.resolve(v(seq)).then(function (node) {
    if (seq !== S.renderSeq || !node) return;
    const focused = document.activeElement;
    const keep = soft && focused && focused.id && main.contains(focused) ? { id: focused.id, value: focused.value } : null;
    main.textContent = '';
    main.appendChild(node);
    if (keep) { const el = document.getElementById(keep.id); if (el) { el.value = keep.value; el.focus(); } }
    if (!soft) { window.scrollTo(0, 0); main.focus({ preventScroll: true }); } else window.scrollTo(0, scroll);
    if (node.afterMount) node.afterMount();
    ready();
  }).catch(function (e) {
    if (seq !== S.renderSeq || (e && e.status === 401)) return;
    const box = errorBox();
    showError(box, e);
    main.textContent = '';
    main.appendChild(h('div', null, box, h('button', { class: 'btn secondary', type: 'button', onclick: function () { route(); }, text: t('refresh') })));
  });
}

// ---- chats -------------------------------------------------------------------------
async function viewChats() {
  setTitle(t('chats'));
  const res = await Promise.all([get('/v1/conversations'), get('/v1/contacts')]);
  S.convs = res[0]; S.contacts = res[1];
  const list = h('ul', { class: 'list', id: 'chat-list' });
  for (const c of S.convs) {
    const name = c.name || peerName(c.peer, c.claimed_name);
    const last = c.last;
    const prefix = last.dir === 'out' ? t('you') + ': ' : '';
    list.appendChild(h('li', null, h('a', { class: 'item', href: '#/chat/' + c.peer },
      avatar(name, c.peer),
      h('span', { class: 'grow' },
        h('span', { class: 'row' }, h('span', { class: 'name grow', text: name }), h('span', { class: 'sub small', text: fmtTime(last.time) })),
        h('span', { class: 'row' }, h('span', { class: 'sub grow', text: prefix + last.text }),
          last.dir === 'out' ? h('span', { class: 'small state-' + last.state, text: t('st_' + last.state) }) : null,
          c.unread ? h('span', { class: 'badge', text: c.unread, 'aria-label': t('unread') + ': ' + c.unread }) : null)))));
  }
  return h('div', null,
    h('div', { class: 'actions' }, h('a', { class: 'btn', href: '#/new', id: 'new-chat', text: t('newMessage') })),
    S.convs.length ? list : h('p', { class: 'empty', text: t('noChats') }));
}

async function viewNew() {
  setTitle(t('newMessage'));
  S.contacts = await get('/v1/contacts');
  const input = h('input', { type: 'text', name: 'to', id: 'new-to', list: 'contact-names', autocomplete: 'off', required: true, autocapitalize: 'off', spellcheck: 'false' });
  const dl = h('datalist', { id: 'contact-names' }, S.contacts.map(function (c) { return h('option', { value: c.name }); }));
  const err = errorBox();
  return h('form', { class: 'card', onsubmit: function (ev) {
    ev.preventDefault();
    const v = input.value.trim();
    const c = S.contacts.filter(function (x) { return x.name === v; })[0];
    if (c) { location.hash = '#/chat/' + c.address; return; }
    if (/^[0-9a-fA-F]{32}$/.test(v)) { location.hash = '#/chat/' + v.toLowerCase(); return; }
    if (/^[0-9a-fA-F]{64}$/.test(v)) { location.hash = '#/chat/' + enc(v.toLowerCase()); return; }
    err.textContent = t('toHint');
  } }, field(t('to'), input, t('toHint')), dl, err, h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('start') })));
}

function msgFromIn(m) { return { dir: 'in', seq: m.seq, text: m.text, time: m.received || m.time, read: m.read }; }
function setState(el, state, reason) {
  el.textContent = t('st_' + state);
  el.className = 'state state-' + state;
  if (reason) el.title = reason;
}
function chatItem(m) {
  const out = m.dir === 'out';
  const meta = h('div', { class: 'meta' }, fmtTime(m.time));
  if (out) {
    const known = S.outState[m.id];
    const st = known && RANK[known] > RANK[m.state] ? known : m.state;
    S.outState[m.id] = st;
    const stEl = h('span', { class: 'state' });
    setState(stEl, st, m.reason);
    meta.appendChild(document.createTextNode(' \u00b7 '));
    meta.appendChild(stEl);
  }
  return h('li', { class: 'msg ' + (out ? 'out' : 'in'), 'data-out': out ? String(m.id) : null },
    h('div', { class: 'text', dir: 'auto', text: m.text }), meta);
}
function appendChat(m) {
  const list = $('#chat-msgs');
  if (!list) return;
  const empty = $('#chat-empty');
  if (empty) empty.remove();
  list.appendChild(chatItem(m));
  window.scrollTo(0, document.body.scrollHeight);
}
async function markRead(msgs) {
  let n = 0;
  for (const m of msgs) {
    if (m.dir === 'out' || m.read || n >= 50) continue;
    n++;
    try { await post('/v1/inbox/' + m.seq + '/read'); } catch (e) { /* next time */ }
  }
  if (n) refreshBadge();
}

async function viewChat() {
  const peer = S.route[1] || '';
  const res = await Promise.all([get('/v1/conversations/' + enc(peer) + '?limit=300'), get('/v1/contacts'), get('/v1/conversations')]);
  const msgs = res[0];
  S.contacts = res[1];
  const conv = res[2].filter(function (c) { return c.peer === peer; })[0];
  const c = contactFor(peer);
  setTitle(c ? c.name : peerName(peer, conv && conv.claimed_name));
  const list = h('ol', { class: 'msgs', id: 'chat-msgs', 'aria-live': 'polite', 'aria-relevant': 'additions' }, msgs.map(chatItem));
  const ta = h('textarea', { id: 'composer-text', name: 'text', rows: '1', required: true, maxlength: '4000', autocomplete: 'off' });
  const err = errorBox();
  const btn = h('button', { class: 'btn', type: 'submit', text: t('send') });
  const form = h('form', { class: 'composer', id: 'composer', onsubmit: async function (ev) {
    ev.preventDefault();
    const text = ta.value;
    if (!text.trim()) return;
    btn.disabled = true;
    err.textContent = '';
    try {
      const r = await post('/v1/messages', { to: peer, text: text });
      ta.value = '';
      appendChat({ dir: 'out', id: r.id, text: text, time: new Date().toISOString(), state: r.state });
    } catch (e) { showError(err, e); } finally { btn.disabled = false; ta.focus(); }
  } }, h('label', { for: 'composer-text', class: 'skip', text: t('message') }), ta, btn);
  ta.addEventListener('keydown', function (ev) { if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) form.requestSubmit ? form.requestSubmit() : btn.click(); });
  const who = c ? h('p', { class: 'small' }, h('a', { href: '#/contact/' + enc(c.name) }, c.verified ? h('span', { class: 'verified', text: '\u2713 ' + t('verified') }) : h('span', { class: 'unverified', text: t('notVerified') })), ' \u00b7 ', h('span', { class: 'mono', text: short(peer) }))
    : h('p', { class: 'small muted mono', text: peer });
  const node = h('div', null, who,
    msgs.length ? null : h('p', { class: 'empty', id: 'chat-empty', text: t('noMessages') }),
    list, h('p', { class: 'hint', text: t('stateHelp') }), err, form);
  node.afterMount = function () { window.scrollTo(0, document.body.scrollHeight); markRead(msgs); };
  return node;
}

// ---- contacts ------------------------------------------------------------------------
function copyButton(text) {
  return h('button', { class: 'btn secondary', type: 'button', text: t('copy'), onclick: function () { copyText(text); } });
}
function copyText(text) {
  const done = function () { toast(t('copied')); };
  if (navigator.clipboard && window.isSecureContext) { navigator.clipboard.writeText(text).then(done, function () { legacyCopy(text); done(); }); return; }
  legacyCopy(text); done();
}
function legacyCopy(text) {
  const ta = h('textarea', { value: text, readonly: true, css: { position: 'fixed', opacity: '0' } });
  document.body.appendChild(ta);
  ta.select();
  try { document.execCommand('copy'); } catch (e) { /* nothing more to try */ }
  ta.remove();
}
async function qrImage(text, alt) {
  const blob = await post('/web/qr', { text: text });
  const img = h('img', { class: 'qr', alt: alt, width: '320', height: '320' });
  img.src = URL.createObjectURL(blob);
  img.onload = function () { URL.revokeObjectURL(img.src); };
  return img;
}
function qrToggle(text, alt) {
  const slot = h('div');
  const btn = h('button', { class: 'btn secondary', type: 'button', 'aria-expanded': 'false', text: t('showQR') });
  btn.onclick = async function () {
    if (slot.firstChild) { slot.textContent = ''; btn.textContent = t('showQR'); btn.setAttribute('aria-expanded', 'false'); return; }
    try { slot.appendChild(await qrImage(text, alt)); btn.textContent = t('hideQR'); btn.setAttribute('aria-expanded', 'true'); } catch (e) { showError(slot, e); }
  };
  return [btn, slot];
}

async function viewContacts() {
  setTitle(t('contacts'));
  const res = await Promise.all([get('/v1/contacts'), get('/v1/peers'), get('/v1/id')]);
  S.contacts = res[0]; S.me = res[2];
  const me = S.me;
  const list = h('ul', { class: 'list', id: 'contact-list' }, S.contacts.map(function (c) {
    return h('li', null, h('a', { class: 'item', href: '#/contact/' + enc(c.name) }, avatar(c.name, c.address),
      h('span', { class: 'grow' }, h('span', { class: 'name', text: c.name }),
        h('span', { class: 'sub' }, c.verified ? h('span', { class: 'verified', text: '\u2713 ' + t('verified') }) : h('span', { text: t('notVerified') }), ' \u00b7 ', c.reachable ? t('reachable') : t('unreachable'))),
      h('span', { class: 'dot' + (c.reachable ? ' on' : ''), 'aria-hidden': 'true' })));
  }));
  const known = {};
  S.contacts.forEach(function (c) { known[c.address] = true; });
  const others = res[1].filter(function (p) { return !known[p.address]; });
  const name = h('input', { type: 'text', name: 'name', id: 'contact-name', required: true, maxlength: '64', autocomplete: 'off' });
  const addr = h('input', { type: 'text', name: 'address', id: 'contact-address', required: true, autocomplete: 'off', autocapitalize: 'off', spellcheck: 'false', class: 'mono' });
  const err = errorBox();
  const form = h('form', { class: 'card', id: 'add-contact', onsubmit: async function (ev) {
    ev.preventDefault();
    err.textContent = '';
    try {
      await post('/v1/contacts', { name: name.value.trim(), address: addr.value.trim() });
      toast(t('contactAdded'));
      route(true);
    } catch (e) { showError(err, e); }
  } }, h('h2', { text: t('addContact') }), field(t('name'), name), field(t('addressOrKey'), addr, t('addrHint')), err,
  h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('add') })));
  const otherList = others.length ? h('ul', { class: 'list' }, others.map(function (p) {
    const label = p.claimed_name ? t('unverifiedName', p.claimed_name) : short(p.address);
    return h('li', null, h('div', { class: 'item' }, avatar(p.claimed_name || p.address, p.address),
      h('span', { class: 'grow' }, h('span', { class: 'name', text: label }), h('span', { class: 'sub mono', text: p.address }),
        h('span', { class: 'sub', text: (p.reachable ? t('reachable') : t('unreachable')) + (p.neighbour ? ' \u00b7 ' + t('neighbour') : '') })),
      h('button', { class: 'btn secondary', type: 'button', text: t('add'), onclick: function () {
        addr.value = p.public_key || p.address;
        name.value = p.claimed_name || '';
        name.focus();
      } })));
  })) : null;
  return h('div', null,
    h('section', { class: 'card', 'aria-labelledby': 'me-h' },
      h('h2', { id: 'me-h', text: t('myId') + (me.name ? ': ' + me.name : '') }),
      h('p', { class: 'small muted', text: t('address') }), h('p', { class: 'mono', id: 'my-address', text: me.address }),
      h('p', { class: 'small muted', text: t('fingerprint') }), h('p', { class: 'mono', text: me.fingerprint }),
      h('div', { class: 'actions' }, copyButton(me.public_key), qrToggle(me.public_key, t('publicKey')))),
    h('h2', { text: t('contacts') }),
    S.contacts.length ? list : h('p', { class: 'empty', text: t('noContacts') }),
    form,
    otherList ? h('h2', { text: t('known') }) : null, otherList);
}

function safetyGrid(num) {
  const groups = String(num || '').split(' ');
  return h('div', { class: 'safety', role: 'group', 'aria-label': t('safetyNumber') }, groups.map(function (g) { return h('span', { text: g }); }));
}

async function viewContact() {
  const name = S.route[1] || '';
  const c = await get('/v1/contacts/' + enc(name));
  setTitle(c.name);
  const err = errorBox();
  const verifyBtn = !c.verified && c.key ? h('button', { class: 'btn', type: 'button', id: 'verify', text: t('markVerified'), onclick: async function () {
    try { await post('/v1/contacts/' + enc(c.name) + '/verify'); route(true); } catch (e) { showError(err, e); }
  } }) : null;
  return h('div', null,
    h('section', { class: 'card' },
      h('p', null, c.verified ? h('span', { class: 'verified', id: 'verified-state', text: '\u2713 ' + t('verified') }) : h('span', { class: 'unverified', id: 'verified-state', text: t('notVerified') }),
        ' \u00b7 ', c.reachable ? t('reachable') : t('unreachable')),
      c.claimed_name ? h('p', { class: 'small muted', text: t('unverifiedName', c.claimed_name) }) : null,
      h('p', { class: 'small muted', text: t('address') }), h('p', { class: 'mono', text: c.address }),
      c.key ? [h('p', { class: 'small muted', text: t('publicKey') }), h('p', { class: 'mono small', text: c.key }),
        h('p', { class: 'small muted', text: t('fingerprint') }), h('p', { class: 'mono', text: c.fingerprint })] : null),
    h('section', { class: 'card', 'aria-labelledby': 'sn-h' },
      h('h2', { id: 'sn-h', text: t('safetyNumber') }),
      c.safety_number ? [safetyGrid(c.safety_number), h('p', { class: 'small', text: t('safetyHelp') })] : h('p', { class: 'muted', text: t('keyUnknown') }),
      err,
      h('div', { class: 'actions' }, verifyBtn,
        h('a', { class: 'btn secondary', href: '#/chat/' + c.address, text: t('message') }),
        h('button', { class: 'btn danger', type: 'button', text: t('remove'), onclick: async function () {
          if (!window.confirm(t('confirmRemove', c.name))) return;
          try { await api('DELETE', '/v1/contacts/' + enc(c.name)); location.hash = '#/contacts'; } catch (e) { showError(err, e); }
        } }))));
}

// ---- channels -----------------------------------------------------------------------------
function roleName(r) { return r ? t('role_' + r) : ''; }
function chStatus(s) { return { joining: t('joining'), active: t('active'), removed: t('removedSt') }[s] || s; }
async function viewChannels() {
  setTitle(t('channels'));
  const chans = await get('/v1/channels');
  const list = h('ul', { class: 'list', id: 'channel-list' }, chans.map(function (c) {
    return h('li', null, h('a', { class: 'item', href: '#/channel/' + c.id }, avatar(c.name, c.id),
      h('span', { class: 'grow' }, h('span', { class: 'name', text: '#' + c.name }),
        h('span', { class: 'sub', text: [chStatus(c.status), t('membersN', c.members), roleName(c.role), c.private ? '' : t('open')].filter(Boolean).join(' \u00b7 ') })),
      c.join_requests ? h('span', { class: 'badge', text: c.join_requests, 'aria-label': t('requests') + ': ' + c.join_requests }) : null));
  }));
  const cname = h('input', { type: 'text', name: 'name', id: 'channel-name', required: true, maxlength: '64', autocomplete: 'off' });
  const pol = h('select', { name: 'policy', id: 'channel-policy' }, h('option', { value: '', text: t('pol_private') }), h('option', { value: 'signed', text: t('pol_signed') }), h('option', { value: 'announce', text: t('pol_announce') }));
  const err1 = errorBox(), err2 = errorBox(), err3 = errorBox();
  const code = h('textarea', { name: 'code', id: 'join-code', rows: '3', required: true, class: 'mono', autocapitalize: 'characters', spellcheck: 'false' });
  const open = h('input', { type: 'text', name: 'open', id: 'open-name', required: true, maxlength: '64', autocomplete: 'off' });
  return h('div', null,
    chans.length ? list : h('p', { class: 'empty', text: t('noChannels') }),
    h('form', { class: 'card', id: 'create-channel', onsubmit: async function (ev) {
      ev.preventDefault();
      try { const c = await post('/v1/channels', { name: cname.value.trim(), policy: pol.value }); location.hash = '#/channel/' + c.id; } catch (e) { showError(err1, e); }
    } }, h('h2', { text: t('createChannel') }), field(t('name'), cname), field(t('policy'), pol), err1, h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('create') }))),
    h('form', { class: 'card', id: 'join-channel', onsubmit: async function (ev) {
      ev.preventDefault();
      err2.textContent = t('joinWait');
      try {
        const c = await post('/v1/channels/join', { code: code.value.replace(/\s+/g, ''), wait_seconds: 30 });
        toast(c.status === 'active' ? t('joined') : t('requested'));
        location.hash = '#/channel/' + c.id;
      } catch (e) { showError(err2, e); }
    } }, h('h2', { text: t('joinChannel') }), field(t('inviteCode'), code), err2, h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('join') }))),
    h('form', { class: 'card', id: 'join-open', onsubmit: async function (ev) {
      ev.preventDefault();
      try { const c = await post('/v1/channels/join', { open: open.value.trim() }); location.hash = '#/channel/' + c.id; } catch (e) { showError(err3, e); }
    } }, h('h2', { text: t('joinOpen') }), field(t('name'), open, t('openHint')), err3, h('div', { class: 'actions' }, h('button', { class: 'btn secondary', type: 'submit', text: t('join') }))));
}

function channelMsgItem(m) {
  const who = m.own ? t('you') : (m.from_name || peerName(m.from));
  const meta = [fmtTime(m.time || m.received)];
  if (m.verified) meta.push(t('signed'));
  if (m.history) meta.push(t('history'));
  return h('li', { class: 'msg ' + (m.own ? 'out' : 'in'), 'data-seq': String(m.seq) },
    m.own ? null : h('div', { class: 'from', text: who }),
    h('div', { class: 'text', dir: 'auto', text: m.text }),
    h('div', { class: 'meta', text: meta.join(' \u00b7 ') }));
}
function appendChannelMsg(m) {
  const list = $('#channel-msgs');
  if (!list || list.querySelector('[data-seq="' + m.seq + '"]')) return;
  const empty = $('#chat-empty');
  if (empty) empty.remove();
  list.appendChild(channelMsgItem(m));
  window.scrollTo(0, document.body.scrollHeight);
}

async function viewChannel() {
  const id = S.route[1] || '';
  const sub = S.route[2];
  const ch = await get('/v1/channels/' + enc(id));
  S.chan = ch;
  if (sub === 'members') return channelMembers(ch);
  if (sub === 'invite') return channelInvite(ch);
  setTitle('#' + ch.name);
  const msgs = await get('/v1/channels/' + enc(ch.id) + '/messages?limit=300');
  const list = h('ol', { class: 'msgs', id: 'channel-msgs', 'aria-live': 'polite', 'aria-relevant': 'additions' }, msgs.map(channelMsgItem));
  const ta = h('textarea', { id: 'channel-text', name: 'text', rows: '1', required: true, autocomplete: 'off' });
  const err = errorBox();
  const btn = h('button', { class: 'btn', type: 'submit', text: t('send') });
  const canPost = ch.status === 'active' && (!ch.announce || ch.role === 'owner' || ch.role === 'admin');
  const form = canPost ? h('form', { class: 'composer', id: 'channel-composer', onsubmit: async function (ev) {
    ev.preventDefault();
    if (!ta.value.trim()) return;
    btn.disabled = true;
    try { const m = await post('/v1/channels/' + enc(ch.id) + '/messages', { text: ta.value }); ta.value = ''; appendChannelMsg(m); } catch (e) { showError(err, e); } finally { btn.disabled = false; ta.focus(); }
  } }, h('label', { for: 'channel-text', class: 'skip', text: t('message') }), ta, btn) : null;
  const admin = ch.role === 'owner' || ch.role === 'admin';
  const node = h('div', null,
    h('p', { class: 'small muted', text: [chStatus(ch.status), t('membersN', ch.members), roleName(ch.role), ch.private ? '' : t('open')].filter(Boolean).join(' \u00b7 ') }),
    h('div', { class: 'actions' },
      h('a', { class: 'btn secondary', href: '#/channel/' + ch.id + '/members', id: 'members-link' }, t('members'), ch.join_requests ? [' ', h('span', { class: 'badge', text: ch.join_requests })] : null),
      admin && ch.private ? h('a', { class: 'btn secondary', href: '#/channel/' + ch.id + '/invite', id: 'invite-link', text: t('invite') }) : null,
      h('button', { class: 'btn danger', type: 'button', text: t('leave'), onclick: async function () {
        if (!window.confirm(t('confirmLeave', ch.name))) return;
        try { await api('DELETE', '/v1/channels/' + enc(ch.id)); location.hash = '#/channels'; } catch (e) { showError(err, e); }
      } })),
    msgs.length ? null : h('p', { class: 'empty', id: 'chat-empty', text: t('noMessages') }),
    list, err, form);
  node.afterMount = function () { window.scrollTo(0, document.body.scrollHeight); };
  return node;
}

async function channelMembers(ch) {
  setTitle(t('members') + ' \u2013 #' + ch.name);
  const admin = ch.role === 'owner' || ch.role === 'admin';
  const res = await Promise.all([get('/v1/channels/' + enc(ch.id) + '/members'), admin ? get('/v1/channels/' + enc(ch.id) + '/requests') : []]);
  const err = errorBox();
  const act = function (path, member) {
    return async function () { try { await post('/v1/channels/' + enc(ch.id) + path, { members: [member] }); route(true); } catch (e) { showError(err, e); } };
  };
  const row = function (m, buttons) {
    const name = m.self ? t('self') : (m.name || peerName(m.address));
    return h('li', null, h('div', { class: 'item' }, avatar(name, m.address),
      h('span', { class: 'grow' }, h('span', { class: 'name', text: name }), h('span', { class: 'sub', text: roleName(m.role) + ' \u00b7 ' + m.fingerprint })), buttons));
  };
  return h('div', null, err,
    res[1].length ? [h('h2', { text: t('requests') }), h('ul', { class: 'list', id: 'request-list' }, res[1].map(function (m) {
      return row(m, h('span', { class: 'row' }, h('button', { class: 'btn', type: 'button', text: t('admit'), onclick: act('/requests/admit', m.public_key) }),
        h('button', { class: 'btn danger', type: 'button', text: t('reject'), onclick: act('/requests/reject', m.public_key) })));
    }))] : null,
    h('h2', { text: t('membersN', res[0].length) }),
    h('ul', { class: 'list', id: 'member-list' }, res[0].map(function (m) {
      return row(m, admin && !m.self ? h('button', { class: 'btn danger', type: 'button', text: t('remove'), onclick: function () {
        if (window.confirm(t('confirmRemove', m.name || short(m.address)))) act('/members/remove', m.public_key)();
      } }) : null);
    })));
}

async function channelInvite(ch) {
  setTitle(t('inviteTitle', '#' + ch.name));
  const uses = h('input', { type: 'number', name: 'uses', id: 'invite-uses', min: '1', max: '100', value: '1' });
  const hours = h('input', { type: 'number', name: 'hours', id: 'invite-hours', min: '1', max: '720', value: '24' });
  const approve = h('input', { type: 'checkbox', name: 'approve', id: 'invite-approve' });
  const out = h('div', { id: 'invite-out', 'aria-live': 'polite' });
  const err = errorBox();
  return h('div', null, h('form', { class: 'card', id: 'invite-form', onsubmit: async function (ev) {
    ev.preventDefault();
    err.textContent = '';
    out.textContent = '';
    try {
      const inv = await post('/v1/channels/' + enc(ch.id) + '/invites', { uses: +uses.value || 1, ttl_seconds: (+hours.value || 24) * 3600, approve: approve.checked });
      const img = await qrImage(inv.code, t('inviteCode'));
      add(out, h('section', { class: 'card' }, h('h2', { text: t('inviteCode') }), img,
        h('p', { class: 'code', id: 'invite-code', text: inv.code }),
        h('p', { class: 'small muted', text: t('grouped') }), h('p', { class: 'code', text: inv.grouped }),
        h('p', { class: 'small', text: t('inviteHelp') }),
        h('div', { class: 'actions' }, copyButton(inv.code))));
    } catch (e) { showError(err, e); }
  } }, field(t('uses'), uses), field(t('validHours'), hours), h('label', { class: 'check' }, approve, t('approve')), err,
  h('div', { class: 'actions' }, h('button', { class: 'btn', type: 'submit', text: t('makeInvite') }))), out);
}

// ---- node status ------------------------------------------------------------------------------
function kv(pairs) {
  const dl = h('dl', { class: 'kv' });
  for (const p of pairs) { if (p) { dl.appendChild(h('dt', { text: p[0] })); dl.appendChild(h('dd', { text: p[1] })); } }
  return dl;
}
function gauge(used, limit, label) {
  const pct = limit > 0 ? Math.min(100, used / limit * 100) : 0;
  return h('div', { class: 'gauge' + (pct >= 90 ? ' full' : pct >= 60 ? ' high' : ''), role: 'meter', 'aria-label': label,
    'aria-valuemin': '0', 'aria-valuemax': String(limit), 'aria-valuenow': String(used), 'aria-valuetext': fmtNum(pct, 1) + ' %' },
  h('span', { css: { width: pct.toFixed(1) + '%' } }));
}
async function viewStatus() {
  setTitle(t('status'));
  const res = await Promise.all([get('/v1/status'), get('/v1/links'), get('/v1/peers'), get('/v1/radio')]);
  const st = res[0], links = res[1], peers = res[2], radio = res[3];
  S.timer = setInterval(function () { if (S.route[0] === 'status' && !document.hidden) route(true); }, 10000);
  const names = {};
  peers.forEach(function (p) { names[p.address] = p.name || (p.claimed_name ? t('unverifiedName', p.claimed_name) : short(p.address)); });
  let radioCard;
  if (!radio.present) radioCard = h('p', { class: 'muted', text: t('noRadio') });
  else {
    const pct = radio.airtime_limit_seconds > 0 ? radio.airtime_used_seconds / radio.airtime_limit_seconds * 100 : 0;
    radioCard = [
      radio.duty_cycle > 0 ? [h('p', { class: 'row' }, h('span', { class: 'grow', text: t('airtime') }), h('strong', { text: fmtNum(pct, 1) + ' %' })),
        gauge(radio.airtime_used_seconds, radio.airtime_limit_seconds, t('airtime')),
        h('p', { class: 'small muted', text: t('airtimeOf', fmtNum(radio.airtime_used_seconds, 1), fmtNum(radio.airtime_limit_seconds, 1), fmtDur(radio.window_seconds)) })]
        : h('p', { class: 'warn', text: t('listenOnly') }),
      kv([[t('region'), radio.region || '\u2013'], [t('frequency'), fmtNum(radio.frequency_hz / 1e6, 3) + ' MHz'],
        ['SF / BW', radio.spreading_factor + ' / ' + fmtNum(radio.bandwidth_hz / 1000) + ' kHz'],
        [t('dutyCycle'), fmtNum(radio.duty_cycle * 100, 2) + ' %'], [t('totalAir'), fmtNum(radio.airtime_total_seconds, 1) + ' s'],
        ['', radio.connected ? t('connected') : t('disconnected')]])];
  }
  const neigh = peers.filter(function (p) { return p.neighbour; });
  return h('div', null,
    h('section', { class: 'card', 'aria-labelledby': 'node-h' }, h('h2', { id: 'node-h', text: st.name || t('myId') }),
      h('p', { class: 'mono small', text: st.address }), h('p', { class: 'mono small muted', text: st.fingerprint }),
      kv([[t('version'), st.version], [t('uptime'), fmtDur(st.uptime_seconds)], [t('links'), st.links], [t('peers'), st.peers], [t('routes'), st.routes],
        [t('outbox'), st.outbox], [t('held'), t('messagesN', st.held_messages) + ', ' + fmtBytes(st.held_bytes)], [t('store'), fmtBytes(st.store_bytes)], [t('unread'), st.unread]])),
    h('section', { class: 'card', id: 'radio', 'aria-labelledby': 'radio-h' }, h('h2', { id: 'radio-h', text: t('radio') }), radioCard),
    h('h2', { text: t('links') }),
    links.length ? h('ul', { class: 'list', id: 'link-list' }, links.map(function (l) {
      return h('li', null, h('div', { class: 'item' }, h('span', { class: 'dot on', 'aria-hidden': 'true' }),
        h('span', { class: 'grow' }, h('span', { class: 'name', text: l.kind + ' \u00b7 ' + (names[l.peer] || short(l.peer) || l.id) }),
          h('span', { class: 'sub', text: fmtDur(l.up_seconds) + (l.queued ? ' \u00b7 ' + l.queued + ' queued' : '') }))));
    })) : h('p', { class: 'empty', text: t('noLinks') }),
    h('h2', { text: t('neighbours') }),
    neigh.length ? h('ul', { class: 'list', id: 'neighbour-list' }, neigh.map(function (p) {
      return h('li', null, h('div', { class: 'item' }, avatar(names[p.address], p.address),
        h('span', { class: 'grow' }, h('span', { class: 'name', text: names[p.address] }), h('span', { class: 'sub mono', text: p.address }))));
    })) : h('p', { class: 'empty', text: t('noNeighbours') }));
}

// ---- FAPP (appointments) ---------------------------------------------------------------------
async function viewFAPP() {
  if (!S.fapp) { location.replace('#/chats'); return null; }
  return window.meshdFAPP(S.route[1]);
}

// ---- boot ------------------------------------------------------------------------------------
async function boot() {
  setLang(pickLang());
  $('#lang').addEventListener('click', function () {
    const l = S.lang === 'de' ? 'en' : 'de';
    try { localStorage.setItem('meshd-lang', l); } catch (e) { /* private mode */ }
    setLang(l);
    if (S.csrf) { tabs(); route(true); } else showLogin();
  });
  $('#logout').addEventListener('click', async function () {
    try { await post('/web/logout'); } catch (e) { /* gone anyway */ }
    showLogin(t('loggedOut'));
  });
  window.addEventListener('hashchange', function () { if (S.csrf) route(); });
  let r;
  try { r = await fetch('/web/session', { credentials: 'same-origin' }); } catch (e) { showLogin(t('offline')); return; }
  if (r.ok) { S.csrf = (await r.json()).csrf; startApp(); return; }
  const body = await r.json().catch(function () { return {}; });
  showLogin(body.error && body.error.code === 'no_password' ? t('noPassword') : '');
}
S.api = { fmtBytes: fmtBytes, get: get, post: post, api: api, h: h, t: t, field: field, errorBox: errorBox, showError: showError, toast: toast, fmtTime: fmtTime, enc: enc, route: route, setTitle: setTitle, TEXT: TEXT, S: S };
window.meshd = S.api;
boot();
})();
