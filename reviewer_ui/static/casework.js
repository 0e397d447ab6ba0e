/* Casework pages: copy a link, live processing progress, image zoom and pan.
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

  /* --- image zoom and pan ------------------------------------------------------------ */
  document.querySelectorAll("[data-viewer]").forEach(function (viewer) {
    var stage = viewer.querySelector(".viewer__stage");
    var img = viewer.querySelector(".viewer__img");
    var level = viewer.querySelector("[data-zoom-level]");
    if (!stage || !img) { return; }
    var MIN = 1, MAX = 8, STEP = 1.25, PAN = 40;
    var scale = 1, tx = 0, ty = 0;

    function clamp() {
      var w = stage.clientWidth, h = stage.clientHeight;
      tx = Math.min(0, Math.max(w - w * scale, tx));
      ty = Math.min(0, Math.max(h - h * scale, ty));
    }
    function apply() {
      clamp();
      img.style.transform = "translate(" + tx + "px, " + ty + "px) scale(" + scale + ")";
      if (level) { level.textContent = Math.round(scale * 100) + "%"; }
    }
    function zoomAt(factor, cx, cy) {
      var next = Math.min(MAX, Math.max(MIN, scale * factor));
      if (cx === undefined) { cx = stage.clientWidth / 2; cy = stage.clientHeight / 2; }
      tx = cx - (cx - tx) * (next / scale);
      ty = cy - (cy - ty) * (next / scale);
      scale = next;
      apply();
    }
    function reset() { scale = 1; tx = 0; ty = 0; apply(); }

    viewer.querySelectorAll("[data-zoom]").forEach(function (button) {
      button.addEventListener("click", function () {
        var what = button.getAttribute("data-zoom");
        if (what === "in") { zoomAt(STEP); } else if (what === "out") { zoomAt(1 / STEP); } else { reset(); }
      });
    });
    stage.addEventListener("keydown", function (event) {
      var handled = true;
      switch (event.key) {
        case "+": case "=": zoomAt(STEP); break;
        case "-": case "_": zoomAt(1 / STEP); break;
        case "0": reset(); break;
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
    window.addEventListener("resize", apply);
  });
}());
