/* KB editor section of the staff console (right "kb": editors, admins).
 * List/search entries, edit one in both languages side by side with inline
 * validation by field (the server runs the same checks as `hotline-bot kb validate`),
 * a test box (draft vs live, top-3 with scores), publish, history and rollback.
 * API: /agents/api/kb/... (connectors/agents/kb_views.py). */
(function () {
  "use strict";
  var ctx = null, root = null, S = { entries: [], current: null, content: null, timer: null, asked: 0, unticked: {} };
  var FIELDS = ["questions.zh", "questions.en", "answer.zh", "answer.en", "source.name", "source.name_en",
                "source.url", "updated", "valid_until", "region", "aspect", "follow_ups", "covers"];

  function kbApi(method, path, body, headers) { return ctx.api(method, "/kb" + path, body, undefined, headers); }
  // Changes to an entry carry the etag of the view they were made on: one saved by another editor meanwhile is
  // answered 412 instead of being overwritten (the last save used to win, silently).
  function ifMatch() { return S.etag ? { "If-Match": '"' + S.etag + '"' } : {}; }
  function q(sel) { return root.querySelector(sel); }
  function field(name, label, multiline) {
    var input = ctx.el(multiline ? "textarea" : "input", { id: "kb-f-" + name.replace(/\./g, "-"), "data-field": name,
      oninput: scheduleValidate });
    return ctx.el("div", { class: "kb-field", "data-for": name }, [
      ctx.el("label", { for: input.id, text: label }), input,
      ctx.el("div", { class: "error", id: "kb-err-" + name.replace(/\./g, "-"), role: "alert" })]);
  }

  function layout() {
    var el = ctx.el;
    root.textContent = "";
    var side = el("nav", { class: "kb-side", "aria-label": "KB entries" }, [
      el("div", { class: "kb-filters" }, [
        el("input", { id: "kb-search", type: "search", placeholder: "搜索 · Search", "aria-label": "Search entries",
          oninput: function () { clearTimeout(S.search); S.search = setTimeout(loadList, 250); } }),
        el("select", { id: "kb-status", "aria-label": "Status", onchange: loadList }, [
          el("option", { value: "", text: "全部 · All" }), el("option", { value: "draft", text: "草稿 · Drafts" }),
          el("option", { value: "live", text: "已发布 · Live" }), el("option", { value: "retire", text: "待下线 · Retiring" })]),
        el("select", { id: "kb-sort", "aria-label": "Sort", onchange: loadList }, [
          el("option", { value: "", text: "按分类 · By category" }), el("option", { value: "asked", text: "最常问 · Most asked" }),
          el("option", { value: "worst", text: "差评最多 · Worst rated" }), el("option", { value: "expiring", text: "即将过期 · Expiring" })]),
        el("button", { type: "button", id: "kb-new", text: "新建 · New", onclick: newEntry })]),
      el("ul", { class: "kb-list", id: "kb-list" })]);
    var main = el("main", { class: "kb-main", id: "kb-main" }, [
      el("div", { class: "kb-bar" }, [
        el("strong", { id: "kb-version" }),
        el("button", { type: "button", id: "kb-inbox-open", text: "未答问题 · Inbox", onclick: openInbox }),
        el("button", { type: "button", id: "kb-contacts-open", text: "联系人 · Contacts", onclick: openContacts }),
        el("span", { class: "spacer" }),
        el("label", { for: "kb-publish-at", class: "muted", text: "定时 · At (optional)" }),
        el("input", { id: "kb-publish-at", type: "datetime-local", "aria-label": "Publish at (local time)" }),
        el("button", { type: "button", class: "primary", id: "kb-publish", text: "发布 · Publish", onclick: reviewPublish })]),
      el("div", { class: "kb-card", id: "kb-publish-box", hidden: "hidden" }),
      el("div", { class: "kb-card", id: "kb-inbox", hidden: "hidden" }),
      el("div", { class: "kb-card", id: "kb-contacts", hidden: "hidden" }),
      el("div", { class: "kb-card", id: "kb-editor" }, [el("p", { class: "muted", text: "选择左侧的条目 · Pick an entry." })]),
      el("div", { class: "kb-card" }, [
        el("h3", { text: "测试 · Test box (草稿 vs 线上 · draft vs live)" }),
        el("div", { class: "kb-bar" }, [
          el("input", { id: "kb-test-text", placeholder: "输入问题 · Type a question", "aria-label": "Test question",
            onkeydown: function (e) { if (e.key === "Enter") runTest(); } }),
          el("button", { type: "button", id: "kb-test-run", text: "测试 · Test", onclick: runTest })]),
        el("div", { class: "kb-test-out", id: "kb-test-out" })]),
      el("div", { class: "kb-card" }, [el("h3", { text: "历史 · History" }), el("ul", { class: "kb-history", id: "kb-history" })])]);
    root.appendChild(el("div", { class: "kb" }, [side, main]));
  }

  function loadStatus() {
    return kbApi("GET", "/status").then(function (st) {
      q("#kb-version").textContent = "线上版本 · Live version " + st.serving;
      var b = q("#kb-publish"); b.disabled = !st.pending.length;
      b.textContent = "发布 · Publish (" + st.pending.length + ")";
    }).catch(function (e) { ctx.flash(e.message); });
  }

  function loadList() {
    var drawn = ctx.latest("kb-list");  // the list of the newest search, not of whichever answered last
    var params = "?q=" + encodeURIComponent(q("#kb-search").value) + "&status=" + encodeURIComponent(q("#kb-status").value) +
      "&sort=" + encodeURIComponent(q("#kb-sort").value);
    return kbApi("GET", "/entries" + params).then(drawn(function (data) {
      S.entries = data.entries;
      var list = q("#kb-list"); list.textContent = "";
      data.entries.forEach(function (e) {
        list.appendChild(ctx.el("li", {}, [ctx.el("button", { type: "button", id: "kb-item-" + e.id.replace(/\./g, "-"),
          "aria-current": S.current === e.id ? "true" : "false", onclick: function () { openEntry(e.id); } }, [
          ctx.el("span", {}, [e.title.zh, e.status !== "live" ? ctx.el("span", { class: "badge " + e.status, text: e.status }) : null]),
          ctx.el("span", { class: "kb-id", text: e.id + (e.asked !== undefined ? " · " + e.asked + "× · 👎" + e.down : "") +
            (e.days_left !== undefined ? " · " + e.days_left + "d" : "") })])]));
      });
    })).catch(drawn(function (e) { ctx.flash(e.message); }));
  }

  function editorForm(isNew) {
    var el = ctx.el, box = q("#kb-editor");
    box.textContent = "";
    box.appendChild(el("div", { class: "kb-bar" }, [
      el("h3", { id: "kb-title", text: isNew ? "新条目 · New entry" : S.current }), el("span", { class: "spacer" }),
      el("span", { id: "kb-state", class: "muted" })]));
    if (isNew) box.appendChild(el("div", { class: "kb-row" }, [field("id", "ID (category.snake_case)"), field("category", "分类 · Category")]));
    box.appendChild(el("div", { class: "kb-pair" }, [
      field("questions.zh", "中文问法（每行一个）· Chinese questions, one per line", true),
      field("questions.en", "English questions, one per line", true),
      field("answer.zh", "中文答案 · Chinese answer", true), field("answer.en", "English answer", true)]));
    box.appendChild(el("div", { class: "kb-row" }, [field("source.name", "来源 · Source"), field("source.name_en", "Source (English)"),
      field("source.url", "来源网址 · Source URL"), field("updated", "核实日期 · Updated (YYYY-MM-DD)")]));
    box.appendChild(el("div", { class: "kb-row" }, [field("valid_until", "有效期至 · Valid until"), field("region", "地区 · Region"),
      field("aspect", "Aspect"), field("follow_ups", "后续问题 · Follow-ups (ids, comma-separated)")]));
    // covers: the specific entries this general answer also answers (the specific one wins a near-tie); editors
    // could not see or change it without editing the YAML
    box.appendChild(el("div", { class: "kb-row kb-row-half" }, [field("covers", "也涵盖 · Also answers (ids of more specific entries, comma-separated)")]));
    box.appendChild(el("div", { class: "error", id: "kb-err-general", role: "alert" }));
    box.appendChild(el("div", { class: "kb-bar" }, [
      el("button", { type: "button", class: "primary", id: "kb-save", text: "保存草稿 · Save draft", onclick: save }),
      isNew ? null : el("button", { type: "button", id: "kb-discard", text: "放弃草稿 · Discard draft", onclick: function () { action("discard"); } }),
      isNew ? null : el("button", { type: "button", id: "kb-retire", text: "下线 · Retire", onclick: function () { action("retire"); } })]));
  }

  function setValue(name, value) { var n = q('[data-field="' + name + '"]'); if (n) n.value = value === undefined || value === null ? "" : value; }
  function getValue(name) { var n = q('[data-field="' + name + '"]'); return n ? n.value : ""; }
  function fill(c) {
    setValue("questions.zh", (c.questions && c.questions.zh || []).join("\n"));
    setValue("questions.en", (c.questions && c.questions.en || []).join("\n"));
    setValue("answer.zh", c.answer && c.answer.zh); setValue("answer.en", c.answer && c.answer.en);
    var s = c.source || {};
    setValue("source.name", s.name); setValue("source.name_en", s.name_en); setValue("source.url", s.url);
    setValue("updated", c.updated); setValue("valid_until", c.valid_until); setValue("region", c.region);
    setValue("aspect", c.aspect); setValue("follow_ups", (c.follow_ups || []).join(", "));
    setValue("covers", (c.covers || []).join(", "));
    setValue("id", c.id); setValue("category", c.category);
  }
  function lines(text) { return text.split("\n").map(function (l) { return l.trim(); }).filter(Boolean); }
  function collect() {
    var c = JSON.parse(JSON.stringify(S.content || {}));
    if (q('[data-field="id"]')) { c.id = getValue("id").trim(); c.category = getValue("category").trim(); }
    c.questions = { zh: lines(getValue("questions.zh")), en: lines(getValue("questions.en")) };
    c.answer = { zh: getValue("answer.zh"), en: getValue("answer.en") };
    c.source = { name: getValue("source.name"), name_en: getValue("source.name_en"), url: getValue("source.url") };
    c.updated = getValue("updated").trim();
    ["valid_until", "region", "aspect"].forEach(function (k) { var v = getValue(k).trim(); if (v) c[k] = v; else delete c[k]; });
    ["follow_ups", "covers"].forEach(function (k) {
      var ids = getValue(k).split(",").map(function (s) { return s.trim(); }).filter(Boolean);
      if (ids.length) c[k] = ids; else delete c[k];
    });
    return c;
  }

  function showProblems(problems) {
    root.querySelectorAll(".kb-field").forEach(function (n) { n.classList.remove("invalid"); });
    root.querySelectorAll("[id^=kb-err-]").forEach(function (n) { n.textContent = ""; });
    (problems || []).forEach(function (p) {
      var name = (p.field || "").split(".").filter(function (part) { return !/^\d+$/.test(part); }).join(".");
      var known = FIELDS.concat(["id", "category"]).indexOf(name) >= 0 ? name : (name.split(".")[0] === "variants" ? null : name);
      var wrap = known && q('[data-for="' + known + '"]');
      var target = wrap ? wrap.querySelector(".error") : q("#kb-err-general");
      if (wrap) wrap.classList.add("invalid");
      target.textContent = (target.textContent ? target.textContent + " · " : "") + (wrap ? "" : (p.field ? p.field + ": " : "")) + p.message;
    });
  }
  function scheduleValidate() {
    clearTimeout(S.timer);
    S.timer = setTimeout(function () {
      var drawn = ctx.latest("kb-validate"), asked = S.asked;
      kbApi("POST", "/validate", { entry: collect() }).then(drawn(function (r) {
        if (still(asked)) showProblems(r.problems);  // not another entry's problems on this one
      })).catch(drawn(function (e) { ctx.flash(e.message); }));
    }, 400);
  }

  // S.asked counts the editor's requests for a form (an entry opened, a new one): an answer to something done
  // on the form before (a save, retire, rollback, publish, validation) redraws it only if the editor is still
  // there. A slow save of A used to take the editor back to A, dropping what was being typed into B.
  function still(asked) { return S.asked === asked; }
  function openEntry(id) {
    S.asked += 1; clearTimeout(S.timer);
    // The entry the form shows is the one the buttons act on: S.current changes when it is drawn, and an
    // entry answering after the one clicked next is not drawn (it was, and 下线 then retired the other one).
    var drawn = ctx.latest("kb-entry");
    return kbApi("GET", "/entries/" + encodeURIComponent(id)).then(drawn(function (view) {
      S.current = id; S.etag = view.etag;
      S.content = view.draft || view.published || {};
      editorForm(false); fill(S.content);
      var due = view.scheduled_for ? view.scheduled_for.replace("T", " ").slice(0, 16) + " UTC" : "";
      q("#kb-state").textContent = (view.status === "draft" ? "草稿 (" + (view.draft_by || "") + ") · Draft, not live yet"
        : view.status === "retire" ? "将下线 · Retired at the next publish" : due ? "已定时 · Scheduled" : "已发布 · Live")
        + (due ? " · 已发布内容 " + due + " 起生效 · the published content takes effect " + due : "");
      if (view.scheduled_publication) {
        q("#kb-state").appendChild(ctx.el("button", { type: "button", id: "kb-unschedule", class: "kb-unschedule",
          text: "取消定时 · Cancel the schedule", onclick: function () { unschedule(view.scheduled_publication); } }));
      }
      renderHistory(view.history || [], !!view.scheduled_for);
      root.querySelectorAll(".kb-list button").forEach(function (b) {
        b.setAttribute("aria-current", b.id === "kb-item-" + id.replace(/\./g, "-") ? "true" : "false"); });
    })).catch(drawn(function (e) { ctx.flash(e.message); }));
  }
  function newEntry() {
    S.asked += 1; clearTimeout(S.timer);
    ctx.latest("kb-entry");  // an entry still loading is not drawn over the new one
    S.current = null; S.etag = null;
    S.content = { updated: new Date().toISOString().slice(0, 10) };
    editorForm(true); fill(S.content); q("#kb-history").textContent = "";
  }

  function renderHistory(items, scheduled) {  // scheduled: the newest revision is not in effect yet
    var list = q("#kb-history"); list.textContent = "";
    items.forEach(function (h, i) {
      list.appendChild(ctx.el("li", {}, [
        ctx.el("div", {}, ["#" + h.revision + " · " + h.at.replace("T", " ").slice(0, 16) + " · " + h.author + " · v" + h.version
          + (h.retired ? " · retired" : ""),
          i > 0 ? ctx.el("button", { type: "button", class: "kb-rollback", "data-revision": h.revision, text: "回滚到此版 · Roll back to this",
            onclick: function () { rollback(h.revision); } }) : ctx.el("span", { class: "badge", text: scheduled ? "定时 · scheduled" : "current" })]),
        ctx.el("pre", { class: "kb-diff", text: (h.diff || []).join("\n") })]));
    });
  }

  function save() {
    // the save validates too: an inline check still pending or on its way would clear what the save answers
    // (a 412 for an entry saved meanwhile was wiped by the check of the last keystroke, answering after it)
    clearTimeout(S.timer); ctx.latest("kb-validate");
    var c = collect(), path = S.current ? "/entries/" + encodeURIComponent(S.current) : "/entries", asked = S.asked;
    kbApi("POST", path, { entry: c }, S.current ? ifMatch() : {}).then(function (view) {
      ctx.flash("草稿已保存 · Draft saved: " + view.id); loadList(); loadStatus();
      if (!still(asked)) return;
      showProblems([]); S.current = view.id; S.etag = view.etag; openEntry(view.id);  // a quick second save: no 412
    }).catch(function (e) {
      if (!still(asked)) { ctx.flash(e.message); return; }
      var problems = e.data && e.data.error && e.data.error.problems;
      if (problems) showProblems(problems);
      else showProblems([{ field: (e.data && e.data.error && e.data.error.field) || "", message: e.message }]);
    });
  }
  function action(kind) {
    var id = S.current, asked = S.asked;
    kbApi("POST", "/entries/" + encodeURIComponent(id) + "/" + kind, {}, ifMatch()).then(function () {
      loadList(); loadStatus(); if (still(asked) && id) openEntry(id);
    }).catch(function (e) { ctx.flash(e.message); });
  }
  // A scheduled publication taken back before its time: its changes are drafts again (an urgent fix of an entry
  // it changes could only wait for its day before).
  function unschedule(publication) {
    var id = S.current, asked = S.asked;
    if (!window.confirm("取消这次定时发布？其中的改动会回到草稿。\nCancel this scheduled publish? Its changes become drafts again.")) return;
    kbApi("DELETE", "/publications/" + publication).then(function (r) {
      ctx.flash("定时发布已取消，改动回到草稿 · Scheduled publish cancelled; its changes are drafts again ("
        + r.cancelled.entries.join(", ") + ")" + (r.set_aside.length ? " · 以下条目已有较新的草稿或定时改动，取消的内容只记在审计日志中 · "
        + "kept only in the audit log (a newer draft or scheduled change is there): " + r.set_aside.join(", ") : ""));
      loadList(); loadStatus(); if (still(asked)) openEntry(id);
      if (!q("#kb-publish-box").hidden) reviewPublish();  // its changes are drafts again: listed
      if (!q("#kb-contacts").hidden) openContacts();
    }).catch(function (e) { ctx.flash(e.message); });
  }

  function rollback(revision) {
    var id = S.current, asked = S.asked;
    kbApi("POST", "/entries/" + encodeURIComponent(id) + "/rollback", { revision: revision }).then(function (r) {
      ctx.flash("已回滚并发布 · Rolled back, live version " + r.publication.version
        + (r.entry.draft || r.entry.draft_retire ? " · 草稿保留 · the pending draft is kept" : ""));
      loadList(); loadStatus(); if (still(asked)) openEntry(id);
    }).catch(function (e) { ctx.flash(e.message); });
  }
  // Publish shows what would go live first: every pending draft (whose, and when saved), each ticked; the
  // editor publishes the ticked ones, by id. It published every draft at once, a colleague's half-done one
  // included, and a draft saved while the editor looked went live unseen.
  function reviewPublish() {
    var el = ctx.el, box = q("#kb-publish-box"), drawn = ctx.latest("kb-publish-review");
    box.hidden = false; box.textContent = "…";
    Promise.all([kbApi("GET", "/status"), kbApi("GET", "/entries")]).then(drawn(function (both) {
      var pending = both[0].pending, byId = {}, drafts = {}, me = (ctx.me || {}).username;
      both[1].entries.forEach(function (e) { byId[e.id] = e; });
      (both[0].drafts || []).forEach(function (d) { drafts[d.id] = d; });  // entries and contacts: etag, writer
      // four-eyes rule: another editor publishes one's own drafts. They were ticked, and the publish was refused.
      var own = function (id) { return both[0].four_eyes && drafts[id] && drafts[id].draft_by === me; };
      var picked = function (id) { return !S.unticked[id] && !own(id); };
      box.textContent = "";
      box.appendChild(el("h3", { text: "发布以下草稿 · Publish these drafts" }));
      if (!pending.length) box.appendChild(el("p", { class: "muted", text: "没有草稿 · No drafts." }));
      var list = el("ul", { class: "kb-publish-list" }, pending.map(function (id, i) {
        // what the editor unticked stays so when redrawn
        var e = byId[id], box_ = el("input", { type: "checkbox", id: "kb-publish-pick-" + i, "data-entry": id,
          "data-etag": drafts[id] ? drafts[id].etag : null, checked: picked(id) ? "checked" : null,
          disabled: own(id) ? "disabled" : null });
        var what = e ? (e.status === "retire" ? "下线 · retire" : (e.title.zh || e.title.en)) + " · " + (e.draft_by || "") : "联系人 · contact";
        return el("li", {}, [box_, el("label", { for: box_.id }, [el("code", { text: id }), " " + what,
          own(id) ? el("span", { class: "muted", text: " · 四眼原则：需另一位编辑发布 · four-eyes rule: another editor publishes your draft" }) : null])]);
      }));
      box.appendChild(list);
      var at = q("#kb-publish-at").value, ticked = pending.filter(picked).length;
      box.appendChild(el("div", { class: "kb-bar" }, [
        el("button", { type: "button", class: "primary", id: "kb-publish-confirm", disabled: ticked ? null : "disabled",
          text: (at ? "定时发布 · Schedule" : "确认发布 · Publish") + " (" + ticked + ")", onclick: publish }),
        el("button", { type: "button", id: "kb-publish-cancel", text: "取消 · Cancel", onclick: function () { box.hidden = true; } })]));
      list.addEventListener("change", function (ev) {
        S.unticked[ev.target.getAttribute("data-entry")] = !ev.target.checked;
        var n = list.querySelectorAll("input:checked").length, b = q("#kb-publish-confirm");
        b.disabled = !n; b.textContent = b.textContent.replace(/\(\d+\)$/, "(" + n + ")");
      });
    })).catch(drawn(function (e) { box.textContent = e.message; }));
  }
  function publish() {
    // each draft as listed (its etag): one saved again since is refused (409) and the list is drawn afresh
    var nodes = root.querySelectorAll("#kb-publish-box input:checked"), seen = {};
    var picked = Array.prototype.map.call(nodes, function (n) {
      if (n.getAttribute("data-etag")) seen[n.getAttribute("data-entry")] = n.getAttribute("data-etag");
      return n.getAttribute("data-entry"); });
    if (!picked.length) return;
    q("#kb-publish-confirm").disabled = true;
    var at = q("#kb-publish-at").value, body = { entries: picked, seen: seen }, asked = S.asked;
    if (at) body.effective_from = new Date(at).toISOString();
    kbApi("POST", "/publish", body).then(function (r) {
      q("#kb-publish-at").value = ""; q("#kb-publish-box").hidden = true; S.unticked = {};
      ctx.flash(r.publication.effective_from ? "已定时发布 · Scheduled version " + r.publication.version + " for " + r.publication.effective_from
        : "已发布 · Published version " + r.publication.version);
      loadList(); loadStatus(); if (S.current && still(asked)) openEntry(S.current);
      if (!q("#kb-contacts").hidden) openContacts();
    }).catch(function (e) {
      var problems = e.data && e.data.error && e.data.error.problems;
      ctx.flash(e.message + (problems ? ": " + problems.map(function (p) { return p.entry + " " + p.field + " " + p.message; }).join("; ") : ""));
      loadStatus(); reviewPublish();
    });
  }

  // -- unanswered-question inbox ---------------------------------------------------------------
  function openInbox() {
    var box = q("#kb-inbox"); box.hidden = false; box.textContent = "…";
    kbApi("GET", "/inbox").then(function (data) {
      var el = ctx.el; box.textContent = "";
      box.appendChild(el("div", { class: "kb-bar" }, [el("h3", { text: "未答问题 · Unanswered questions (" + data.groups.length + ")" }),
        el("span", { class: "spacer" }), el("button", { type: "button", text: "关闭 · Close", onclick: function () { box.hidden = true; } })]));
      if (!data.groups.length) box.appendChild(el("p", { class: "muted", text: "没有未答问题 · Nothing the bot failed on." }));
      data.groups.forEach(function (g, i) {
        var target = el("input", { id: "kb-inbox-entry-" + i, value: g.guess ? g.guess.entry_id : "", "aria-label": "Entry id" });
        box.appendChild(el("div", { class: "kb-inbox-group", id: "kb-inbox-group-" + i }, [
          el("div", {}, [el("strong", { text: g.citizens + " 位市民 · citizens" }), " · " + g.count + " × · " +
            Object.keys(g.reasons).join(", ") + " · " + g.last_at.replace("T", " ").slice(0, 16)]),
          el("ul", {}, g.questions.map(function (t) { return el("li", { text: t }); })),
          g.guess ? el("div", { class: "muted", text: "最佳猜测 · Best guess: " + g.guess.title + " (" + g.guess.entry_id + ")" +
            (g.guess.evidence === "picked" ? " — 市民选择 · picked by citizens" : " " + g.guess.score) }) : null,
          el("div", { class: "kb-bar" }, [target,
            el("button", { type: "button", class: "primary kb-inbox-add", text: "加为问法 · Add as paraphrases", onclick: function () {
              kbApi("POST", "/inbox/paraphrase", { entry_id: target.value.trim(), questions: g.questions }).then(function (view) {
                ctx.flash("已加入草稿 · Added to the draft of " + view.id); loadStatus(); loadList(); openEntry(view.id); openInbox();
              }).catch(function (e) { ctx.flash(e.message); });
            } }),
            el("button", { type: "button", text: "新条目 · New entry", onclick: function () {
              newEntry(); setValue("questions.zh", g.questions.join("\n")); } }),
            el("button", { type: "button", text: "忽略 · Dismiss", onclick: function () {
              kbApi("POST", "/inbox/dismiss", { questions: g.questions }).then(openInbox).catch(function (e) { ctx.flash(e.message); });
            } })])]));
      });
    }).catch(function (e) { box.textContent = e.message; });
  }

  // -- contact directory ----------------------------------------------------------------------------
  var CONTACT_FIELDS = ["name", "name_en", "kind", "region", "phone", "hours", "hours_en", "address", "source", "last_verified"];
  function openContacts() {
    var box = q("#kb-contacts"); box.hidden = false; box.textContent = "…";
    kbApi("GET", "/contacts").then(function (data) {
      var el = ctx.el; box.textContent = "";
      box.appendChild(el("div", { class: "kb-bar" }, [el("h3", { text: "联系人目录 · Contact directory" }),
        el("span", { class: "muted", text: "答案中引用 · in answers: {{contact:id}}" }), el("span", { class: "spacer" }),
        el("button", { type: "button", text: "关闭 · Close", onclick: function () { box.hidden = true; } })]));
      var table = el("table", { class: "kb-contacts" }, [el("tr", {}, ["id", "名称 · Name", "电话 · Phone", "地区 · Region",
        "核实 · Verified", ""].map(function (h) { return el("th", { text: h }); }))]);
      data.contacts.forEach(function (c) {
        var v = c.draft || c.published || {};
        table.appendChild(el("tr", { class: c.stale ? "stale" : "" }, [el("td", { text: c.id }), el("td", { text: v.name }),
          el("td", { text: v.phone }), el("td", { text: v.region || "全国" }),
          el("td", { text: v.last_verified + (c.stale ? " ⚠ " + c.days_since_verified + "d" : "") + (c.status === "draft" ? " (draft)" : "") }),
          el("td", {}, [el("button", { type: "button", text: "编辑 · Edit", onclick: function () { editContact(c.id, v); } })])]));
      });
      box.appendChild(table);
      box.appendChild(el("div", { id: "kb-contact-form" }));
    }).catch(function (e) { box.textContent = e.message; });
  }
  function editContact(id, v) {
    var el = ctx.el, form = q("#kb-contact-form"); form.textContent = "";
    var inputs = {};
    var row = el("div", { class: "kb-row" }, CONTACT_FIELDS.map(function (f) {
      inputs[f] = el("input", { id: "kb-contact-" + f, value: v[f] || "", "aria-label": f });
      return el("div", { class: "kb-field", "data-for": "contact." + f }, [el("label", { for: inputs[f].id, text: f }), inputs[f],
        el("div", { class: "error" })]);
    }));
    form.appendChild(el("h3", { text: id }));
    form.appendChild(row);
    form.appendChild(el("button", { type: "button", class: "primary", id: "kb-contact-save", text: "保存草稿 · Save draft", onclick: function () {
      var c = { id: id };
      CONTACT_FIELDS.forEach(function (f) { var x = inputs[f].value.trim(); if (x) c[f] = x; });
      kbApi("POST", "/contacts/" + encodeURIComponent(id), { contact: c }).then(function () {
        ctx.flash("草稿已保存 · Draft saved"); loadStatus(); openContacts();
      }).catch(function (e) {
        var problems = (e.data && e.data.error && e.data.error.problems) || [{ field: "", message: e.message }];
        form.querySelectorAll(".error").forEach(function (n) { n.textContent = ""; });
        problems.forEach(function (p) {
          var wrap = form.querySelector('[data-for="contact.' + (p.field || "").split(".")[0] + '"]');
          if (wrap) wrap.querySelector(".error").textContent = p.message; else ctx.flash(p.message);
        });
      });
    } }));
  }

  function renderResult(title, r, id) {
    var el = ctx.el;
    return el("div", { id: id }, [el("h4", { text: title + " · v" + r.version }),
      el("div", { class: "muted", text: r.action + (r.entry_id ? " → " + r.entry_id : "") }),
      r.answer ? el("div", { class: "kb-answer", text: r.answer }) : null,
      el("ol", {}, r.top.map(function (t) { return el("li", { text: t.title + " (" + t.entry_id + ") " + t.score.toFixed(3) }); }))]);
  }
  function runTest() {
    var text = q("#kb-test-text").value.trim();
    if (!text) return;
    var out = q("#kb-test-out"), drawn = ctx.latest("kb-test"); out.textContent = "…";
    kbApi("POST", "/test", { text: text }).then(drawn(function (r) {  // the newest question's result only
      out.textContent = "";
      out.appendChild(renderResult("草稿 · Draft", r.draft, "kb-test-draft"));
      out.appendChild(renderResult("线上 · Live", r.live, "kb-test-live"));
    })).catch(drawn(function (e) { out.textContent = e.message; }));
  }

  window.HotlineConsole.register({
    id: "kb", title: "知识库 · Knowledge base", right: "kb",
    show: function (element, context) {
      ctx = context;
      if (root !== element) { root = element; layout(); }
      loadStatus(); loadList();
    },
    hide: function () {}
  });
})();
