/* hotline-bot console: the dashboard section (supervisors and admins, right "dashboard").
 *
 * Reads /agents/api/dashboard?from&to&channel&language&category&region (local days in the desk's
 * time zone) and draws it with Chart.js, vendored under /agents/static/vendor/ (no CDN) and
 * loaded only when this section opens. Every table links to its CSV export with the same query.
 */
(function () {
  "use strict";
  var CHANNEL_COLOURS = ["#0b5cad", "#2e9d5b", "#e08a00", "#8a4fbf", "#c2185b", "#00838f"];
  var REASONS = { user_request: "用户要求 · asked", low_confidence: "未能理解 · not understood",
                  emergency: "紧急 · emergency", complaint: "投诉 · complaint" };
  var state = { root: null, ctx: null, charts: {}, loading: null, built: false, data: null };

  function loadChartJs() {
    if (window.Chart) return Promise.resolve();
    if (state.loading) return state.loading;
    state.loading = new Promise(function (resolve, reject) {
      var s = document.createElement("script");
      s.src = "/agents/static/vendor/chart.umd.min.js";
      s.onload = resolve; s.onerror = function () { reject(new Error("chart library failed to load")); };
      document.head.appendChild(s);
    });
    return state.loading;
  }
  function pct(v) { return v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%"; }
  function secs(v) { return v === null || v === undefined ? "–" : Math.round(v) + " s"; }

  function build(root) {
    var el = state.ctx.el;  // the range defaults to the server's (its clock, its time zone)
    function field(id, label, input) { return el("label", { class: "dash-field", for: id }, [label, input]); }
    function select(id, options) {
      return el("select", { id: id }, options.map(function (o) { return el("option", { value: o[0], text: o[1] }); }));
    }
    var form = el("form", { class: "dash-toolbar", id: "dash-form" }, [
      field("dash-from", "从 · From", el("input", { id: "dash-from", type: "date" })),
      field("dash-to", "到 · To", el("input", { id: "dash-to", type: "date" })),
      field("dash-channel", "渠道 · Channel", select("dash-channel", [["", "全部 · all"], ["web", "web"], ["wechat", "wechat"],
                                                                       ["api", "api"], ["rasa", "rasa"]])),
      field("dash-language", "语言 · Language", select("dash-language", [["", "全部 · all"], ["zh", "中文"], ["en", "English"]])),
      field("dash-category", "类别 · Category", select("dash-category", [["", "全部 · all"]])),
      field("dash-region", "地区 · Region", el("input", { id: "dash-region", size: "8" })),
      el("button", { type: "submit", class: "primary", id: "dash-apply", text: "查看 · Show" }),
      el("span", { id: "dash-status", class: "muted", role: "status" })
    ]);
    form.addEventListener("submit", function (e) { e.preventDefault(); refresh(); });
    root.textContent = "";
    root.appendChild(el("div", { class: "dash" }, [
      form,
      el("div", { class: "dash-kpis", id: "dash-kpis" }),
      el("div", { class: "dash-grid" }, [
        chartCard("volume", "每小时咨询量（按渠道）· Messages per hour by channel", "hourly_volume", "wide"),
        chartCard("deflection", "机器人解决率 · Deflection and served, per day", "deflection"),
        chartCard("reasons", "转人工原因 · Handoff reasons", "handoff_reasons"),
        chartCard("waits", "等待时间分布 · Wait until claimed", "wait_histogram"),
        chartCard("staffing", "建议人手 vs 在岗 · Agents recommended vs on duty", "staffing", "wide"),
        chartCard("forecast", "明日预测 · Tomorrow's forecast", "forecast", "wide")
      ]),
      el("div", { class: "dash-tables" }, [
        tableCard("top_entries", "热门问题 · Top answered entries"),
        tableCard("unanswered", "未能回答 · Unanswered questions"),
        tableCard("feedback", "评价 · 👍/👎 per entry"),
        tableCard("agents", "客服 · Agents"),
        tableCard("never_asked", "无人问过 · Entries never asked")
      ])
    ]));
    state.built = true;
  }
  function csvLink(table) {
    return state.ctx.el("a", { class: "csv", href: "#", "data-table": table, download: "", text: "CSV" });
  }
  function chartCard(id, title, table, cls) {
    var el = state.ctx.el;
    return el("figure", { class: "dash-card " + (cls || "") }, [
      el("figcaption", {}, [title, " ", csvLink(table)]),
      el("div", { class: "dash-canvas" }, [el("canvas", { id: "chart-" + id, role: "img", "aria-label": title })])
    ]);
  }
  function tableCard(id, title) {
    var el = state.ctx.el;
    return el("section", { class: "dash-card" }, [
      el("h3", {}, [title, " ", csvLink(id)]), el("div", { id: "table-" + id, class: "dash-table" })
    ]);
  }

  function query() {
    var q = [];
    [["from", "dash-from"], ["to", "dash-to"], ["channel", "dash-channel"], ["language", "dash-language"],
     ["category", "dash-category"], ["region", "dash-region"]].forEach(function (p) {
      var v = document.getElementById(p[1]).value.trim();
      if (v) q.push(p[0] + "=" + encodeURIComponent(v));
    });
    return q.join("&");
  }
  function refresh() {
    // the newest refresh is drawn (the opening load, slow under load, overwrote the range just applied)
    var q = query(), status = document.getElementById("dash-status"), drawn = state.ctx.latest("dashboard");
    status.textContent = "加载中 · loading…";
    Array.prototype.forEach.call(state.root.querySelectorAll("a.csv"), function (a) {
      a.href = "/agents/api/dashboard/export/" + a.getAttribute("data-table") + ".csv?" + q;
    });
    return Promise.all([loadChartJs(), state.ctx.api("GET", "/dashboard?" + q)]).then(drawn(function (r) {
      state.data = r[1];
      if (!document.getElementById("dash-from").value) document.getElementById("dash-from").value = r[1].range.from;
      if (!document.getElementById("dash-to").value) document.getElementById("dash-to").value = r[1].range.to;
      var categories = document.getElementById("dash-category");
      if (categories.options.length === 1) {
        (r[1].choices.categories || []).forEach(function (c) {
          categories.appendChild(state.ctx.el("option", { value: c, text: c }));
        });
      }
      render(r[1]);
      status.textContent = r[1].range.from + " – " + r[1].range.to + " (" + r[1].range.timezone + ")";
      state.root.setAttribute("data-loaded", q);
    })).catch(drawn(function (e) {
      status.textContent = e.message; state.ctx.flash(e.message);
    }));
  }

  function kpis(d) {
    var o = d.outcomes, a = d.answers, h = d.handoffs, el = state.ctx.el;
    var items = [
      ["conversations", "会话 · Conversations", o.conversations],
      ["messages", "消息 · Messages", d.volume.messages],
      ["deflection", "机器人解决 · Deflected", pct(o.deflection_rate)],
      ["served", "完全解决 · Served", pct(o.served_rate)],
      ["answer-rate", "直接回答 · Answered", pct(a.answer_rate)],
      ["dym-rate", "您是不是想问 · Did you mean", pct(a.did_you_mean_rate)],
      ["rephrase-rate", "请换个说法 · Rephrase", pct(a.rephrase_rate)],
      ["handoffs", "转人工 · Handoffs", h.total],
      ["wait-p50", "等待 p50 · Wait p50", secs(h.wait_seconds.p50)],
      ["wait-p90", "等待 p90 · Wait p90", secs(h.wait_seconds.p90)],
      ["handle", "处理时长 · Handle time", secs(h.handle_seconds.mean)],
      ["service-level", "服务水平 · Within " + h.service_level.seconds + " s", pct(h.service_level.achieved)],
      ["abandoned", "放弃 · Abandoned", pct(h.abandonment_rate)],
      ["callbacks", "回电 未处理/超时 · Callbacks open/overdue", h.callbacks.open + " / " + h.callbacks.overdue],
      ["citizens", "新/老用户 · New/returning", d.volume.citizens["new"] + " / " + d.volume.citizens.returning]
    ];
    var box = document.getElementById("dash-kpis");
    box.textContent = "";
    items.forEach(function (it) {
      box.appendChild(el("div", { class: "kpi", id: "kpi-" + it[0] }, [
        el("span", { class: "kpi-value", text: String(it[2]) }), el("span", { class: "kpi-label", text: it[1] })]));
    });
  }
  function draw(id, config) {
    if (state.charts[id]) state.charts[id].destroy();
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false }, config.options || {});
    state.charts[id] = new window.Chart(document.getElementById("chart-" + id), config);
  }
  function render(d) {
    kpis(d);
    var channels = d.volume.channels, buckets = d.volume.hourly, unit = "h";
    if (buckets.length > 24 * 14) {  // more than two weeks: one bar per day, not hundreds of hours
      var days = {};
      buckets.forEach(function (h) {
        var day = days[h.hour.slice(0, 10)] = days[h.hour.slice(0, 10)] || { hour: h.hour.slice(0, 10), messages: {} };
        Object.keys(h.messages).forEach(function (c) { day.messages[c] = (day.messages[c] || 0) + h.messages[c]; });
      });
      buckets = Object.keys(days).sort().map(function (k) { return days[k]; }); unit = "";
    }
    draw("volume", { type: "bar", data: {
      labels: buckets.map(function (h) { return h.hour.slice(5) + unit; }),
      datasets: channels.map(function (c, i) {
        return { label: c, backgroundColor: CHANNEL_COLOURS[i % CHANNEL_COLOURS.length],
                 data: buckets.map(function (h) { return h.messages[c] || 0; }) };
      }) }, options: { scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true } } } });
    draw("deflection", { type: "line", data: {
      labels: d.outcomes.trend.map(function (t) { return t.day; }),
      datasets: [
        { label: "解决 · deflected", borderColor: "#0b5cad", backgroundColor: "#0b5cad",
          data: d.outcomes.trend.map(function (t) { return t.deflection_rate === null ? null : t.deflection_rate * 100; }) },
        { label: "完全解决 · served", borderColor: "#2e9d5b", backgroundColor: "#2e9d5b",
          data: d.outcomes.trend.map(function (t) { return t.served_rate === null ? null : t.served_rate * 100; }) }
      ] }, options: { scales: { y: { min: 0, max: 100, title: { display: true, text: "%" } } } } });
    var reasons = Object.keys(d.handoffs.by_reason);
    draw("reasons", { type: "bar", data: { labels: reasons.map(function (r) { return REASONS[r] || r; }),
      datasets: [{ label: "handoffs", backgroundColor: ["#0b5cad", "#e08a00", "#b3261e", "#8a4fbf", "#5b6670"],
                   data: reasons.map(function (r) { return d.handoffs.by_reason[r]; }) }] },
      options: { indexAxis: "y", plugins: { legend: { display: false } }, scales: { x: { beginAtZero: true } } } });
    draw("waits", { type: "bar", data: { labels: d.handoffs.wait_seconds.histogram.map(function (b) { return b.bucket; }),
      datasets: [{ label: "handoffs", backgroundColor: "#00838f",
                   data: d.handoffs.wait_seconds.histogram.map(function (b) { return b.count; }) }] },
      options: { plugins: { legend: { display: false } }, scales: { y: { beginAtZero: true } } } });
    var hours = d.staffing.hours;
    if (hours.length > 24 * 14) {  // long ranges: the mean per hour of day
      var byHour = [];
      for (var k = 0; k < 24; k++) byHour.push({ hour: "mean " + (k < 10 ? "0" : "") + k, recommended: 0, on_duty: 0, n: 0 });
      hours.forEach(function (h) {
        var b = byHour[parseInt(h.hour.slice(11, 13), 10)];
        b.recommended += h.recommended; b.on_duty += h.on_duty; b.n += 1;
      });
      hours = byHour.map(function (b) {
        return { label: "⌀ " + b.hour.slice(5) + "h", recommended: b.n ? +(b.recommended / b.n).toFixed(2) : 0,
                 on_duty: b.n ? +(b.on_duty / b.n).toFixed(2) : 0 };
      });
    }
    draw("staffing", { type: "bar", data: { labels: hours.map(function (h) { return h.label || h.hour.slice(5) + "h"; }),
      datasets: [
        { type: "line", label: "在岗 · on duty", borderColor: "#e08a00", backgroundColor: "#e08a00", stepped: true,
          data: hours.map(function (h) { return h.on_duty; }) },
        { label: "建议 · recommended (Erlang C, " + Math.round(d.staffing.target * 100) + "% ≤ " + d.staffing.seconds + " s)",
          backgroundColor: "#0b5cad", data: hours.map(function (h) { return h.recommended; }) }
      ] }, options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } } });
    var f = d.forecast;
    draw("forecast", { type: "bar", data: { labels: f.hours.map(function (h) { return h.hour + ":00"; }),
      datasets: [
        { label: "预计会话 · conversations", backgroundColor: "#9ec5ea", data: f.hours.map(function (h) { return h.conversations; }), yAxisID: "y" },
        { label: "预计转人工 · handoffs", backgroundColor: "#0b5cad", data: f.hours.map(function (h) { return h.handoffs; }), yAxisID: "y" },
        { type: "line", label: "建议人手 · agents", borderColor: "#b3261e", backgroundColor: "#b3261e", stepped: true,
          data: f.hours.map(function (h) { return h.recommended; }), yAxisID: "y1" }
      ] }, options: { plugins: { subtitle: { display: true, text: f.day + " · " + f.method + ", " + f.history_days + " days" } },
        scales: { y: { beginAtZero: true }, y1: { beginAtZero: true, position: "right", ticks: { precision: 0 },
                                               grid: { drawOnChartArea: false } } } } });
    table("top_entries", ["条目 · Entry", "次数 · Answered", "👍", "👎"],
          d.answers.top_entries.map(function (e) { return [e.entry_id, e.count, e.up, e.down]; }));
    table("unanswered", ["问题 · Question", "次数 · Count"],
          d.answers.unanswered.map(function (u) { return [u.text, u.count]; }));
    table("feedback", ["条目 · Entry", "👍", "👎"], d.answers.feedback.map(function (e) {
      return [e.entry_id || "（无条目 · no entry: did-you-mean, menu…）", e.up, e.down]; }));
    table("agents", ["客服 · Agent", "在岗小时 · Duty h", "处理 · Handled", "每小时 · Per h"],
          d.agents.agents.map(function (a) { return [a.agent, a.duty_hours, a.handled, a.per_duty_hour === null ? "–" : a.per_duty_hour]; }));
    table("never_asked", ["条目 · Entry"], d.answers.never_asked.map(function (e) { return [e]; }));
  }
  function table(id, header, rows) {
    var el = state.ctx.el, box = document.getElementById("table-" + id);
    box.textContent = "";
    if (!rows.length) { box.appendChild(el("p", { class: "muted", text: "无数据 · nothing in this range" })); return; }
    box.appendChild(el("table", {}, [
      el("thead", {}, [el("tr", {}, header.map(function (h) { return el("th", { text: h }); }))]),
      el("tbody", {}, rows.map(function (r) {
        return el("tr", {}, r.map(function (c) { return el("td", { text: String(c) }); }));
      }))
    ]));
  }

  window.HotlineConsole.register({
    id: "dashboard", title: "数据 · Dashboard", right: "dashboard",
    show: function (root, ctx) {
      state.root = root; state.ctx = ctx;
      if (!state.built) build(root);
      refresh();
    },
    hide: function () {}
  });
})();
