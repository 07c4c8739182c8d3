/* hotline-bot staff console. Vanilla JS; same-origin API under /agents/api.
 * POSTs carry the session's CSRF token in X-CSRF-Token.
 *
 * The shell: after login, /agents/api/session says who is logged in and their
 * rights; every section of the console registers itself with
 *   HotlineConsole.register({id, title, right, show(element, ctx), hide()})
 * and gets a tab when the member has ``right`` ("desk", "kb", "dashboard",
 * "accounts"). ``ctx`` = {api, el, flash, me}. The desk below is one section;
 * kb.js, dashboard.js, accounts.js are others (each renders into its own
 * <section id="section-<id>">).
 *
 * The desk: one long poll (/agents/api/updates) keeps the queue, the callbacks
 * and the open ticket fresh and doubles as the on-duty heartbeat. There is never
 * more than one: a new one (another ticket opened, the section left, the page
 * left) aborts the previous request (AbortController), so the server stops
 * waiting for it at once instead of holding it for 20 s.
 */
(function () {
  "use strict";
  var sections = [], current = null, member = null;
  window.HotlineConsole = {
    register: function (spec) { sections.push(spec); if (member) renderTabs(); },
    context: function () { return { api: api, el: el, flash: flash, me: member, latest: latest }; }
  };
  function renderTabs() {
    var nav = $("sections"); nav.textContent = "";
    var allowed = sections.filter(function (s) { return member.rights.indexOf(s.right) >= 0; });
    allowed.forEach(function (spec) {
      nav.appendChild(el("button", { type: "button", role: "tab", id: "tab-section-" + spec.id, text: spec.title,
        "aria-selected": current === spec ? "true" : "false", onclick: function () { openSection(spec); } }));
    });
    if (!current && allowed.length) openSection(allowed[0]);
  }
  function openSection(spec) {
    if (current && current !== spec && current.hide) current.hide();
    current = spec;
    Array.prototype.forEach.call(document.querySelectorAll("[data-section]"), function (node) {
      node.hidden = node.getAttribute("data-section") !== spec.id;
    });
    Array.prototype.forEach.call($("sections").children, function (b) {
      b.setAttribute("aria-selected", b.id === "tab-section-" + spec.id ? "true" : "false");
    });
    spec.show($("section-" + spec.id), window.HotlineConsole.context());
  }
  var $ = function (id) { return document.getElementById(id); };
  var S = { csrf: null, me: null, sig: null, queue: [], callbacks: [], seen: null, current: null, lastTurn: 0,
            loop: 0, rendered: {} };
  var REASONS = { user_request: "市民要求转人工 · asked for a person", emergency: "紧急情况 · emergency",
                  low_confidence: "机器人未能回答 · the bot could not answer", complaint: "投诉 · complaint" };
  var CHANNELS = { web: "网页 · web widget", wechat: "微信 · WeChat", api: "API", rasa: "Rasa" };
  var STATUSES = { bot: "机器人对话 · with the bot", waiting: "等待接入 · waiting", claimed: "处理中 · in progress", resolved: "已解决 · resolved",
                   returned: "已交回机器人 · handed back", abandoned: "市民已离开 · abandoned" };
  var LANGUAGES = { zh: "中文", en: "English" };
  function human(map, code) { return map[code] || code || "—"; }
  function when(iso) {
    if (!iso) return "—";
    var d = new Date(iso);
    return d.toLocaleDateString("zh-CN") + " " + d.toLocaleTimeString("zh-CN", { hour: "2-digit", minute: "2-digit" });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c !== null && c !== undefined) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  function api(method, path, body, signal, extraHeaders) {
    var headers = Object.assign({}, extraHeaders || {});
    var changes = method !== "GET";  // POST, DELETE: JSON with the session's CSRF token
    if (changes) { headers["Content-Type"] = "application/json"; headers["X-CSRF-Token"] = S.csrf || ""; }
    return fetch("/agents/api" + path, { method: method, headers: headers, credentials: "same-origin",
      body: changes ? JSON.stringify(body || {}) : undefined, signal: signal })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) { var e = new Error((data.error && data.error.message) || "HTTP " + r.status); e.status = r.status; e.data = data; throw e; }
          return data;
        });
      });
  }
  // latest(kind) wraps the handlers of a new request of that kind; once a newer one of the kind has started,
  // they do nothing. A slow answer (a ticket, a KB entry, a search, the dashboard's opening load) arriving
  // after the one asked for next was drawn over it, and the buttons then acted on what had been clicked, not
  // on what was shown: a ticket's reply box, an entry's retire and rollback.
  var newest = {};
  function latest(kind) {
    var n = (newest[kind] || 0) + 1;
    newest[kind] = n;
    return function (handler) { return function (value) { if (newest[kind] === n) return handler(value); }; };
  }
  function minutes(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor(seconds / 60) % 60, sec = seconds % 60;
    return (h ? h + ":" + (m < 10 ? "0" : "") : "") + m + ":" + (sec < 10 ? "0" : "") + sec;
  }
  // live wait timers: every [data-since] counts up each second without asking the server
  setInterval(function () {
    Array.prototype.forEach.call(document.querySelectorAll("[data-since]"), function (node) {
      node.textContent = node.getAttribute("data-prefix") + minutes((Date.now() - Number(node.getAttribute("data-since"))) / 1000);
    });
  }, 1000);
  function flash(text) {
    $("alert").textContent = text;
    setTimeout(function () { if ($("alert").textContent === text) $("alert").textContent = ""; }, 8000);
  }

  // -- login -------------------------------------------------------------------------------
  function showLogin() { $("app").hidden = true; $("login").hidden = false; $("username").focus(); }
  function showApp(me) {
    S.csrf = me.csrf_token; S.me = me.agent; member = me.agent;
    $("login").hidden = true; $("app").hidden = false;
    $("me").textContent = me.agent.display_name;
    $("duty").checked = !!me.on_duty;
    $("duty").parentNode.hidden = member.rights.indexOf("desk") < 0;
    renderTabs();
  }
  window.HotlineConsole.register({
    id: "desk", title: "工单 · Desk", right: "desk",
    show: function () { if (!S.polling) { S.polling = true; S.loop += 1; poll(S.loop, 0); } },
    hide: function () { S.polling = false; S.loop += 1; abortPoll(); }
  });
  $("login-form").addEventListener("submit", function (e) {
    e.preventDefault();
    $("login-error").textContent = "";
    api("POST", "/login", { username: $("username").value, password: $("password").value })
      .then(function (me) { $("password").value = ""; unlockAudio(); showApp(me); })
      .catch(function (err) { $("login-error").textContent = err.message; });
  });
  $("logout").addEventListener("click", function () {
    urgentAlarm([]);
    api("POST", "/logout").then(function () { S.loop += 1; S.csrf = null; location.reload(); });
  });
  $("duty").addEventListener("change", function () {
    api("POST", "/duty", { on_duty: $("duty").checked }).catch(function (e) { flash(e.message); });
  });

  // -- alerts: a short beep (WebAudio, no file) + title flash for new tickets -------------------
  var audio = null;
  function unlockAudio() { try { audio = audio || new (window.AudioContext || window.webkitAudioContext)(); } catch (e) { audio = null; } }
  function beep() {
    if (!audio) return;
    try {
      var osc = audio.createOscillator(), gain = audio.createGain();
      osc.frequency.value = 880; gain.gain.value = 0.08; osc.connect(gain); gain.connect(audio.destination);
      osc.start(); osc.stop(audio.currentTime + 0.25);
    } catch (e) { /* no sound: the visual alert remains */ }
  }
  var baseTitle = document.title, titleTimer = null, alarmTimer = null;
  // An urgent (emergency) ticket: a siren that repeats every few seconds until someone claims it,
  // not the one-beep banner of ordinary tickets.
  function siren() {
    var bar = $("urgent-bar");
    bar.setAttribute("data-rings", String(Number(bar.getAttribute("data-rings") || 0) + 1));
    document.title = document.title.indexOf("🚨") === 0 ? baseTitle : "🚨 紧急 URGENT · " + baseTitle;
    if (!audio) return;
    try {
      [0, 0.3].forEach(function (at, i) {
        var osc = audio.createOscillator(), gain = audio.createGain();
        osc.frequency.value = i ? 660 : 990; gain.gain.value = 0.12; osc.connect(gain); gain.connect(audio.destination);
        osc.start(audio.currentTime + at); osc.stop(audio.currentTime + at + 0.25);
      });
    } catch (e) { /* the banner and title remain */ }
  }
  function urgentAlarm(urgent) {
    var bar = $("urgent-bar");
    if (!urgent.length) {
      if (alarmTimer) { clearInterval(alarmTimer); alarmTimer = null; document.title = baseTitle; }
      bar.hidden = true; return;
    }
    bar.hidden = false;
    bar.textContent = "🚨 紧急工单等待接入 · Urgent, unclaimed: " + urgent.map(function (h) { return "#" + h.id; }).join(" ");
    if (!alarmTimer) { siren(); alarmTimer = setInterval(siren, 3000); }
  }
  function alertNew(count) {
    beep(); flash("🔔 " + count + " 个新工单 · new ticket(s)");
    clearInterval(titleTimer);
    var n = 0;
    titleTimer = setInterval(function () {
      document.title = n % 2 ? baseTitle : "🔔 (" + count + ") " + baseTitle;
      if (++n > 9) { clearInterval(titleTimer); document.title = baseTitle; }
    }, 700);
  }

  // -- the long poll ----------------------------------------------------------------------------
  function abortPoll() {
    if (S.controller) { S.controller.abort(); S.controller = null; }
  }
  window.addEventListener("pagehide", abortPoll);
  function poll(loop, failures) {
    if (loop !== S.loop) return;
    abortPoll();
    var controller = window.AbortController ? new AbortController() : null;
    S.controller = controller;
    var q = "?wait=20&sig=" + encodeURIComponent(S.sig || "") +
      (S.current ? "&handoff=" + S.current.id + "&after=" + S.lastTurn : "");
    api("GET", "/updates" + q, null, controller ? controller.signal : undefined).then(function (data) {
      if (S.controller === controller) S.controller = null;
      if (loop !== S.loop) return;
      applyUpdates(data); poll(loop, 0);
    }).catch(function (err) {
      if (err.name === "AbortError" || loop !== S.loop) return;  // replaced by a newer poll
      if (err.status === 401) { showLogin(); return; }
      setTimeout(function () { poll(loop, failures + 1); }, Math.min(30000, 1000 * Math.pow(2, failures)));
    });
  }

  function applyUpdates(data) {
    S.sig = data.sig; S.queue = data.queue; S.callbacks = data.callbacks; S.receivedAt = Date.now();
    $("duty").checked = !!data.on_duty;
    var openIds = data.queue.filter(function (h) { return h.status === "waiting"; }).map(function (h) { return h.id; });
    if (S.seen !== null) {
      var fresh = openIds.filter(function (id) { return !S.seen[id]; });
      if (fresh.length) alertNew(fresh.length);
    }
    S.seen = S.seen || {};
    openIds.forEach(function (id) { S.seen[id] = true; });
    renderQueue(); renderCallbacks();
    urgentAlarm(data.queue.filter(function (h) { return h.status === "waiting" && h.priority === 0; }));
    if (data.handoff_turns && S.current && data.handoff_turns.conversation_id === S.current.conversation_id) {
      data.handoff_turns.turns.forEach(appendTurn);
      S.lastTurn = Math.max(S.lastTurn, data.handoff_turns.last_id);
    }
  }

  // -- lists ----------------------------------------------------------------------------------------
  function renderQueue() {
    var list = $("queue"); list.textContent = "";
    var received = S.receivedAt || Date.now();
    $("queue-count").textContent = String(S.queue.filter(function (h) { return h.status === "waiting"; }).length);
    if (!S.queue.length) { list.appendChild(el("li", { "class": "empty", text: "队列为空 · No tickets waiting" })); return; }
    S.queue.forEach(function (h) {
      var urgent = h.priority === 0;
      var item = el("li", {}, [el("button", {
        type: "button", "class": "ticket" + (urgent ? " urgent" : "") + (S.current && S.current.id === h.id ? " active" : "") +
          (h.status === "claimed" ? " mine" : ""),
        "data-handoff-id": String(h.id), onclick: function () { openTicket(h.id); }
      }, [
        el("span", { "class": "row" }, [
          el("strong", { text: "#" + h.id }),
          urgent ? el("span", { "class": "badge urgent", text: "紧急 URGENT" }) : null,
          el("span", { "class": "badge", text: h.language }),
          h.status === "claimed" ? el("span", { "class": "badge claimed", text: "我的 · mine" })
            : el("span", { "class": "badge wait", "data-since": String(received - h.waiting_seconds * 1000),
                           "data-prefix": "等待 · ", text: "等待 · " + minutes(h.waiting_seconds) }),
          h.callback ? el("span", { "class": "badge", text: "☎ 已留电话 · callback" }) : null
        ]),
        // the question that made the citizen ask for a person, not the "转人工" itself
        el("span", { "class": "question preview", text: h.question ? "“" + h.question + "”" : "（没有提问 · no question asked）" }),
        el("span", { "class": "reason", text: human(REASONS, h.reason) })
      ])]);
      list.appendChild(item);
    });
  }
  function renderCallbacks() {
    var list = $("callbacks"); list.textContent = "";
    $("callback-count").textContent = String(S.callbacks.length);
    if (!S.callbacks.length) { list.appendChild(el("li", { "class": "empty", text: "没有待回电 · No callback requests" })); return; }
    S.callbacks.forEach(function (c) {
      list.appendChild(el("li", { "class": "callback" }, [
        el("div", { "class": "row" }, [el("strong", { text: "☎ " + c.phone }), el("span", { "class": "badge", text: c.language })]),
        c.name ? el("div", { text: c.name }) : null,
        c.note ? el("div", { "class": "preview", text: c.note }) : null,
        el("div", { "class": "muted", text: new Date(c.created_at).toLocaleString() }),
        el("button", { type: "button", text: "已回电 · Done", onclick: function () {
          api("POST", "/callbacks/" + c.id + "/done").then(function () { S.sig = null; kick(); }).catch(function (e) { flash(e.message); });
        } })
      ]));
    });
  }
  function selectTab(name) {
    var queue = name === "queue";
    $("tab-queue").setAttribute("aria-selected", String(queue)); $("tab-callbacks").setAttribute("aria-selected", String(!queue));
    $("queue").hidden = !queue; $("callbacks").hidden = queue;
  }
  $("tab-queue").addEventListener("click", function () { selectTab("queue"); });
  $("tab-callbacks").addEventListener("click", function () { selectTab("callbacks"); });
  function kick() { S.loop += 1; poll(S.loop, 0); }  // restart the long poll with fresh parameters

  // -- one ticket ---------------------------------------------------------------------------------
  // The ticket the agent last asked to see: an answer to an action on another one (a reply, resolve, hand
  // back, transfer, claim) arriving after the agent moved on changes nothing on screen; before, it was drawn
  // into the ticket opened since (a reply in the wrong transcript, the next ticket wiped with "closed").
  function showing(id) { return S.wanted === id; }
  function openTicket(id) {
    S.wanted = id;
    var drawn = latest("ticket");
    api("GET", "/handoffs/" + id).then(drawn(renderTicket)).catch(drawn(function (e) { flash(e.message); }));
  }

  function windowText(w) {
    // WeChat only accepts customer-service messages for 48 h after the citizen's last message, 5 at most
    var queued = w.queued ? " · " + w.queued + " 条待发 queued" : "";
    if (!w.open) return "已关闭 closed: 用户再次发消息前无法送达 (delivered when the citizen writes again)" + queued;
    return "可发送 open · 剩余 " + w.remaining + " 条 left · 截止 until " + w.expires_at + queued;
  }

  function renderTicket(h) {
    // the same ticket drawn again (its card clicked, a claim) keeps the reply being typed
    var draft = S.current && S.current.id === h.id && $("reply-text") ? $("reply-text").value : "";
    S.current = h; S.rendered = {}; S.lastTurn = 0;
    latest("kb-search");  // a search still running for the ticket before is not drawn into this one
    var mine = h.status === "claimed" && h.claimed_by === S.me.username;
    var detail = $("detail"); detail.textContent = "";
    var claimFirst = mine ? null : "先接入工单 · Claim the ticket first";
    detail.appendChild(el("div", { "class": "ticket-head" }, [
      el("h2", { text: "工单 #" + h.id + " · " + human(REASONS, h.reason) }),
      el("p", { "class": "ticket-question" }, [el("span", { "class": "muted", text: "市民的问题 · Question: " }),
        el("strong", { text: h.question || "（没有提问 · no question asked）" })]),
      el("dl", { "class": "facts" }, [
        el("dt", { text: "原因 · Reason" }), el("dd", { "class": "fact-reason", text: human(REASONS, h.reason) }),
        el("dt", { text: "优先级 · Priority" }), el("dd", { text: h.priority === 0 ? "紧急 · urgent" : "普通 · normal" }),
        el("dt", { text: "语言 · Language" }), el("dd", { "class": "fact-language", "data-code": h.language, text: human(LANGUAGES, h.language) }),
        el("dt", { text: "渠道 · Channel" }), el("dd", { text: human(CHANNELS, h.channel) }),
        el("dt", { text: "提交时间 · Asked at" }), el("dd", { "class": "fact-created", text: when(h.created_at) }),
        h.status === "waiting" ? el("dt", { text: "已等待 · Waiting" }) : null,
        h.status === "waiting" ? el("dd", { "class": "fact-wait", "data-since": String(Date.now() - h.waiting_seconds * 1000), "data-prefix": "",
                                             text: minutes(h.waiting_seconds) }) : null,
        h.channel_status ? el("dt", { text: "发送窗口 · Reply window" }) : null,
        h.channel_status ? el("dd", { "class": "fact-window", text: windowText(h.channel_status) }) : null,
        (h.callbacks || []).length ? el("dt", { text: "回电 · Callback" }) : null,
        (h.callbacks || []).length ? el("dd", { "class": "fact-callback", text: h.callbacks.map(function (c) {
          return "☎ " + c.phone + (c.name ? " " + c.name : "") + " · " + (c.status === "open" ? "待回电 · to call back" : "已回电 · done") +
            (c.due_at ? " · 截止 due " + when(c.due_at) : "") + (c.note ? " · “" + c.note + "”" : "");
        }).join("\n") }) : null,
        el("dt", { text: "状态 · Status" }), el("dd", { "class": "fact-status", text: human(STATUSES, h.status) + (h.claimed_by ? " (" + h.claimed_by + ")" : "") })
      ]),
      el("details", { "class": "codes" }, [el("summary", { text: "技术信息 · Details" }),
        el("code", { "class": "fact-codes", text: "reason=" + h.reason + " · language=" + h.language + " · channel=" + h.channel +
          " · priority=" + h.priority + " · conversation=" + h.conversation_id }),
        " ", el("code", { "class": "fact-kb", text: "kb=" + h.kb_version })]),
      el("div", { "class": "buttons" }, [
        h.status === "waiting" ? el("button", { type: "button", "class": "primary", id: "claim", text: "接入 · Claim", onclick: function () { act("claim"); } }) : null,
        // shown before the claim, but disabled: an agent sees what will be possible
        el("button", { type: "button", id: "resolve", text: "结束 · Resolve", disabled: !mine, title: claimFirst,
          onclick: function () { confirmAct("resolve", "确定结束这个工单？市民会看到对话已结束。 · Resolve this ticket? The citizen will see the conversation ended.", "确定结束 · Yes, resolve"); } }),
        el("button", { type: "button", id: "hand-back", text: "交回机器人 · Hand back", disabled: !mine, title: claimFirst,
          onclick: function () { confirmAct("hand_back", "确定交回机器人？之后由机器人继续回答。 · Hand back to the bot? The bot answers from now on.", "确定交回 · Yes, hand back"); } }),
        mine ? null : el("span", { "class": "muted", id: "claim-first", text: claimFirst })
      ]),
      el("div", { "class": "confirm", id: "confirm", role: "alertdialog", "aria-live": "assertive", hidden: "" })
    ]));
    var transcript = el("ol", { "class": "transcript", id: "transcript", "aria-label": "Transcript" });
    detail.appendChild(transcript);
    h.transcript.forEach(appendTurn);
    if (mine) {
      // right under the transcript, never over the candidates
      var box = el("textarea", { id: "reply-text", rows: "4", maxlength: "4000", "aria-label": "Reply to the citizen" });
      box.value = draft;
      detail.appendChild(el("form", { "class": "reply", onsubmit: function (e) { e.preventDefault(); sendReply(); } }, [
        box, el("div", { "class": "reply-buttons" }, [
          el("button", { type: "submit", "class": "primary", id: "send-reply", text: "发送 · Send" }),
          el("button", { type: "button", id: "save-note", text: "存为内部备注 · Private note", title: "只有工作人员能看到 · staff only",
            onclick: function () { sendReply(true); } })])
      ]));
      box.addEventListener("keydown", function (e) { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); sendReply(); } });
      if (sending[h.id]) replyButtons(true);  // drawn again while its reply is on its way
      detail.appendChild(deskTools(h));
    }
    if (h.previous_conversations && h.previous_conversations.length) {
      detail.appendChild(el("section", { "class": "history" }, [
        el("h3", { text: "此市民以前的对话 · Earlier conversations (" + h.previous_conversations.length + ")" }),
        el("ul", { "class": "history-list" }, h.previous_conversations.map(function (c) {
          return el("li", {}, [el("span", { "class": "muted", text: when(c.created_at) + " · " + human(STATUSES, c.status) +
              (c.handoffs ? " · 转人工 " + c.handoffs + " 次" : "") + " · " }),
            el("span", { text: c.first_question || "（没有提问 · no question）" })]);
        }))
      ]));
    }
    detail.appendChild(el("section", { "class": "kb" }, [
      el("h3", { text: "机器人考虑过的答案 · Top candidates" }),
      el("ul", { "class": "candidates" }, (h.candidates.length ? h.candidates : []).map(kbItem)),
      h.candidates.length ? null : el("p", { "class": "muted", text: "无 · none" }),
      el("form", { "class": "kb-search", onsubmit: function (e) { e.preventDefault(); searchKb(); } }, [
        el("label", { "for": "kb-q", "class": "sr", text: "Search the knowledge base" }),
        el("input", { id: "kb-q", type: "search", placeholder: "搜索知识库 · Search the KB" }),
        el("button", { type: "submit", text: "搜索 · Search" })
      ]),
      el("ul", { "class": "candidates", id: "kb-results" })
    ]));
    renderQueue(); kick();
  }

  // canned replies (bilingual; admins add them here), transfer to a colleague or back to the queue
  function deskTools(h) {
    var canned = el("select", { id: "canned", "aria-label": "快捷回复 · Canned replies" }, [el("option", { value: "", text: "快捷回复 · Canned reply…" })]);
    var colleagues = el("select", { id: "transfer-to", "aria-label": "转给 · Transfer to" }, [el("option", { value: "", text: "退回队列 · back to the queue" })]);
    api("GET", "/canned").then(function (data) {
      S.canned = data.replies;
      data.replies.forEach(function (r) { canned.appendChild(el("option", { value: String(r.id), text: r.title })); });
    }).catch(function (e) { flash(e.message); });
    api("GET", "/colleagues").then(function (data) {
      data.agents.forEach(function (a) {
        colleagues.appendChild(el("option", { value: a.username, text: a.display_name + (a.on_duty ? " · 在岗 on duty" : " · 离岗 off duty") }));
      });
    }).catch(function (e) { flash(e.message); });
    canned.addEventListener("change", function () {
      var reply = (S.canned || []).filter(function (r) { return String(r.id) === canned.value; })[0];
      if (!reply) return;
      var box = $("reply-text");
      box.value = (box.value ? box.value + "\n" : "") + (h.language === "en" ? reply.en : reply.zh);
      canned.value = ""; box.focus();
    });
    var tools = el("div", { "class": "desk-tools" }, [
      canned,
      el("span", { "class": "spacer" }),
      colleagues,
      el("button", { type: "button", id: "transfer", text: "转交 · Transfer", onclick: function () {
        var to = colleagues.value || null;
        api("POST", "/handoffs/" + h.id + "/transfer", { to_agent: to }).then(function () {
          S.sig = null;
          if (!showing(h.id)) { kick(); return; }
          S.current = null; S.wanted = null;
          $("detail").textContent = "";
          $("detail").appendChild(el("p", { "class": "empty", text: "工单 #" + h.id + " 已转交 · transferred" + (to ? " → " + to : " → queue") }));
          kick();
        }).catch(function (e) { flash(e.message); });
      } })
    ]);
    if (S.me.rights.indexOf("accounts") >= 0) tools.appendChild(cannedEditor(canned));
    return tools;
  }
  function cannedEditor(select) {
    var editing = null;
    var title = el("input", { id: "canned-title", placeholder: "标题 · Title", maxlength: "80" });
    var zh = el("textarea", { id: "canned-zh", rows: "2", placeholder: "中文", maxlength: "4000" });
    var en = el("textarea", { id: "canned-en", rows: "2", placeholder: "English", maxlength: "4000" });
    var list = el("ul", { "class": "canned-list", id: "canned-list" });
    function refreshSelect() {
      while (select.options.length > 1) select.remove(1);
      (S.canned || []).forEach(function (r) { select.appendChild(el("option", { value: String(r.id), text: r.title })); });
      list.textContent = "";
      (S.canned || []).forEach(function (r) {
        var del = el("button", { type: "button", "class": "canned-delete", text: "删除 · Delete" });
        del.addEventListener("click", function () {
          if (del.getAttribute("data-armed") !== "1") { del.setAttribute("data-armed", "1"); del.textContent = "确认删除 · Confirm delete"; del.classList.add("danger", "primary"); return; }
          api("POST", "/canned/" + r.id + "/delete").then(function () {
            S.canned = S.canned.filter(function (x) { return x.id !== r.id; }); refreshSelect(); flash("已删除 · deleted: " + r.title);
          }).catch(function (err) { flash(err.message); });
        });
        list.appendChild(el("li", { "data-canned-id": String(r.id) }, [el("strong", { text: r.title }), " ",
          el("button", { type: "button", "class": "canned-edit", text: "编辑 · Edit", onclick: function () {
            editing = r.id; title.value = r.title; zh.value = r.zh; en.value = r.en; title.focus();
          } }), " ", del]));
      });
    }
    var form = el("form", { "class": "canned-editor" }, [title, zh, en,
      el("button", { type: "submit", id: "canned-save", text: "保存快捷回复 · Save canned reply" })]);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var id = editing, save = $("canned-save");
      if (save.disabled) return;  // a double click saved the reply twice
      save.disabled = true;
      api("POST", "/canned" + (id ? "/" + id : ""), { title: title.value.trim(), zh: zh.value.trim(), en: en.value.trim() }).then(function (r) {
        S.canned = (S.canned || []).filter(function (x) { return x.id !== r.id; }).concat([r]);
        editing = null; refreshSelect();
        title.value = zh.value = en.value = ""; flash("已保存 · saved: " + r.title);
      }).catch(function (err) { flash(err.message); }).then(function () { save.disabled = false; });
    });
    var box = el("details", { "class": "canned-admin" }, [el("summary", { text: "管理快捷回复 · Manage canned replies" }), list, form]);
    box.addEventListener("toggle", refreshSelect);
    return box;
  }

  // resolve / hand back ask first: one stray click must not end a citizen's conversation
  function confirmAct(action, question, yes) {
    var box = $("confirm"); box.textContent = ""; box.hidden = false;
    var ok = el("button", { type: "button", "class": "primary danger", id: "confirm-yes", text: yes, onclick: function () { box.hidden = true; act(action); } });
    box.appendChild(el("p", { text: question }));
    box.appendChild(el("div", { "class": "buttons" }, [ok,
      el("button", { type: "button", id: "confirm-no", text: "取消 · Cancel", onclick: function () { box.hidden = true; } })]));
    ok.focus();
  }

  function appendTurn(turn) {
    var list = $("transcript");
    if (!list || S.rendered[turn.id]) return;
    S.rendered[turn.id] = true;
    S.lastTurn = Math.max(S.lastTurn, turn.id);
    var who = { user: "市民 · Citizen", bot: "机器人 · Bot", agent: "客服 · " + ((turn.payload && turn.payload.agent) || "Agent"),
                note: "内部备注 · Private note (staff only) · " + ((turn.payload && turn.payload.agent) || "") }[turn.role] || turn.role;
    list.appendChild(el("li", { "class": "turn " + turn.role }, [
      el("span", { "class": "who", text: who + " · " + new Date(turn.time).toLocaleTimeString() }),
      el("span", { "class": "text", text: turn.display || turn.text }),
      turn.role === "user" && turn.display && turn.display !== turn.text ? el("code", { text: turn.text }) : null
    ]));
    list.scrollTop = list.scrollHeight;
  }

  function kbItem(item) {
    return el("li", { "class": "candidate" }, [
      el("div", { "class": "row" }, [el("strong", { text: item.title }),
        item.score !== null && item.score !== undefined ? el("span", { "class": "badge", text: String(item.score) }) : null,
        el("code", { text: item.entry_id })]),
      el("div", { "class": "preview", text: item.answer }),
      el("button", { type: "button", "class": "insert", text: "插入答案 · Insert", "aria-label": "Insert answer: " + item.title,
        onclick: function () { insertAnswer(item); } })
    ]);
  }
  function insertAnswer(item) {
    var box = $("reply-text");
    if (!box) { flash("先接入工单 · Claim the ticket first"); return; }
    var footer = (S.current.language === "en" ? "Source: " : "来源：") + item.source.name + " " + item.source.url +
      (S.current.language === "en" ? " (updated " + item.updated + ")" : "（更新于 " + item.updated + "）");
    box.value = (box.value ? box.value + "\n\n" : "") + item.answer + "\n" + footer;
    box.focus();
  }
  function searchKb() {
    var q = $("kb-q").value.trim();
    if (!q) return;
    var drawn = latest("kb-search");
    api("GET", "/kb/search?q=" + encodeURIComponent(q) + "&lang=" + S.current.language).then(drawn(function (data) {
      var list = $("kb-results"); list.textContent = "";
      data.results.forEach(function (r) { list.appendChild(kbItem(r)); });
      if (!data.results.length) list.appendChild(el("li", { "class": "muted", text: "没有结果 · no results" }));
    })).catch(drawn(function (e) { flash(e.message); }));
  }

  function act(action) {
    var id = S.current.id;
    api("POST", "/handoffs/" + id + "/" + action).then(function () {
      S.sig = null;
      if (!showing(id)) kick();  // the agent is on another ticket now: the queue shows the change
      else if (action === "claim") openTicket(id);
      else { S.current = null; S.wanted = null; $("detail").textContent = ""; $("detail").appendChild(el("p", { "class": "empty", text: "工单 #" + id + " 已关闭 · closed" })); kick(); }
    }).catch(function (e) { flash(e.message); if (e.status === 409 && showing(id)) openTicket(id); });
  }
  // One reply (or note) on its way per ticket: Ctrl+Enter pressed again before the answer sent it twice (the
  // server stores every reply it is sent). The buttons of a ticket drawn meanwhile are its own.
  var sending = {};
  function replyButtons(disabled) {
    ["send-reply", "save-note"].forEach(function (b) { if ($(b)) $(b).disabled = disabled; });
  }
  function sendReply(note) {
    var box = $("reply-text"), text = box.value.trim(), id = S.current.id;
    if (!text || sending[id]) return;
    sending[id] = true; replyButtons(true);
    api("POST", "/handoffs/" + id + (note ? "/notes" : "/reply"), { text: text }).then(function (data) {
      if (!showing(id)) return;
      var now = $("reply-text");  // (the ticket drawn again meanwhile keeps the box's text: the one sent)
      if (now && now.value.trim() === text) now.value = "";
      data.turns.forEach(appendTurn);
    }).catch(function (e) { flash(e.message); }).then(function () {
      delete sending[id];
      if (showing(id)) { replyButtons(false); if ($("reply-text")) $("reply-text").focus(); }
    });
  }

  api("GET", "/session").then(showApp).catch(showLogin);
})();
