// petportrait: small progressive enhancements; every page works without this file.
(function () {
  "use strict";

  // Drag and drop onto the photo upload area, with previews of the chosen files.
  function setupDropzone(zone) {
    if (zone.dataset.ready) return;
    zone.dataset.ready = "1";
    const input = zone.querySelector("input[type=file]");
    const previews = zone.querySelector(".previews");
    if (!input || !previews) return;
    function show(files) {
      previews.innerHTML = "";
      Array.from(files).forEach(function (file) {
        const li = document.createElement("li");
        if (file.type && file.type.indexOf("image/") === 0) {
          const img = document.createElement("img");
          img.alt = "";
          img.src = URL.createObjectURL(file);
          img.onload = function () { URL.revokeObjectURL(img.src); };
          li.appendChild(img);
        }
        const name = document.createElement("span");
        name.textContent = file.name;
        li.appendChild(name);
        previews.appendChild(li);
      });
    }
    input.addEventListener("change", function () { show(input.files); });
    ["dragenter", "dragover"].forEach(function (type) {
      zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
    });
    ["dragleave", "drop"].forEach(function (type) {
      zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.remove("dragging"); });
    });
    zone.addEventListener("drop", function (event) {
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      input.files = event.dataTransfer.files;
      show(input.files);
    });
    const form = zone.closest("form");
    if (form) {
      form.addEventListener("htmx:afterRequest", function (event) {
        if (event.detail.successful) { form.reset(); previews.innerHTML = ""; }
      });
    }
  }

  function seconds(value) {
    if (value === null || value === undefined) return "";
    const s = Math.max(0, Math.round(value));
    if (s < 60) return "about " + s + " second" + (s === 1 ? "" : "s") + " left";
    const m = Math.round(s / 60);
    return "about " + m + " minute" + (m === 1 ? "" : "s") + " left";
  }

  // A live progress bar fed by the job's server-sent events.
  function setupProgress(box) {
    if (box.dataset.watching) return;
    box.dataset.watching = "1";
    const jobId = box.dataset.jobEvents;
    const bar = box.querySelector("progress");
    const text = box.querySelector("[data-progress-text]");
    const cancel = box.querySelector("[data-cancel-form]");
    const source = new EventSource("/api/v1/jobs/" + jobId + "/events");
    source.addEventListener("progress", function (event) {
      const job = JSON.parse(event.data);
      const percent = Math.round(job.progress.fraction * 100);
      bar.value = percent;
      if (job.state === "queued") {
        text.textContent = "Waiting for a worker…";
      } else {
        const eta = seconds(job.progress.eta_seconds);
        text.textContent = percent + "% done" + (eta ? ", " + eta : "") + (job.cancel_requested ? " (stopping…)" : "");
      }
    });
    source.addEventListener("end", function (event) {
      source.close();
      const job = JSON.parse(event.data);
      if (cancel) cancel.remove();
      if (job.state === "succeeded") {
        bar.value = 100;
        text.textContent = "100% done. Training finished.";
      } else if (job.state === "cancelled") {
        text.textContent = "Training cancelled.";
      } else {
        text.textContent = "Training failed" + (job.error ? ": " + job.error.message : ".");
      }
      const refresh = box.dataset.refresh;
      const after = document.createElement("div");
      after.setAttribute("hx-get", refresh);
      after.setAttribute("hx-trigger", "load");
      after.setAttribute("hx-swap", "innerHTML");
      after.className = "after-training";
      box.after(after);
      if (window.htmx) window.htmx.process(after);
    });
  }

  function init(root) {
    root.querySelectorAll("[data-dropzone]").forEach(setupDropzone);
    root.querySelectorAll("[data-job-events]").forEach(setupProgress);
  }

  // A live request that failed: show the page's sentence at the top instead of failing silently.
  document.addEventListener("htmx:responseError", function (event) {
    const flash = document.getElementById("flash");
    if (!flash) return;
    let message = "Something went wrong; reload the page and try again.";
    try {
      const doc = new DOMParser().parseFromString(event.detail.xhr.responseText, "text/html");
      const alert = doc.querySelector("main .alert.error");
      if (alert && alert.textContent.trim()) message = alert.textContent.trim();
    } catch (e) { /* keep the general message */ }
    flash.innerHTML = "";
    const p = document.createElement("p");
    p.className = "alert error";
    p.setAttribute("role", "alert");
    p.textContent = message;
    flash.appendChild(p);
    flash.scrollIntoView({ block: "nearest" });
  });
  document.addEventListener("htmx:sendError", function () {
    const flash = document.getElementById("flash");
    if (flash) flash.innerHTML = '<p class="alert error">The server could not be reached. Check your connection and try again.</p>';
  });

  // "Go back" links: the previous page when there is one (the link's own address otherwise).
  document.addEventListener("click", function (event) {
    const link = event.target instanceof Element ? event.target.closest("[data-back]") : null;
    if (link && window.history.length > 1) { event.preventDefault(); window.history.back(); }
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt); });
})();
