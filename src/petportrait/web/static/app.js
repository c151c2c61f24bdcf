// petportrait: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  // The compact menu of a phone: one button opens the list (wide screens show the list itself).
  function setupMenu(nav) {
    const button = nav.querySelector(".nav-toggle");
    if (!button || nav.dataset.ready) return;
    nav.dataset.ready = "1";
    button.hidden = false;
    button.addEventListener("click", function () {
      const open = button.getAttribute("aria-expanded") !== "true";
      button.setAttribute("aria-expanded", String(open));
      nav.classList.toggle("open", open);
    });
    document.addEventListener("keydown", function (event) {
      if (event.key === "Escape" && nav.classList.contains("open")) {
        nav.classList.remove("open");
        button.setAttribute("aria-expanded", "false");
        button.focus();
      }
    });
  }

  // A question before something that cannot be undone, in the page's own dialog (not the browser's).
  function ask(question, yes) {
    return new Promise(function (resolve) {
      const dialog = document.createElement("dialog");
      dialog.className = "confirm";
      dialog.setAttribute("aria-labelledby", "confirm-text");
      const p = document.createElement("p");
      p.id = "confirm-text";
      p.textContent = question;
      const row = document.createElement("div");
      row.className = "row";
      const no = document.createElement("button");
      no.type = "button"; no.className = "secondary"; no.textContent = "Keep it";
      const ok = document.createElement("button");
      ok.type = "button"; ok.className = "danger"; ok.textContent = yes || "Delete";
      row.append(no, ok);
      dialog.append(p, row);
      document.body.appendChild(dialog);
      function done(answer) { dialog.close(); dialog.remove(); resolve(answer); }
      no.addEventListener("click", function () { done(false); });
      ok.addEventListener("click", function () { done(true); });
      dialog.addEventListener("cancel", function (event) { event.preventDefault(); done(false); });
      dialog.showModal();
      no.focus();
    });
  }
  document.addEventListener("htmx:confirm", function (event) {
    const question = event.detail.question;
    if (!question) return;
    event.preventDefault();
    const yes = event.detail.elt.getAttribute("data-confirm-yes");
    ask(question, yes).then(function (answer) { if (answer) event.detail.issueRequest(true); });
  });

  // Drag and drop onto the photo upload area, with previews of the chosen files.
  function setupDropzone(zone) {
    if (zone.dataset.ready) return;
    zone.dataset.ready = "1";
    const input = zone.querySelector("input[type=file]");
    const previews = zone.querySelector(".previews");
    if (!input || !previews) return;
    function show(files) {
      previews.innerHTML = "";
      // New files chosen: what was said about the last ones no longer applies.
      ["upload-results", "flash"].forEach(function (id) {
        const old = document.getElementById(id);
        if (old) old.innerHTML = "";
      });
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

  function timeLeft(s) {
    if (s < 45) return "less than a minute left";
    const m = Math.max(1, Math.round(s / 60));
    return "about " + m + " minute" + (m === 1 ? "" : "s") + " left";
  }

  // An estimate that only moves down: measured from the time steps take (the server's estimate until
  // two steps were seen), and never above what was shown before minus the time since.
  function Estimate() {
    let firstAt = null, firstStep = 0, shown = null, shownAt = 0;
    return function (step, total, serverEta) {
      const now = Date.now();
      let guess = null;
      if (step > 0 && firstAt === null) { firstAt = now; firstStep = step; }
      if (firstAt !== null && step > firstStep) {
        guess = (now - firstAt) / 1000 / (step - firstStep) * (total - step);
      } else if (serverEta !== null && serverEta !== undefined) {
        guess = serverEta;
      }
      if (guess === null) return shown === null ? null : Math.max(0, shown - (now - shownAt) / 1000);
      if (shown !== null) guess = Math.min(guess, Math.max(0, shown - (now - shownAt) / 1000));
      shown = guess; shownAt = now;
      return shown;
    };
  }

  // A live progress bar fed by the job's server-sent events: a phase in words, then steps and time left.
  function setupProgress(box) {
    if (box.dataset.watching) return;
    box.dataset.watching = "1";
    const jobId = box.dataset.jobEvents;
    const bar = box.querySelector("progress");
    const text = box.querySelector("[data-progress-text]");
    const estimate = Estimate();
    const source = new EventSource("/api/v1/jobs/" + jobId + "/events");
    source.addEventListener("progress", function (event) {
      const job = JSON.parse(event.data);
      const p = job.progress;
      const percent = Math.round(p.fraction * 100);
      bar.value = percent;
      const stopping = job.cancel_requested ? " Stopping…" : "";
      if (job.state === "queued") {
        text.textContent = "Waiting for a free worker to start…" + stopping;
      } else if (!p.step) {
        text.textContent = "Getting ready: loading the model and reading the photos…" + stopping;
      } else if (p.step >= p.total) {
        text.textContent = "Saving the model…" + stopping;
      } else {
        const left = estimate(p.step, p.total, p.eta_seconds);
        text.textContent = "Training: step " + p.step + " of " + p.total +
          (left === null ? "." : ", " + timeLeft(left) + ".") + stopping;
      }
    });
    source.addEventListener("end", function () {
      source.close();
      // One end state: the panel is drawn again by the server (ready, failed or cancelled), and the photo
      // controls that training kept disabled come back with it.
      text.textContent = "Finishing…";
      if (window.htmx) {
        window.htmx.ajax("GET", box.dataset.refresh, { target: "#training-panel", swap: "innerHTML" });
      } else {
        window.location.reload();
      }
    });
  }

  // The portrait viewer: a larger view with its deletion date and licence; arrow keys and swipes move on.
  function setupViewer(dialog) {
    if (dialog.dataset.ready) return;
    dialog.dataset.ready = "1";
    let index = 0;
    const items = function () { return Array.from(document.querySelectorAll("[data-viewer-item]")); };
    function show(i) {
      const all = items();
      if (!all.length) { dialog.close(); return; }
      index = (i + all.length) % all.length;
      const item = all[index];
      const img = item.querySelector("img");
      dialog.querySelector("#viewer-title").textContent = item.dataset.title + " (" + (index + 1) + " of " + all.length + ")";
      const big = dialog.querySelector("#viewer-image");
      big.src = img.getAttribute("src");
      big.alt = img.alt;
      dialog.querySelector("#viewer-deleted").textContent = item.dataset.deleted;
      dialog.querySelector(".viewer-preview").hidden = !item.dataset.preview;
      dialog.querySelector("#viewer-download").href = item.dataset.download;
      dialog.querySelector("#viewer-licence").href = item.dataset.licence;
    }
    document.addEventListener("click", function (event) {
      const link = event.target instanceof Element ? event.target.closest(".open-viewer") : null;
      if (!link) return;
      event.preventDefault();
      show(items().indexOf(link.closest("[data-viewer-item]")));
      dialog.showModal();
    });
    dialog.querySelector("[data-viewer-close]").addEventListener("click", function () { dialog.close(); });
    dialog.querySelectorAll("[data-viewer-step]").forEach(function (button) {
      button.addEventListener("click", function () { show(index + Number(button.dataset.viewerStep)); });
    });
    dialog.addEventListener("keydown", function (event) {
      if (event.key === "ArrowRight") { event.preventDefault(); show(index + 1); }
      if (event.key === "ArrowLeft") { event.preventDefault(); show(index - 1); }
    });
    let startX = null;
    dialog.addEventListener("touchstart", function (event) { startX = event.changedTouches[0].clientX; }, { passive: true });
    dialog.addEventListener("touchend", function (event) {
      if (startX === null) return;
      const dx = event.changedTouches[0].clientX - startX;
      startX = null;
      if (Math.abs(dx) > 40) show(index + (dx < 0 ? 1 : -1));
    });
  }

  function init(root) {
    root.querySelectorAll("dialog.viewer").forEach(setupViewer);
    root.querySelectorAll(".site-nav").forEach(setupMenu);
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

  // A plain form that asks first (data-confirm): the page's dialog, then the form is sent.
  document.addEventListener("submit", function (event) {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.dataset.confirm || form.dataset.confirmed) return;
    event.preventDefault();
    ask(form.dataset.confirm).then(function (answer) {
      if (!answer) return;
      form.dataset.confirmed = "1";
      form.requestSubmit();
    });
  });

  // Copy buttons (a webhook's secret): the text goes to the clipboard, and the page says so.
  document.addEventListener("click", function (event) {
    const button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    const said = button.parentElement.querySelector("[data-copied]");
    if (!source) return;
    const text = source.textContent.trim();
    const done = function () { if (said) said.textContent = "Copied."; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
      if (said) said.textContent = "Selected: press Ctrl+C (or Cmd+C) to copy.";
    }
  });
  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // "Go back" links: the previous page when there is one (the link's own address otherwise).
  document.addEventListener("click", function (event) {
    const link = event.target instanceof Element ? event.target.closest("[data-back]") : null;
    if (link && window.history.length > 1) { event.preventDefault(); window.history.back(); }
  });

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (event) { init(event.detail.elt); });
})();
