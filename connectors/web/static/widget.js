/* hotline-bot citizen chat widget. Vanilla JS, no dependencies, no CDN.
 *
 * Embed:  <script src="https://HOST/web/static/widget.js" data-server="https://HOST"></script>
 * Optional attributes: data-lang="zh|en", data-title="...", data-color="#0b5cad" (the brand colour;
 * ignored unless white text on it reaches 4.5:1), data-position="right|left", data-open="true".
 * JS API: HotlineBot.open(), .close(), .setLanguage("zh"|"en"), .isOpen(),
 * .identify({userId, signature}) for a host site's logged-in user (signature: hex HMAC-SHA256 of
 * userId computed by the host's server with HOTLINE_WEB__IDENTIFY_SECRET).
 *
 * The widget renders inside a Shadow DOM on a <hotline-bot> element whose inherited
 * properties are reset, so the host page's CSS cannot reach it (and its CSS cannot leak out).
 *
 * Talks only to {server}/web/api (CORS, no cookies). The conversation id and an
 * anonymous user id live in localStorage, so a reload re-renders the transcript
 * from the server. While handed off to a person, agent messages arrive by long
 * polling turns?after=<last id>: a reconnect resumes from the last id, so
 * nothing is lost.
 */
(function () {
  "use strict";
  if (window.__hotlineWidget) return;
  window.__hotlineWidget = true;

  var script = document.currentScript || (function () {
    var all = document.querySelectorAll('script[src*="widget.js"]');
    return all[all.length - 1];
  })();
  var server = ((script && script.getAttribute("data-server")) || new URL(script.src, location.href).origin)
    .replace(/\/+$/, "");
  var KEY = "hotline:" + server + ":";
  function option(name) { return script ? script.getAttribute("data-" + name) : null; }
  var MAX_CHARS = 2000;  // the server's limits.max_message_chars
  var PHONE = /^(?:\+86|0086)?-?(?:1[3-9]\d{9}|0\d{2,3}-?\d{7,8}(?:-\d{1,6})?)$/;

  var T = {
    zh: {
      open: "打开在线咨询", launcher: "在线咨询", title: "疫情防控热线", close: "关闭咨询窗口",
      other: "English", otherAria: "Switch to English", large: "长辈模式", largeAria: "长辈模式：大字、大按钮、朗读回答",
      log: "对话记录", input: "请输入您的问题", send: "发送", human: "转人工", topics: "常见问题",
      topicsAria: "常见问题主题", welcome: "您好！我是疫情防控热线智能助手。请直接输入问题，或从下面的常见问题中选择。",
      source: "来源", updated: "更新于", helpful: "有帮助", notHelpful: "没有帮助", thanks: "感谢您的反馈",
      you: "我", bot: "智能助手", agent: "人工客服", queue: "正在为您转接人工客服：排队第 {n} 位。", eta: "预计等待约 {m} 分钟。",
      serving: "人工客服 {a} 正在为您服务。", noAgent: "现在没有人工客服在线。您可以留下电话号码，我们会尽快回电。",
      leave: "留言回电", phone: "手机或座机号码", phoneHint: "例如 13812345678 或 010-12345678",
      name: "称呼（选填）", note: "留言内容（选填）", submit: "提交留言", cancel: "取消",
      badPhone: "请输入有效的手机号（1 开头的 11 位数字）或带区号的座机号。",
      left: "已收到您的留言（编号 {id}），工作人员会尽快回电 {p}。", error: "网络不稳定，消息未发送，请重试。",
      typing: "正在输入…", back: "返回",
      emergency: "紧急情况", dismiss: "我知道了，关闭提示", priority: "已为您优先转接人工客服，请保持对话打开。",
      noAgentNow: "现在没有人工客服在线。",
      speak: "朗读", stopSpeaking: "停止朗读", voice: "说话", listening: "正在听…",
      why: "哪里不好？", reasons: { wrong: "答案不对", outdated: "信息过时", unclear: "看不懂", human: "想找人工" },
      callbackSet: "我们会回电至 {p}，请留意来电。", closed: "现在不是人工服务时间，人工客服 {t} 上班。您可以留下电话，届时回电。",
      rate: "请为人工客服 {a} 的服务打分", star: "{n} 星", comment: "还有什么想说的（选填）", rateSubmit: "提交评价", rated: "感谢您的评价！",
      newChat: "新对话", newChatAria: "开始新的对话（清除本机上的对话记录）",
      leaveAgent: "人工客服正在为您服务。开始新对话会结束本次人工服务，确定吗？",
      leaveQueue: "您正在排队等待人工客服。开始新对话会离开队列，确定吗？",
      blocked: "本网站（{o}）未获准接入热线在线咨询，消息无法发送。请告知网站管理员，或直接拨打热线电话。",
      notSent: "未送达 · 点按重试", retryAria: "重新发送这条消息", reconnecting: "网络连接中断，正在重新连接…消息会在恢复后自动发送。",
      refused: "消息未被接收：", over: "超出 {n} 字，请删减或分段发送", count: "{n}/{max}"
    },
    en: {
      open: "Open the hotline chat", launcher: "Ask us", title: "Epidemic hotline", close: "Close the chat",
      other: "中文", otherAria: "切换到中文", large: "Elder mode", largeAria: "Elder mode: large text, large buttons, answers read aloud",
      log: "Conversation", input: "Type your question", send: "Send", human: "Talk to a person", topics: "Topics",
      topicsAria: "Common topics", welcome: "Hello! I am the epidemic-prevention hotline assistant. Type a question or pick a topic below.",
      source: "Source", updated: "updated", helpful: "Helpful", notHelpful: "Not helpful", thanks: "Thanks for your feedback",
      you: "You", bot: "Assistant", agent: "Agent", queue: "Connecting you to a person: you are number {n} in the queue.", eta: "About {m} min wait.",
      serving: "{a} (human agent) is with you now.", noAgent: "No agent is on duty right now. Leave your phone number and we will call you back.",
      leave: "Request a call back", phone: "Mobile or landline number", phoneHint: "e.g. 13812345678 or 010-12345678",
      name: "Your name (optional)", note: "Message (optional)", submit: "Send request", cancel: "Cancel",
      badPhone: "Enter a valid mainland mobile number (11 digits starting with 1) or a landline with area code.",
      left: "We received your request (no. {id}) and will call {p} back soon.", error: "Network problem: the message was not sent, please retry.",
      typing: "Typing…", back: "Back",
      emergency: "Emergency", dismiss: "I understand, close this notice", priority: "You are first in line for a human agent; keep this conversation open.",
      noAgentNow: "No agent is on duty right now.",
      speak: "Read aloud", stopSpeaking: "Stop reading", voice: "Speak", listening: "Listening…",
      why: "What was wrong?", reasons: { wrong: "Wrong answer", outdated: "Out of date", unclear: "Hard to understand", human: "I want a person" },
      callbackSet: "We will call you back on {p}; please keep your phone nearby.", closed: "Agents are off duty now and back at {t}. Leave your number and we will call you then.",
      rate: "How did {a} (human agent) do?", star: "{n} stars", comment: "Anything else? (optional)", rateSubmit: "Send rating", rated: "Thank you for rating!",
      newChat: "New chat", newChatAria: "Start a new conversation (clears the conversation on this device)",
      leaveAgent: "An agent is helping you in this conversation. A new conversation ends that. Start a new one?",
      leaveQueue: "You are in the queue for an agent. A new conversation leaves the queue. Start a new one?",
      blocked: "This site ({o}) is not allowed to use the hotline chat, so messages cannot be sent. Please tell the site's administrator, or call the hotline.",
      notSent: "Not delivered · tap to retry", retryAria: "Send this message again", reconnecting: "Connection lost, reconnecting… Your messages will be sent automatically.",
      refused: "Message not accepted: ", over: "{n} characters too long: shorten it or send it in parts", count: "{n}/{max}"
    }
  };

  function load(name, fallback) {
    try { var v = localStorage.getItem(KEY + name); return v === null ? fallback : v; } catch (e) { return fallback; }
  }
  function save(name, value) {
    try { if (value === null) localStorage.removeItem(KEY + name); else localStorage.setItem(KEY + name, value); } catch (e) { /* private mode */ }
  }
  function uid() {
    if (window.crypto && crypto.randomUUID) return crypto.randomUUID().replace(/-/g, "");
    return Date.now().toString(16) + Math.random().toString(16).slice(2);
  }
  function fmt(text, values) {
    return text.replace(/\{(\w+)\}/g, function (_, k) { return values[k] === undefined ? "" : String(values[k]); });
  }

  var browserLang = (navigator.language || "zh").toLowerCase().indexOf("zh") === 0 ? "zh" : "en";
  var state = {
    lang: load("lang", option("lang") || browserLang),
    // 长辈模式 (elder mode), remembered on this device
    large: load("elder", load("large", "0")) === "1",
    userId: load("user", null),
    conversationId: load("conversation", null), identity: null,
    // epoch: bumped when the conversation on screen is left (新对话 on a shared phone, a host site's identify):
    // an answer or a poll still running for the one before is not applied to the next one
    epoch: 0,
    lastId: 0, status: "bot", online: true, freshConversation: false, handoff: null, agentsOnDuty: 0, stateKey: null,
    polling: false, sending: false, rendered: {}, callbackOffered: false, topics: null
  };
  if (!state.userId) { state.userId = "web-" + uid(); save("user", state.userId); }
  if (state.lang !== "zh" && state.lang !== "en") state.lang = "zh";
  // an identified user's conversation is kept apart from the device's anonymous one
  function convKey() { return state.identity ? "conversation:u:" + state.identity.user_id : "conversation"; }
  function t(key) {
    if (key === "title" && option("title")) return option("title");
    return T[state.lang][key];
  }
  function withPerson() { return state.status === "waiting" || state.status === "claimed"; }

  // -- DOM -----------------------------------------------------------------------------
  // A custom element no host stylesheet has rules for; its inline "all: initial !important"
  // stops inherited properties (colour, font, text-transform...) crossing into the shadow tree.
  var host = document.createElement("hotline-bot");
  host.id = "hotline-bot";
  host.setAttribute("style", "all: initial !important; display: block !important;");
  var mount = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = server + "/web/static/widget.css";
  mount.appendChild(link);

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "class") node.className = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]);
      else if (attrs[k] !== null && attrs[k] !== undefined && attrs[k] !== false) node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }

  var root = el("div", { "class": "hl-root" + (option("position") === "left" ? " hl-left" : ""), id: "hotline-widget",
                          style: "visibility: hidden" });
  link.addEventListener("load", function () { root.style.visibility = ""; });
  link.addEventListener("error", function () { root.style.visibility = ""; });
  (function brand(color) {
    // a host's colour is used only if white text on it stays readable (>= 4.5:1)
    var m = /^#([0-9a-f]{6})$/i.exec(color || "");
    if (!m) return;
    var c = [0, 2, 4].map(function (i) {
      var v = parseInt(m[1].slice(i, i + 2), 16) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    var lum = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
    if (1.05 / (lum + 0.05) < 4.5) { if (window.console) console.warn("hotline widget: data-color " + color + " is too light for white text; ignored"); return; }
    root.style.setProperty("--hl-brand", color); root.style.setProperty("--hl-brand-dark", color);
  })(option("color"));
  var launcher = el("button", { "class": "hl-launcher", type: "button", "aria-expanded": "false", "aria-controls": "hl-panel" });
  var panel = el("section", { "class": "hl-panel", id: "hl-panel", role: "dialog", "aria-modal": "false", hidden: "" });
  var titleEl = el("h2", { "class": "hl-title", id: "hl-title" });
  var langBtn = el("button", { "class": "hl-tool hl-lang", type: "button", onclick: toggleLanguage });
  var largeBtn = el("button", { "class": "hl-tool hl-large-btn", type: "button", onclick: toggleLarge });
  var closeBtn = el("button", { "class": "hl-tool hl-close", type: "button", onclick: closePanel, text: "×" });
  var header = el("header", { "class": "hl-header" }, [titleEl, el("div", { "class": "hl-tools" }, [langBtn, largeBtn, closeBtn])]);
  var statusEl = el("div", { "class": "hl-status", role: "status", "aria-live": "polite", hidden: "" });
  // The emergency screen: pinned above the conversation until the citizen dismisses it.
  var emergencyEl = el("div", { "class": "hl-emergency", role: "alert", hidden: "" });
  var logEl = el("div", { "class": "hl-log", role: "log", "aria-live": "polite", "aria-relevant": "additions", tabindex: "0" });
  var topicsEl = el("nav", { "class": "hl-topics", hidden: "" });
  var topicsBtn = el("button", { "class": "hl-chip hl-topics-btn", type: "button", "aria-expanded": "false", onclick: function () { showTopics(topicsEl.hidden); } });
  var humanBtn = el("button", { "class": "hl-chip hl-human", type: "button", onclick: function () { send("/ask_human", t("human"), true); } });
  var newBtn = el("button", { "class": "hl-chip hl-new", type: "button", onclick: newConversation });
  var actions = el("div", { "class": "hl-actions" }, [topicsBtn, humanBtn, newBtn]);
  // no maxlength: a long paste is kept whole and the counter says how much is too much
  var input = el("textarea", { "class": "hl-input", id: "hl-input", rows: "1", "aria-describedby": "hl-count" });
  var counter = el("div", { "class": "hl-count", id: "hl-count", "aria-live": "polite" });
  var connEl = el("div", { "class": "hl-conn", role: "status", hidden: "" });
  var inputLabel = el("label", { "class": "hl-sr", "for": "hl-input" });
  var sendBtn = el("button", { "class": "hl-send", type: "submit" });
  var form = el("form", { "class": "hl-form", onsubmit: function (e) { e.preventDefault(); submitInput(); } }, [inputLabel, input, sendBtn]);
  // voice input (elder mode), only where the browser has speech recognition
  var Recognition = window.SpeechRecognition || window.webkitSpeechRecognition || null;
  var micBtn = Recognition ? el("button", { "class": "hl-mic", type: "button", "aria-pressed": "false", onclick: listen }) : null;
  if (micBtn) form.insertBefore(micBtn, sendBtn);
  var formWrap = el("div", { "class": "hl-compose" }, [counter, form]);
  var recognition = null;
  function listen() {
    if (recognition) { recognition.stop(); return; }
    try { recognition = new Recognition(); } catch (e) { recognition = null; return; }
    recognition.lang = state.lang === "en" ? "en-US" : "zh-CN";
    recognition.interimResults = false;
    recognition.onresult = function (event) {
      var heard = Array.prototype.map.call(event.results, function (r) { return r[0].transcript; }).join("");
      input.value = (input.value ? input.value + " " : "") + heard; inputChanged(); input.focus();
    };
    recognition.onend = recognition.onerror = function () {
      recognition = null; micBtn.setAttribute("aria-pressed", "false"); micBtn.textContent = "🎤 " + t("voice");
    };
    micBtn.setAttribute("aria-pressed", "true"); micBtn.textContent = "🎙 " + t("listening");
    try { recognition.start(); } catch (e) { recognition.onend(); }
  }
  panel.appendChild(header); panel.appendChild(emergencyEl); panel.appendChild(statusEl); panel.appendChild(logEl); panel.appendChild(topicsEl);
  panel.appendChild(connEl); panel.appendChild(actions); panel.appendChild(formWrap);
  root.appendChild(launcher); root.appendChild(panel);
  mount.appendChild(root);

  input.addEventListener("input", inputChanged);
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); submitInput(); }
  });
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") closePanel(); });
  launcher.addEventListener("click", function () { panel.hidden ? openPanel() : closePanel(); });

  function applyLabels() {
    root.setAttribute("lang", state.lang === "zh" ? "zh-CN" : "en");
    root.classList.toggle("hl-large", state.large);
    root.classList.toggle("hl-elder", state.large);
    launcher.setAttribute("aria-label", t("open"));
    launcher.textContent = "";
    launcher.appendChild(el("span", { "class": "hl-launcher-icon", "aria-hidden": "true", text: "💬" }));
    launcher.appendChild(el("span", { text: t("launcher") }));
    panel.setAttribute("aria-labelledby", "hl-title");
    titleEl.textContent = t("title");
    renderEmergency();
    langBtn.textContent = t("other"); langBtn.setAttribute("aria-label", t("otherAria"));
    largeBtn.textContent = t("large"); largeBtn.setAttribute("aria-label", t("largeAria"));
    largeBtn.setAttribute("aria-pressed", state.large ? "true" : "false");
    closeBtn.setAttribute("aria-label", t("close"));
    logEl.setAttribute("aria-label", t("log"));
    topicsEl.setAttribute("aria-label", t("topicsAria"));
    topicsBtn.textContent = "☰ " + t("topics");
    humanBtn.textContent = "👤 " + t("human");
    newBtn.textContent = "＋ " + t("newChat"); newBtn.setAttribute("aria-label", t("newChatAria"));
    input.setAttribute("placeholder", t("input"));
    inputLabel.textContent = t("input");
    sendBtn.textContent = t("send");
    if (micBtn) micBtn.textContent = "🎤 " + t("voice");
    inputChanged();
    renderStatus();
  }

  function openPanel() {
    panel.hidden = false; launcher.setAttribute("aria-expanded", "true"); root.classList.add("hl-open");
    save("open", "1"); scrollDown(); input.focus();
  }
  function closePanel() {
    panel.hidden = true; launcher.setAttribute("aria-expanded", "false"); root.classList.remove("hl-open");
    save("open", "0"); launcher.focus();
  }
  function toggleLanguage() { setLanguage(state.lang === "zh" ? "en" : "zh"); }
  function setLanguage(lang) {
    if (lang !== "zh" && lang !== "en") throw new Error("HotlineBot.setLanguage: 'zh' or 'en'");
    state.lang = lang; save("lang", state.lang);
    applyLabels(); loadTopics();
  }
  // the small JS API for host pages
  window.HotlineBot = {
    open: function () { openPanel(); }, close: function () { closePanel(); }, setLanguage: setLanguage,
    isOpen: function () { return !panel.hidden; }, identify: function (who) { identify(who); }
  };
  function toggleLarge() {
    state.large = !state.large; save("elder", state.large ? "1" : "0"); applyLabels();
    inputChanged(); scrollDown();
  }
  function scrollDown() { logEl.scrollTop = logEl.scrollHeight; }

  // -- HTTP ------------------------------------------------------------------------------
  function api(method, path, body, extraHeaders) {
    if (state.identity) {
      // a logged-in user of the host site: its server signed the id (HotlineBot.identify)
      if (body) body.identity = state.identity;
      else if (path.indexOf("/web/api/conversations/") === 0) {
        path += (path.indexOf("?") < 0 ? "?" : "&") + "uid=" + encodeURIComponent(state.identity.user_id) +
          "&sig=" + encodeURIComponent(state.identity.signature);
      }
    }
    var headers = body ? { "Content-Type": "application/json" } : {};
    Object.keys(extraHeaders || {}).forEach(function (k) { headers[k] = extraHeaders[k]; });
    return fetch(server + path, {
      method: method, headers: headers,
      body: body ? JSON.stringify(body) : undefined
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (data) {
        if (!r.ok) { var err = new Error((data.error && data.error.message) || ("HTTP " + r.status)); err.status = r.status; throw err; }
        return data;
      });
    });
  }
  function sleep(ms) { return new Promise(function (resolve) { setTimeout(resolve, ms); }); }

  // -- rendering ---------------------------------------------------------------------------
  function clock(iso) {
    var d = iso ? new Date(iso) : new Date();
    if (isNaN(d.getTime())) return "";
    return (d.getHours() < 10 ? "0" : "") + d.getHours() + ":" + (d.getMinutes() < 10 ? "0" : "") + d.getMinutes();
  }
  // every message says who wrote it (avatar + name) and when
  function bubble(role, who, children, extra, time) {
    var avatar = { bot: "🤖", agent: "🧑‍💼" }[role];
    var stamp = time === false ? null : el("time", { "class": "hl-time", datetime: time || new Date().toISOString(), text: clock(time) });
    var item = el("div", { "class": "hl-msg hl-" + role + (extra ? " " + extra : "") }, [
      avatar ? el("span", { "class": "hl-avatar", "aria-hidden": "true", text: avatar }) : null,
      el("div", { "class": "hl-body" }, [
        el("span", { "class": "hl-sr", text: who + ": " }),
        el("div", { "class": "hl-bubble" }, children),
        stamp ? el("div", { "class": "hl-meta" }, [role === "user" ? null : el("span", { "class": "hl-name", text: who + " · " }), stamp]) : null
      ])
    ]);
    logEl.appendChild(item);
    return item;
  }
  // quick replies of older answers are stale: only the newest answer's buttons stay live
  function retireButtons(keep) {
    Array.prototype.forEach.call(logEl.querySelectorAll(".hl-quick button:not([disabled])"), function (b) {
      if (keep && keep.contains(b)) return;
      b.disabled = true; b.setAttribute("aria-disabled", "true");
    });
  }
  function safeUrl(url) { return /^https?:\/\//i.test(url || "") ? url : null; }

  function renderTurn(turn) {
    if (state.rendered[turn.id]) return;
    state.rendered[turn.id] = true;
    var payload = turn.payload || {};
    if (turn.role === "user") {
      if (turn.client_message_id) delivered(turn.client_message_id);
      bubble("user", t("you"), [el("p", { text: turn.display || turn.text })], "", turn.time);
      retireButtons(null);
      return;
    }
    if (turn.role === "agent") {
      bubble("agent", t("agent") + (payload.agent ? " " + payload.agent : ""), [
        el("div", { "class": "hl-who", text: t("agent") + (payload.agent ? " · " + payload.agent : "") }),
        el("p", { text: turn.text })
      ], "", turn.time);
      return;
    }
    if (payload.kind === "emergency") {
      bubble("bot", t("bot"), [el("p", { text: turn.text }), callLinks(payload.buttons)], "hl-emergency-msg", turn.time);
      state.emergency = turn;
      renderEmergency();
      return;
    }
    var parts = [el("p", { text: turn.text })];
    if (payload.source) {
      var url = safeUrl(payload.source.url);
      var src = url ? el("a", { href: url, target: "_blank", rel: "noopener noreferrer", text: payload.source.name })
                    : el("span", { text: payload.source.name });
      parts.push(el("div", { "class": "hl-source" }, [t("source") + ": ", src,
        payload.updated ? " · " + t("updated") + " " + payload.updated : ""]));
    }
    if (payload.buttons && payload.buttons.length) {
      parts.push(el("div", { "class": "hl-quick", role: "group" }, payload.buttons.map(function (b) {
        if (/^tel:\d+$/.test(b.payload)) return el("a", { "class": "hl-call", href: b.payload, text: "📞 " + b.title });
        return el("button", { "class": "hl-chip", type: "button", text: b.title,
          onclick: function () { send(b.payload, b.title); } });
      })));
    }
    var speak = speakButton(turn.text);
    if (payload.source || turn.entry_id) parts.push(feedbackBar(turn, speak));
    else if (speak) parts.push(el("div", { "class": "hl-feedback" }, [speak]));
    var node = bubble("bot", t("bot"), parts, payload.action === "handoff_claimed" ? "hl-notice" : "", turn.time);
    if (payload.buttons && payload.buttons.length) retireButtons(node);
  }

  // tel: buttons are links a phone can dial with one tap
  function callLinks(buttons) {
    return el("div", { "class": "hl-calls" }, (buttons || []).filter(function (b) { return /^tel:\d+$/.test(b.payload); })
      .map(function (b) { return el("a", { "class": "hl-call", href: b.payload, text: "📞 " + b.title }); }));
  }
  function emergencyActive() {
    var h = state.handoff;
    return !!(state.emergency || (h && (h.reason === "emergency" || h.priority === 0)));
  }
  function renderEmergency() {
    var turn = state.emergency;
    emergencyEl.textContent = "";
    if (!turn || load("emergency-dismissed", "") === String(turn.id)) { emergencyEl.hidden = true; return; }
    emergencyEl.hidden = false;
    emergencyEl.appendChild(el("strong", { "class": "hl-emergency-title", text: "⚠️ " + t("emergency") }));
    emergencyEl.appendChild(el("p", { text: turn.text }));
    emergencyEl.appendChild(callLinks((turn.payload || {}).buttons));
    emergencyEl.appendChild(el("button", { "class": "hl-dismiss", type: "button", text: t("dismiss"), onclick: function () {
      save("emergency-dismissed", String(turn.id)); emergencyEl.hidden = true; input.focus();
    } }));
  }

  // Read-aloud (Web Speech API), only where the browser has it; shown in elder mode.
  var speech = window.speechSynthesis && window.SpeechSynthesisUtterance ? window.speechSynthesis : null;
  function speakButton(text) {
    if (!speech) return null;
    var button = el("button", { "class": "hl-speak", type: "button", text: "🔊 " + t("speak") });
    button.addEventListener("click", function () {
      var speaking = button.getAttribute("aria-pressed") === "true";
      speech.cancel();
      Array.prototype.forEach.call(logEl.querySelectorAll(".hl-speak[aria-pressed='true']"), function (b) {
        b.setAttribute("aria-pressed", "false"); b.textContent = "🔊 " + t("speak");
      });
      if (speaking) return;
      var utterance = new SpeechSynthesisUtterance(text);
      utterance.lang = /[\u4e00-\u9fff]/.test(text) ? "zh-CN" : "en-US";
      utterance.rate = 0.9;
      utterance.onend = function () { button.setAttribute("aria-pressed", "false"); button.textContent = "🔊 " + t("speak"); };
      button.setAttribute("aria-pressed", "true"); button.textContent = "⏹ " + t("stopSpeaking");
      speech.speak(utterance);
    });
    return button;
  }

  function feedbackBar(turn, speak) {
    var up = el("button", { "class": "hl-thumb", type: "button", "aria-label": t("helpful"), title: t("helpful"), text: "👍" });
    var down = el("button", { "class": "hl-thumb", type: "button", "aria-label": t("notHelpful"), title: t("notHelpful"), text: "👎" });
    var note = el("span", { "class": "hl-thanks", "aria-live": "polite" });
    function mark(value) {
      up.setAttribute("aria-pressed", value === "up" ? "true" : "false");
      down.setAttribute("aria-pressed", value === "down" ? "true" : "false");
    }
    var reasons = el("div", { "class": "hl-reasons", role: "group", hidden: "" });
    function vote(value, reason) {
      api("POST", "/web/api/feedback", { conversation_id: state.conversationId, user_id: state.userId, turn_id: turn.id,
                                        value: value, reason: reason || null })
        .then(function () {
          mark(value);
          // 👎 asks why (wrong / outdated / unclear / talk to a person)
          if (value === "down" && !reason) { note.textContent = ""; showReasons(); return; }
          reasons.hidden = true; note.textContent = t("thanks");
          if (reason === "human") send("/ask_human", t("human"), true);
        })
        .catch(function (e) { note.textContent = e.message; });
    }
    function showReasons() {
      reasons.textContent = ""; reasons.hidden = false;
      reasons.setAttribute("aria-label", t("why"));
      reasons.appendChild(el("span", { "class": "hl-why", text: t("why") }));
      Object.keys(T[state.lang].reasons).forEach(function (key) {
        reasons.appendChild(el("button", { "class": "hl-chip hl-reason", type: "button", "data-reason": key,
          text: T[state.lang].reasons[key], onclick: function () { vote("down", key); } }));
      });
      var first = reasons.querySelector("button"); if (first) first.focus();
    }
    up.addEventListener("click", function () { vote("up"); });
    down.addEventListener("click", function () { vote("down"); });
    mark(turn.feedback || null);
    return el("div", { "class": "hl-feedback-wrap" }, [
      el("div", { "class": "hl-feedback", "data-turn-id": String(turn.id) }, [speak, up, down, note]), reasons]);
  }

  function renderStatus() {
    statusEl.textContent = "";
    var h = state.handoff;
    if (!withPerson() || !h) { statusEl.hidden = true; return; }
    statusEl.hidden = false;
    if (h.status === "claimed") {
      statusEl.appendChild(el("span", { text: fmt(t("serving"), { a: h.agent || t("agent") }) }));
      return;
    }
    if (emergencyActive()) {
      // an emergency: what to do now is on the red panel; no wait estimate, no callback offer
      statusEl.appendChild(el("span", { "class": "hl-queue", text: t("priority") }));
      return;
    }
    if (state.callback && state.callback.status === "open") {
      // asked to be called back: say so, and do not offer it again
      statusEl.appendChild(el("span", { "class": "hl-queue hl-callback-set", text: fmt(t("callbackSet"), { p: state.callback.phone }) }));
      return;
    }
    if (state.service && state.service.open_now === false) {
      statusEl.appendChild(el("span", { "class": "hl-queue", text: closedText() }));
      statusEl.appendChild(el("button", { "class": "hl-link", type: "button", text: t("leave"), onclick: showCallbackForm }));
      return;
    }
    var text = fmt(t("queue"), { n: h.queue_position || 1 });
    // an estimate only when the server measured one (agents on duty, open, history): never a constant
    if (typeof h.estimated_wait_seconds === "number") text += " " + fmt(t("eta"), { m: Math.max(1, Math.round(h.estimated_wait_seconds / 60)) });
    else if (state.agentsOnDuty === 0) text += " " + t("noAgentNow");
    statusEl.appendChild(el("span", { "class": "hl-queue", text: text }));
    statusEl.appendChild(el("button", { "class": "hl-link", type: "button", text: t("leave"), onclick: showCallbackForm }));
  }

  function closedText() {
    var next = (state.service && state.service.next_open) || "";  // the hotline's local time (Asia/Shanghai), shown as such
    return fmt(t("closed"), { t: next ? next.slice(5, 10).replace("-", "/") + " " + next.slice(11, 16) : "—" });
  }
  function apply(data) {
    if (data.conversation_id && data.conversation_id !== state.conversationId) {
      state.conversationId = data.conversation_id; save(convKey(), data.conversation_id);
    }
    (data.turns || []).forEach(renderTurn);
    if (typeof data.last_id === "number") state.lastId = Math.max(state.lastId, data.last_id);
    state.status = data.status || state.status;
    state.handoff = data.handoff || null;
    state.agentsOnDuty = data.agents_on_duty || 0;
    if ("callback" in data) state.callback = data.callback;
    if (data.rating_due) askRating(data.rating_due);
    if (!withPerson() || (state.handoff && state.handoff.status === "claimed")) {
      // a person took over (or it is over): the callback offer is stale
      Array.prototype.forEach.call(logEl.querySelectorAll(".hl-offer button"), function (b) { b.disabled = true; });
    }
    if (data.service) state.service = data.service;
    if (data.state) state.stateKey = data.state;
    renderStatus();
    if (withPerson() && state.handoff && state.handoff.status === "waiting" && state.agentsOnDuty === 0 && !emergencyActive() &&
        !state.callback) {
      if (!state.callbackOffered) { state.callbackOffered = true; offerCallback(); }
    }
    if (withPerson()) poll();
    scrollDown();
  }

  // -- sending ----------------------------------------------------------------------------
  function submitInput() {
    var text = input.value.trim();
    if (!text || text.length > MAX_CHARS) { inputChanged(); return; }
    input.value = ""; inputChanged();
    send(text, text);
  }

  // The input grows with its text (up to a few lines) and counts characters.
  function inputChanged() {
    var n = input.value.length;
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2, Math.round(parseFloat(getComputedStyle(input).fontSize) * 9)) + "px";
    var over = n - MAX_CHARS;
    counter.textContent = over > 0 ? fmt(t("over"), { n: over }) : (n > MAX_CHARS * 0.8 ? fmt(t("count"), { n: n, max: MAX_CHARS }) : "");
    counter.classList.toggle("hl-over", over > 0);
    counter.hidden = !counter.textContent;
    input.setAttribute("aria-invalid", over > 0 ? "true" : "false");
    sendBtn.disabled = over > 0;
  }

  // -- the outbox: nothing typed is lost --------------------------------------------------
  // Every message goes to a localStorage outbox first, with a client id the server uses as
  // its idempotency key (a retry of a message that did arrive is answered, not stored twice).
  // It leaves the outbox only when the server accepted it. Failed sends stay as a
  // "not delivered · tap to retry" bubble, also after a reload, and are resent by themselves
  // when the network comes back.
  var outbox = (function () { try { return JSON.parse(load("outbox", "[]")) || []; } catch (e) { return []; } })();
  var flushing = false, retryTimer = null, failures = 0;
  function saveOutbox() { save("outbox", outbox.length ? JSON.stringify(outbox) : null); }

  // ``pin``: buttons of the widget itself (topics, talk to a person) are labelled in the UI
  // language, so the answer follows it; quick replies under an answer keep the conversation's.
  function send(text, shown, pin) {
    var item = { id: "w" + uid().slice(0, 40), text: text, shown: shown, language: pin ? state.lang : null,
                 fresh: !!state.freshConversation };
    state.freshConversation = false;
    outbox.push(item); saveOutbox(); showTopics(false);
    outboxBubble(item, false);
    flush();
  }
  function delivered(clientId) {
    var before = outbox.length;
    outbox = outbox.filter(function (item) { return item.id !== clientId; });
    if (outbox.length !== before) saveOutbox();
    var node = logEl.querySelector('[data-client-id="' + clientId + '"]');
    if (node) node.remove();
  }
  function outboxBubble(item, failed) {
    var node = logEl.querySelector('[data-client-id="' + item.id + '"]');
    if (!node) {
      node = bubble("user", t("you"), [el("p", { text: item.shown })], "hl-pending");
      retireButtons(null);
      node.setAttribute("data-client-id", item.id);
    }
    node.classList.toggle("hl-failed", failed);
    var retry = node.querySelector(".hl-retry");
    if (failed && !retry) {
      node.querySelector(".hl-bubble").appendChild(el("button", { "class": "hl-retry", type: "button", text: "⟳ " + t("notSent"),
        "aria-label": t("retryAria") + ": " + item.shown, onclick: function () { failures = 0; flush(); } }));
    } else if (!failed && retry) retry.remove();
    scrollDown();
    return node;
  }
  function flush() {
    if (flushing || !outbox.length) return;
    clearTimeout(retryTimer);
    flushing = true; state.sending = true;
    var item = outbox[0], epoch = state.epoch;
    var node = outboxBubble(item, false);
    var typing = bubble("bot", t("bot"), [el("p", { text: t("typing") })], "hl-typing", false);
    scrollDown();
    api("POST", "/web/api/messages", {
      conversation_id: item.fresh ? null : state.conversationId, user_id: state.userId, text: item.text,
      client_message_id: item.id, new_conversation: item.fresh, language: item.language, after: state.lastId
    }, { "Idempotency-Key": item.id }).then(function (data) {
      delivered(item.id); typing.remove();
      connected(true);
      if (epoch !== state.epoch) return;  // the person left this conversation meanwhile: not the next one's
      if (data.new_conversation && state.conversationId && data.conversation_id !== state.conversationId) resetTranscript();
      apply(data);
    }, function (e) {
      typing.remove();
      if (e.status && e.status !== 408 && e.status !== 429 && e.status < 500) {
        // refused (too long, bad input): resending cannot help; say why and keep the text
        outbox = outbox.filter(function (other) { return other.id !== item.id; }); saveOutbox();
        node.removeAttribute("data-client-id");
        node.classList.add("hl-failed");
        node.querySelector(".hl-bubble").appendChild(el("div", { "class": "hl-error", role: "alert", text: t("refused") + e.message }));
      } else {
        outbox.forEach(function (other) { outboxBubble(other, true); });
        connected(false);
      }
    }).then(function () {
      flushing = false; state.sending = false;
      if (state.online) flush();
    });
  }
  // The reconnecting state: shown while sends or updates fail; retries back off to 30 s and
  // start at once when the browser says the network is back.
  function connected(ok) {
    state.online = ok;
    if (!ok) checkBlocked();
    connEl.hidden = ok;
    connEl.classList.toggle("hl-blocked", !ok && !!state.blocked);
    connEl.textContent = ok ? "" : (state.blocked ? fmt(t("blocked"), { o: location.origin }) : t("reconnecting"));
    scrollDown();
    if (ok) { failures = 0; clearTimeout(retryTimer); return; }
    failures += 1;
    clearTimeout(retryTimer);
    if (outbox.length) retryTimer = setTimeout(flush, Math.min(30000, 1000 * Math.pow(2, failures)));
  }
  // A cross-origin fetch that fails while a no-cors request to the same server gets through:
  // the server answers, but not to this origin (HOTLINE_WEB__ALLOWED_ORIGINS). Say so instead
  // of "network problem".
  function checkBlocked() {
    if (state.blocked !== undefined || new URL(server, location.href).origin === location.origin) return;
    state.blocked = null;
    fetch(server + "/web/api/status", { mode: "no-cors", cache: "no-store" }).then(function () {
      state.blocked = true; connected(false);
    }, function () { state.blocked = undefined; });
  }
  window.addEventListener("online", function () { failures = 0; flush(); if (withPerson()) poll(); if (!state.topics) loadTopics(); });
  window.addEventListener("offline", function () { connected(false); });

  // A shared family phone: the next person starts clean; the old conversation stays on the server.
  // With a person, a new conversation ends the ticket on the server (the agent sees the citizen left): asked first.
  function newConversation() {
    if (withPerson() && !window.confirm(t(state.status === "claimed" ? "leaveAgent" : "leaveQueue"))) return;
    if (speech) speech.cancel();
    leaveConversation();
    resetTranscript();
    state.conversationId = null; save(convKey(), null); save("emergency-dismissed", null);
    state.status = "bot"; state.handoff = null; state.stateKey = null; state.freshConversation = true; state.callback = null;
    renderStatus(); welcome(); input.focus();
  }
  // What was still on its way for the conversation on screen stays with it (before, an answer or a parked
  // poll's wake-up arriving after 新对话 wrote the previous person's conversation back, with its turns).
  function leaveConversation() {
    state.epoch += 1;
    state.polling = false;  // the old loop ends when its request returns; the next conversation may poll
  }
  function resetTranscript() {
    logEl.textContent = ""; state.rendered = {}; state.lastId = 0; state.callbackOffered = false;
    state.emergency = null; renderEmergency();
  }

  // -- live updates while a person has the conversation --------------------------------------
  function poll() {
    if (state.polling) return;
    state.polling = true;
    var epoch = state.epoch;
    (function loop(failures) {
      if (epoch !== state.epoch) return;  // left (leaveConversation): the next conversation's loop, if any, polls
      if (!withPerson() || !state.conversationId) { state.polling = false; return; }
      var q = "?user_id=" + encodeURIComponent(state.userId) + "&after=" + state.lastId + "&wait=20" +
        (state.stateKey ? "&state=" + encodeURIComponent(state.stateKey) : "");
      api("GET", "/web/api/conversations/" + encodeURIComponent(state.conversationId) + "/turns" + q)
        .then(function (data) {
          if (epoch !== state.epoch) return;
          if (!state.online) { connected(true); flush(); } apply(data); loop(0);
        })
        .catch(function (e) {
          if (epoch !== state.epoch) return;
          if (e.status === 404) { state.polling = false; return; }
          connected(false);
          return sleep(Math.min(30000, 1000 * Math.pow(2, failures))).then(function () { loop(failures + 1); });
        });
    })(0);
  }

  // -- satisfaction rating after an agent resolved ----------------------------------------------
  function askRating(due) {
    if (logEl.querySelector('[data-rating="' + due.handoff_id + '"]')) return;
    var score = 0;
    var stars = [1, 2, 3, 4, 5].map(function (n) {
      return el("button", { "class": "hl-star", type: "button", "aria-pressed": "false", "aria-label": fmt(t("star"), { n: n }),
        text: "☆", onclick: function () {
          score = n;
          stars.forEach(function (b, i) { b.textContent = i < n ? "★" : "☆"; b.setAttribute("aria-pressed", i === n - 1 ? "true" : "false"); });
          submit.disabled = false;
        } });
    });
    var comment = el("textarea", { "class": "hl-rating-comment", rows: "2", maxlength: "1000", "aria-label": t("comment"), placeholder: t("comment") });
    var error = el("div", { "class": "hl-error", role: "alert" });
    var submit = el("button", { "class": "hl-send", type: "submit", text: t("rateSubmit"), disabled: "" });
    var form = el("form", { "class": "hl-rating", "data-rating": String(due.handoff_id) }, [
      el("p", { text: fmt(t("rate"), { a: due.agent || t("agent") }) }),
      el("div", { "class": "hl-stars", role: "group", "aria-label": fmt(t("rate"), { a: due.agent || t("agent") }) }, stars),
      comment, error, submit]);
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      if (!score) return;
      submit.disabled = true;
      api("POST", "/web/api/ratings", { conversation_id: state.conversationId, user_id: state.userId, handoff_id: due.handoff_id,
                                       score: score, comment: comment.value.trim() })
        .then(function () { form.textContent = ""; form.appendChild(el("p", { "class": "hl-rated", text: t("rated") })); })
        .catch(function (err) { error.textContent = err.message; submit.disabled = false; });
    });
    logEl.appendChild(form); scrollDown();
  }

  // -- leave a message ------------------------------------------------------------------------
  function offerCallback() {
    var closed = state.service && state.service.open_now === false;
    var offer = bubble("bot", t("bot"), [el("p", { text: closed ? closedText() : t("noAgent") }),
      el("div", { "class": "hl-quick hl-offer" }, [el("button", { "class": "hl-chip", type: "button", text: t("leave"), onclick: showCallbackForm })])]);
    offer.classList.add("hl-notice");
  }

  function showCallbackForm() {
    if (logEl.querySelector(".hl-callback")) { logEl.querySelector(".hl-callback input").focus(); return; }
    var phone = el("input", { id: "hl-phone", type: "tel", inputmode: "tel", autocomplete: "tel", required: "", maxlength: "32", "aria-describedby": "hl-phone-hint hl-phone-error" });
    var name = el("input", { id: "hl-name", type: "text", autocomplete: "name", maxlength: "64" });
    var note = el("textarea", { id: "hl-note", rows: "2", maxlength: "1000" });
    var error = el("div", { id: "hl-phone-error", "class": "hl-error", role: "alert" });
    var submit = el("button", { "class": "hl-send", type: "submit", text: t("submit") });
    var box = el("form", { "class": "hl-callback", novalidate: "" }, [
      el("label", { "for": "hl-phone", text: t("phone") }), phone,
      el("div", { id: "hl-phone-hint", "class": "hl-hint", text: t("phoneHint") }), error,
      el("label", { "for": "hl-name", text: t("name") }), name,
      el("label", { "for": "hl-note", text: t("note") }), note,
      el("div", { "class": "hl-row" }, [
        submit,
        el("button", { "class": "hl-chip", type: "button", text: t("cancel"), onclick: function () { box.remove(); input.focus(); } })])
    ]);
    box.addEventListener("submit", function (e) {
      e.preventDefault();
      var value = phone.value.replace(/[\s()]/g, "");
      if (!PHONE.test(value)) { error.textContent = t("badPhone"); phone.setAttribute("aria-invalid", "true"); phone.focus(); return; }
      phone.removeAttribute("aria-invalid");
      if (submit.disabled) return;  // one request at a time: a double tap filed two callbacks (two calls back)
      submit.disabled = true;
      api("POST", "/web/api/callbacks", { conversation_id: state.conversationId, user_id: state.userId, phone: value,
        name: name.value.trim() || null, note: note.value.trim(), language: state.lang })
        .then(function (ticket) {
          box.remove();
          state.callback = { id: ticket.id, phone: ticket.phone, status: ticket.status };
          renderStatus();
          Array.prototype.forEach.call(logEl.querySelectorAll(".hl-offer button"), function (b) { b.disabled = true; });
          bubble("bot", t("bot"), [el("p", { text: fmt(t("left"), { id: ticket.id, p: ticket.phone }) })], "hl-notice hl-callback-done");
          scrollDown();
        })
        .catch(function (err) {
          submit.disabled = false;
          error.textContent = err.status === 400 ? t("badPhone") + " (" + err.message + ")" : t("error");
        });
    });
    logEl.appendChild(box); scrollDown(); phone.focus();
  }

  // -- topic menu ---------------------------------------------------------------------------------
  var TOPIC_ICONS = { testing: "🧪", health_code: "📱", quarantine: "🏠", vaccination: "💉", travel: "🚆", human: "👤" };
  function loadTopics() {
    api("GET", "/web/api/topics?lang=" + state.lang).then(function (data) {
      state.topics = data.topics; renderTopics(null);
      if (!state.online && !outbox.length) connected(true);
    })
      .catch(function (e) { if (!e.status) connected(false); /* the menu is optional, the banner says why */ });
  }
  function showTopics(show) {
    topicsEl.hidden = !show; topicsBtn.setAttribute("aria-expanded", show ? "true" : "false");
    if (show) { renderTopics(null); scrollDown(); }
  }
  function renderTopics(open) {
    topicsEl.textContent = "";
    if (!state.topics) return;
    if (open) {
      topicsEl.appendChild(el("button", { "class": "hl-chip hl-back", type: "button", text: "‹ " + t("back"), onclick: function () { renderTopics(null); } }));
      open.entries.forEach(function (e) {
        topicsEl.appendChild(el("button", { "class": "hl-chip", type: "button", text: e.title, onclick: function () { send(e.payload, e.title, true); } }));
      });
      var first = topicsEl.querySelector("button:not(.hl-back)"); if (first) first.focus();
      return;
    }
    state.topics.forEach(function (topic) {
      topicsEl.appendChild(el("button", { "class": "hl-chip hl-topic", type: "button", "data-topic": topic.key, onclick: function () {
        if (topic.payload) send(topic.payload, topic.title, true);
        else if (topic.entries.length) renderTopics(topic);
        else send(topic.title, topic.title);
      } }, [el("span", { "class": "hl-topic-icon", "aria-hidden": "true", text: TOPIC_ICONS[topic.key] || "❓" }),
            el("span", { text: topic.title })]));
    });
  }

  // -- start ------------------------------------------------------------------------------------------
  var started = false;
  function start() {
    started = true;
    document.body.appendChild(host);
    applyLabels(); loadTopics();
    loadTranscript();
    if (load("open", null) === "1" || (load("open", null) === null && option("open") === "true")) openPanel();
  }
  function loadTranscript() {
    if (state.conversationId) {
      api("GET", "/web/api/conversations/" + encodeURIComponent(state.conversationId) + "/turns?user_id=" +
          encodeURIComponent(state.userId) + "&after=0&wait=0")
        .then(function (data) { apply(data); if (!data.turns.length) welcome(); })
        .catch(function (e) {
          if (e.status === 404) { state.conversationId = null; save(convKey(), null); }
          welcome();
        })
        .then(restoreOutbox);
    } else {
      welcome(); restoreOutbox();
    }
  }
  // HotlineBot.identify({userId, signature}): signature = hex HMAC-SHA256(userId) computed by the
  // host site's server with the secret it shares with this server (HOTLINE_WEB__IDENTIFY_SECRET).
  function identify(who) {
    if (!who || typeof who.userId !== "string" || !who.userId || who.userId.length > 128 ||
        !/^[0-9a-f]{64}$/i.test(who.signature || "")) {
      throw new Error("HotlineBot.identify({userId, signature}): signature is the 64-hex HMAC-SHA256 of userId from your server");
    }
    leaveConversation();
    state.identity = { user_id: who.userId, signature: who.signature.toLowerCase() };
    state.conversationId = load(convKey(), null);
    state.status = "bot"; state.handoff = null; state.stateKey = null; state.callback = null;
    if (started) { resetTranscript(); renderStatus(); loadTranscript(); }
  }
  // messages that did not get through before the reload: shown, then resent
  function restoreOutbox() {
    outbox.forEach(function (item) { outboxBubble(item, true); });
    flush(); scrollDown();
  }
  function welcome() {
    bubble("bot", t("bot"), [el("p", { text: t("welcome") })], "hl-welcome", false);
    showTopics(true);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
