/* Casework pages: copy a link, live processing progress, image zoom and pan (to the
   full-resolution copy), video frame step, speed and "save this frame", the item
   workspace's tabs (WAI-ARIA tabs pattern) and the success message.
   A file (the CSP forbids inline script); every feature also works by keyboard. */
(function () {
  "use strict";

  /* --- copy the issued upload link ------------------------------------------------ */
  document.querySelectorAll("[data-copy-target]").forEach(function (button) {
    button.addEventListener("click", function () {
      var input = document.getElementById(button.getAttribute("data-copy-target"));
      var status = button.parentElement.querySelector(".copy-status");
      if (!input) { return; }
      function done(ok) { if (status) { status.textContent = ok ? "Copied." : "Select the link and copy it."; } }
      if (navigator.clipboard && navigator.clipboard.writeText) {
        navigator.clipboard.writeText(input.value).then(function () { done(true); }, function () { input.select(); done(false); });
      } else {
        input.select();
        done(false);
      }
    });
  });

  /* --- live processing progress: poll a small JSON endpoint per item ------------------ */
  var POLL_MS = 2000;
  function poll(bar) {
    var url = bar.getAttribute("data-progress-url");
    var id = bar.getAttribute("data-item-id");
    fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" }, cache: "no-store" })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (data) {
        bar.value = data.progress;
        bar.textContent = data.progress + "%";
        document.querySelectorAll('[data-state-for="' + id + '"]').forEach(function (el) {
          el.textContent = data.state;
          el.className = el.className.replace(/state--\S+/, "state--" + data.state);
        });
        document.querySelectorAll('[data-verdict-for="' + id + '"]').forEach(function (el) {
          el.textContent = data.verdict || "not yet";
        });
        if (data.terminal) {
          if (bar.hasAttribute("data-reload-when-done")) { window.location.reload(); }
          return;
        }
        window.setTimeout(function () { poll(bar); }, POLL_MS);
      })
      .catch(function () { /* signed out or no longer visible: stop polling */ });
  }
  document.querySelectorAll("progress[data-progress-url]").forEach(function (bar) {
    window.setTimeout(function () { poll(bar); }, POLL_MS);
  });

  /* --- image zoom and pan, to the full-resolution copy ------------------------------ */
  document.querySelectorAll("[data-viewer]").forEach(function (viewer) {
    var stage = viewer.querySelector(".viewer__stage");
    var img = viewer.querySelector(".viewer__img");
    var level = viewer.querySelector("[data-zoom-level]");
    if (!stage || !img) { return; }
    var fullSrc = img.getAttribute("data-full-src");
    var fullW = Number(img.getAttribute("data-full-width")) || 0;
    var fullH = Number(img.getAttribute("data-full-height")) || 0;
    var STEP = 1.25, PAN = 40;
    var scale = 1, tx = 0, ty = 0;

    /* How many screen pixels one pixel of the picture takes at scale 1 (object-fit:
       contain), measured against the full-resolution copy when there is one. */
    function fit() {
      var w = fullW || img.naturalWidth, h = fullH || img.naturalHeight;
      if (!w || !h) { return 1; }
      return Math.min(stage.clientWidth / w, stage.clientHeight / h);
    }
    function maxScale() { return Math.max(8, 4 / fit()); }
    function useFull() {
      // The full-resolution copy is fetched only when the officer zooms in.
      if (fullSrc && img.getAttribute("src") !== fullSrc) { img.setAttribute("src", fullSrc); }
    }
    function clamp() {
      var w = stage.clientWidth, h = stage.clientHeight;
      tx = Math.min(0, Math.max(w - w * scale, tx));
      ty = Math.min(0, Math.max(h - h * scale, ty));
    }
    function apply() {
      clamp();
      img.style.transform = "translate(" + tx + "px, " + ty + "px) scale(" + scale + ")";
      if (level) {
        level.textContent = scale === 1 ? "Fitted (" + Math.round(fit() * 100) + "% of actual size)"
          : Math.round(scale * fit() * 100) + "% of actual size";
      }
    }
    function zoomTo(next, cx, cy) {
      next = Math.min(maxScale(), Math.max(1, next));
      if (cx === undefined) { cx = stage.clientWidth / 2; cy = stage.clientHeight / 2; }
      tx = cx - (cx - tx) * (next / scale);
      ty = cy - (cy - ty) * (next / scale);
      scale = next;
      if (scale > 1) { useFull(); }
      apply();
    }
    function zoomAt(factor, cx, cy) { zoomTo(scale * factor, cx, cy); }
    function actual() { zoomTo(1 / fit()); }
    function reset() { scale = 1; tx = 0; ty = 0; apply(); }

    viewer.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var what = button.getAttribute("data-zoom");
        if (what === "in") { zoomAt(STEP); } else if (what === "out") { zoomAt(1 / STEP); }
        else if (what === "actual") { actual(); } else { reset(); }
      });
    });
    stage.addEventListener("keydown", function (event) {
      var handled = true;
      switch (event.key) {
        case "+": case "=": zoomAt(STEP); break;
        case "-": case "_": zoomAt(1 / STEP); break;
        case "0": reset(); break;
        case "1": actual(); break;
        case "ArrowLeft": tx += PAN; apply(); break;
        case "ArrowRight": tx -= PAN; apply(); break;
        case "ArrowUp": ty += PAN; apply(); break;
        case "ArrowDown": ty -= PAN; apply(); break;
        default: handled = false;
      }
      if (handled) { event.preventDefault(); }
    });
    stage.addEventListener("wheel", function (event) {
      event.preventDefault();
      var rect = stage.getBoundingClientRect();
      zoomAt(event.deltaY < 0 ? STEP : 1 / STEP, event.clientX - rect.left, event.clientY - rect.top);
    }, { passive: false });
    var dragging = null;
    stage.addEventListener("pointerdown", function (event) {
      dragging = { x: event.clientX, y: event.clientY, tx: tx, ty: ty };
      stage.setPointerCapture(event.pointerId);
      stage.classList.add("is-dragging");
    });
    stage.addEventListener("pointermove", function (event) {
      if (!dragging) { return; }
      tx = dragging.tx + (event.clientX - dragging.x);
      ty = dragging.ty + (event.clientY - dragging.y);
      apply();
    });
    function stop() { dragging = null; stage.classList.remove("is-dragging"); }
    stage.addEventListener("pointerup", stop);
    stage.addEventListener("pointercancel", stop);
    img.addEventListener("contextmenu", function (event) { event.preventDefault(); });
    window.addEventListener("resize", apply);
    if (img.complete) { apply(); } else { img.addEventListener("load", apply, { once: true }); }
  });

  /* --- video: frame step, speed, the presented frame's time for "save this frame" ------- */
  document.querySelectorAll("[data-video-viewer]").forEach(function (viewer) {
    var video = viewer.querySelector("video");
    var tools = viewer.querySelector("[data-video-tools]");
    var timeOut = viewer.querySelector("[data-video-time]");
    var form = viewer.querySelector("[data-save-frame]");
    if (!video) { return; }
    var frame = 1 / (Number(video.getAttribute("data-frame-rate")) || 25);
    var shown = null; // media time of the frame on screen (requestVideoFrameCallback)
    // No context-menu "Save video as" (VL-04): copies leave only through the reasoned download.
    video.addEventListener("contextmenu", function (event) { event.preventDefault(); });
    function clock(t) {
      var m = Math.floor(t / 60), s = t - m * 60;
      return m + ":" + (s < 10 ? "0" : "") + s.toFixed(3);
    }
    function now() { return shown !== null ? shown : video.currentTime; }
    function show() {
      if (timeOut) { timeOut.textContent = clock(now()); }
      if (form) { form.querySelector("[name=at]").value = (Math.floor(now() * 1e6) / 1e6).toFixed(6); }
    }
    if ("requestVideoFrameCallback" in video) {
      var onFrame = function (_now, meta) { shown = meta.mediaTime; show(); video.requestVideoFrameCallback(onFrame); };
      video.requestVideoFrameCallback(onFrame);
    }
    ["timeupdate", "seeked", "pause"].forEach(function (name) { video.addEventListener(name, show); });
    if (tools) {
      tools.hidden = false;
      tools.querySelectorAll("[data-frame]").forEach(function (button) {
        button.addEventListener("click", function () {
          video.pause();
          var step = Number(button.getAttribute("data-frame")) * frame;
          // From the frame on screen to the middle of the next (or previous) one.
          var base = Math.round(now() / frame) * frame;
          video.currentTime = Math.max(0, Math.min(video.duration || Infinity, base + step + frame / 2));
        });
      });
      var speed = tools.querySelector("[data-speed]");
      if (speed) {
        speed.addEventListener("change", function () { video.playbackRate = Number(speed.value); });
        video.addEventListener("ratechange", function () { speed.value = String(video.playbackRate); });
      }
    }
    if (form) {
      form.addEventListener("submit", function () { video.pause(); show(); });
    }
  });

  /* --- the answer to a change: say it again once loaded so the status region speaks ---- */
  document.querySelectorAll("[data-flash]").forEach(function (region) {
    var text = region.innerHTML;
    if (!text.trim()) { return; }
    region.innerHTML = "";
    window.setTimeout(function () { region.innerHTML = text; }, 100);
  });

  /* --- the item workspace: WAI-ARIA tabs on a wide screen, stacked panels otherwise ---- */
  document.querySelectorAll("[data-tabs]").forEach(function (box) {
    var list = box.querySelector("[data-tab-list]");
    var workspace = box.closest(".workspace");
    if (!list || !workspace) { return; }
    var tabs = Array.prototype.slice.call(list.querySelectorAll(".tabs__tab"));
    var panels = tabs.map(function (tab) { return document.getElementById(tab.getAttribute("href").slice(1)); });
    var wide = window.matchMedia("(min-width: 64em)");
    var current = 0;

    function select(index, focus) {
      current = index;
      tabs.forEach(function (tab, i) {
        var on = i === index;
        tab.setAttribute("aria-selected", on ? "true" : "false");
        tab.setAttribute("tabindex", on ? "0" : "-1");
        panels[i].hidden = !on;
      });
      if (focus) { tabs[index].focus(); }
    }
    function panelOf(id) {
      var target = id && document.getElementById(id);
      if (!target) { return -1; }
      for (var i = 0; i < panels.length; i++) { if (panels[i] && panels[i].contains(target)) { return i; } }
      return -1;
    }
    function on() {
      workspace.classList.add("is-tabbed");
      list.setAttribute("role", "tablist");
      list.setAttribute("aria-label", "Item panels");
      tabs.forEach(function (tab, i) {
        tab.parentElement.setAttribute("role", "presentation");
        tab.setAttribute("role", "tab");
        tab.setAttribute("aria-controls", panels[i].id);
        panels[i].setAttribute("role", "tabpanel");
        panels[i].setAttribute("aria-labelledby", tab.id);
        panels[i].setAttribute("tabindex", "0");
      });
      // Open the panel the URL points into, or the one holding the first field in error.
      var index = panelOf(window.location.hash.slice(1));
      var firstError = document.querySelector(".error-summary a[href^='#']");
      if (firstError && panelOf(firstError.getAttribute("href").slice(1)) >= 0) {
        index = panelOf(firstError.getAttribute("href").slice(1));
      }
      select(index >= 0 ? index : current, false);
    }
    function off() {
      workspace.classList.remove("is-tabbed");
      list.removeAttribute("role");
      list.removeAttribute("aria-label");
      tabs.forEach(function (tab, i) {
        tab.parentElement.removeAttribute("role");
        ["role", "aria-controls", "aria-selected", "tabindex"].forEach(function (a) { tab.removeAttribute(a); });
        panels[i].hidden = false;
        ["role", "tabindex"].forEach(function (a) { panels[i].removeAttribute(a); });
        panels[i].setAttribute("aria-labelledby", panels[i].getAttribute("data-heading") || panels[i].getAttribute("aria-labelledby"));
      });
    }
    panels.forEach(function (panel) { panel.setAttribute("data-heading", panel.getAttribute("aria-labelledby")); });
    tabs.forEach(function (tab, i) {
      tab.addEventListener("click", function (event) {
        if (!workspace.classList.contains("is-tabbed")) { return; } // a plain link to the panel
        event.preventDefault();
        select(i, true);
      });
      tab.addEventListener("keydown", function (event) {
        if (!workspace.classList.contains("is-tabbed")) { return; }
        var next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[event.key];
        if (next === undefined) { return; }
        event.preventDefault();
        select((next + tabs.length) % tabs.length, true);
      });
    });
    window.addEventListener("hashchange", function () {
      var i = panelOf(window.location.hash.slice(1));
      if (i >= 0 && workspace.classList.contains("is-tabbed")) { select(i, false); }
    });
    function apply() { if (wide.matches) { on(); } else { off(); } }
    if (wide.addEventListener) { wide.addEventListener("change", apply); }
    apply();
  });
}());
