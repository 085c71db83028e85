// smshub console: the few things a server-rendered page cannot do alone.
// - <time datetime> shown in the browser's time zone
// - live preview of SMS parts and cost under text areas (data-preview="URL")
// - confirmation before destructive buttons (data-confirm="question")
// - every fetch carries the session's CSRF token
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";

  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach((el) => {
      const d = new Date(el.getAttribute("datetime"));
      if (!isNaN(d)) {
        el.title = el.textContent;
        el.textContent = d.toLocaleString(undefined, {
          year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
        });
      }
    });
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "X-CSRF-Token": csrf(), "X-Requested-With": "fetch" },
      credentials: "same-origin",
    });
    return response.text();
  }

  function livePreview(area) {
    // The fragment goes under the field, or where data-preview-into names (a form whose
    // preview depends on every field shows it above its buttons).
    const target = area.dataset.previewInto
      ? document.getElementById(area.dataset.previewInto)
      : area.parentElement.querySelector("[data-preview-target]");
    if (!target) return;
    let timer = null;
    const refresh = async () => {
      const form = area.form;
      const data = form ? new FormData(form) : new FormData();
      data.set("text", area.value);
      if (area.dataset.previewExtra) {
        for (const [k, v] of new URLSearchParams(area.dataset.previewExtra)) data.set(k, v);
      }
      try {
        target.innerHTML = await post(area.dataset.preview, data);
        target.dataset.ready = "1";
      } catch (e) {
        target.textContent = "Preview unavailable: " + e;
      }
    };
    const later = () => { clearTimeout(timer); timer = setTimeout(refresh, 200); };
    area.addEventListener("input", later);
    const form = area.form;
    if (form) {
      form.querySelectorAll("input, select, textarea").forEach((el) => {
        if (el !== area) el.addEventListener("change", later);
      });
    }
    if (area.value) refresh();
  }

  document.addEventListener("DOMContentLoaded", () => {
    localTimes(document);
    document.querySelectorAll("[data-timezone]").forEach((el) => {
      el.value = Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
    });
    document.querySelectorAll("textarea[data-preview], input[data-preview]").forEach(livePreview);
    document.querySelectorAll("[data-back]").forEach((el) => {
      el.addEventListener("click", (ev) => { ev.preventDefault(); history.back(); });
    });
    document.querySelectorAll("[data-confirm]").forEach((el) => {
      const form = el.closest("form");
      (form || el).addEventListener(form ? "submit" : "click", (ev) => {
        if (!window.confirm(el.dataset.confirm)) ev.preventDefault();
      });
    });
  });
})();
