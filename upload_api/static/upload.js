/* Exhibit upload page: progressive enhancement of the plain multipart form.

   Without this script (or in a browser that lacks what it needs) the form posts to
   /u/submit as ordinary multipart/form-data and the server answers with the receipt.
   With it:
     1. the statement and declaration are sent first (POST /u/submission, JSON), which
        gives a submission id; the id is kept in localStorage under a key derived from the
        link, so that reopening the link continues the same submission;
     2. each file is sent with tus-js-client to /u/files/: resumable, in chunks, retried
        automatically after a dropped connection, and resumable after the tab is closed
        (tus-js-client keeps each upload's URL in localStorage under a fingerprint);
     3. meanwhile a Web Worker computes each file's SHA-256 (hash-wasm, streamed in
        slices); when a file is complete its digest is posted to
        /u/files/{id}/client-sha256 and the server records whether it matches;
     4. when every file is in, the browser goes to the receipt.
   Nothing here is trusted by the server: it re-checks every limit and sniffs every file. */
(function () {
  "use strict";

  var form = document.getElementById("upload-form");
  if (!form) {
    return;
  }
  var storage = null;
  try {
    storage = window.localStorage;
    storage.setItem("exhibit.test", "1");
    storage.removeItem("exhibit.test");
  } catch (e) {
    storage = null;
  }
  // Anything missing: leave the plain form alone; it works without us.
  if (!window.tus || !window.tus.isSupported || !window.fetch || !window.Promise || !storage ||
      !window.File || !window.Blob || !("slice" in Blob.prototype)) {
    return;
  }

  var $ = function (id) { return document.getElementById(id); };
  var data = form.dataset;
  var LINK_KEY = data.linkKey;
  var ENDPOINT = data.tusEndpoint;
  var CHUNK_BYTES = parseInt(data.chunkBytes, 10) || 8 * 1024 * 1024;
  var MAX_FILE_BYTES = parseInt(data.maxFileBytes, 10);
  var FILES_LEFT = parseInt(data.filesLeft, 10);
  var BYTES_LEFT = parseInt(data.bytesLeft, 10);
  var REQUIRE_CONTACT = data.requireContact === "true";
  var ACCEPT = (data.accept || "").split(",");
  var ACCEPT_TYPES = ACCEPT.filter(function (a) { return a.indexOf("/") > 0; });
  var ACCEPT_EXTENSIONS = ACCEPT.filter(function (a) { return a.charAt(0) === "."; });
  var REPORT_REFERENCE = data.reportReference || "";
  var LINK_EXPIRES_MS = parseInt(data.linkExpiresMs, 10) || 0;
  var SUBMISSION_KEY = "exhibit.submission." + LINK_KEY;
  // Waits between automatic retries of a broken request (tus-js-client), in ms. After the
  // last one, the page keeps trying every 30 s and whenever the device comes back online.
  var RETRY_DELAYS = [0, 1000, 2000, 4000, 8000, 15000, 30000, 30000];

  // Plain-language messages for the server's stable error codes.
  var MESSAGES = {
    ERR_UNSUPPORTED_TYPE: "This is not a photo or video we can accept. Please choose the original photo or video file.",
    ERR_TOO_LARGE: "This file is larger than we can accept. Please contact the officer who sent you the link.",
    ERR_QUOTA_BYTES: "This file would go over the total this link allows. Please contact the officer for another link.",
    ERR_QUOTA_FILES: "You have sent as many files as this link allows. Please contact the officer if you have more.",
    ERR_EMPTY_FILE: "This file is empty. Please choose it again.",
    // Tell the truth when the link ended while the page was open: it will not carry on,
    // and the citizen needs a new link from the officer (issue 17.7).
    ERR_LINK_EXPIRED: "This link has expired, so nothing more can be sent with it. Please contact the officer dealing with report " +
      REPORT_REFERENCE + " and ask for a new link. To contact the police when it is not an emergency, call 101.",
    ERR_LINK_REVOKED: "This link has been withdrawn, so nothing more can be sent with it. Please contact the officer dealing with report " +
      REPORT_REFERENCE + ". To contact the police when it is not an emergency, call 101.",
    ERR_LINK_EXHAUSTED: "This link has been used up. Please contact the officer dealing with report " + REPORT_REFERENCE +
      " if you have more to send.",
    ERR_NO_SESSION: "This page has been open too long. Please open the link from your message again: sending will carry on."
  };

  // The message for a server's error code. A session that ended after the link did is an
  // expired link, not "open the link again": reopening would only say it has expired.
  function messageFor(code) {
    if (code === "ERR_NO_SESSION" && LINK_EXPIRES_MS && Date.now() >= LINK_EXPIRES_MS) {
      code = "ERR_LINK_EXPIRED";
    }
    return MESSAGES[code];
  }

  var state = {
    chosen: [],          // {file, key, problem}
    submission: null,    // {id, reference, status_token}
    received: {},        // "name|size" of files this submission already has (when continuing)
    entries: [],         // per-file upload state while sending
    current: null,       // the entry being sent
    paused: false,
    announcedQuarter: 0,
    totalBytes: 0
  };

  // ---------------------------------------------------------------- small helpers

  function formatBytes(bytes) {
    if (bytes < 1024) {
      return bytes + (bytes === 1 ? " byte" : " bytes");
    }
    var units = ["KB", "MB", "GB", "TB"];
    var value = bytes / 1024;
    var i = 0;
    while (value >= 1024 && i < units.length - 1) {
      value /= 1024;
      i += 1;
    }
    return (value >= 100 ? Math.round(value) : Math.round(value * 10) / 10) + " " + units[i];
  }

  function plural(n, one, many) {
    return n + " " + (n === 1 ? one : many);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text !== undefined) {
      node.textContent = text; // never innerHTML: file names are the citizen's (or anyone's) words
    }
    return node;
  }

  var announceTimer = null;
  function announce(text) {
    // Clear then set, so that the same sentence twice is still read out.
    var live = $("live");
    live.textContent = "";
    window.clearTimeout(announceTimer);
    announceTimer = window.setTimeout(function () { live.textContent = text; }, 100);
  }

  function loadSaved() {
    try {
      var saved = JSON.parse(storage.getItem(SUBMISSION_KEY) || "null");
      if (saved && typeof saved.id === "string" && typeof saved.status_token === "string") {
        return saved;
      }
    } catch (e) { /* a corrupt entry is dropped below */ }
    storage.removeItem(SUBMISSION_KEY);
    return null;
  }

  function fileKey(file) {
    return [file.name, file.size, file.lastModified].join("|");
  }

  function extensionOf(name) {
    var dot = name.lastIndexOf(".");
    return dot < 0 ? "" : name.slice(dot).toLowerCase();
  }

  function acceptable(file) {
    return ACCEPT_EXTENSIONS.indexOf(extensionOf(file.name)) >= 0 ||
      (file.type && ACCEPT_TYPES.indexOf(file.type.toLowerCase()) >= 0);
  }

  function jsonRequest(method, url, body) {
    return fetch(url, {
      method: method,
      credentials: "same-origin",
      headers: body === undefined ? { Accept: "application/json" } :
        { Accept: "application/json", "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body)
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (json) {
        return { status: response.status, ok: response.ok, json: json };
      });
    });
  }

  function errorCode(json) {
    return json && json.error && json.error.code ? json.error.code : "";
  }

  // ---------------------------------------------------------------- errors on the form

  var FIELD_LABELS = {
    description: "Describe what the photos or videos show",
    contact_name: "Enter your name",
    contact_details: "Enter a phone number or email address",
    declaration: "Tick the box to confirm the declaration",
    files: "Choose at least one photo or video"
  };

  function clearErrors() {
    var summary = $("error-summary");
    summary.hidden = true;
    $("error-summary-list").textContent = "";
    Array.prototype.forEach.call(form.querySelectorAll(".error-message"), function (node) {
      var field = node.closest(".field");
      if (field) {
        field.classList.remove("field-error");
      }
      var input = $(node.id.replace(/-error$/, ""));
      if (input) {
        input.removeAttribute("aria-invalid");
        var ids = (input.getAttribute("aria-describedby") || "").split(" ").filter(function (id) {
          return id && id !== node.id;
        });
        if (ids.length) {
          input.setAttribute("aria-describedby", ids.join(" "));
        } else {
          input.removeAttribute("aria-describedby");
        }
      }
      node.parentNode.removeChild(node);
    });
  }

  // errors: [{field: "description", message: "..."}]; field may be null (summary only).
  function showErrors(errors) {
    clearErrors();
    var list = $("error-summary-list");
    errors.forEach(function (error) {
      var item = el("li");
      var input = error.field ? $(error.field) : null;
      if (input) {
        var link = el("a", "", error.message);
        link.href = "#" + error.field;
        link.addEventListener("click", function (event) {
          event.preventDefault();
          input.focus();
          input.scrollIntoView({ block: "center" });
        });
        item.appendChild(link);
        var message = el("span", "error-message", "");
        message.id = error.field + "-error";
        var hidden = el("span", "visually-hidden", "Error: ");
        message.appendChild(hidden);
        message.appendChild(document.createTextNode(error.message));
        var field = $(error.field + "-field");
        var label = field ? field.querySelector("label, .hint") : null;
        if (field) {
          field.classList.add("field-error");
          // Insert after the label and hint, before the control (as GOV.UK does).
          var before = field.querySelector(".dropzone, .checkbox, input, textarea");
          field.insertBefore(message, before || (label ? label.nextSibling : null));
        }
        input.setAttribute("aria-invalid", "true");
        var described = (input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean);
        described.push(message.id);
        input.setAttribute("aria-describedby", described.join(" "));
      } else {
        item.textContent = error.message;
      }
      list.appendChild(item);
    });
    var summary = $("error-summary");
    summary.hidden = false;
    summary.setAttribute("role", "alert");
    summary.focus();
    summary.scrollIntoView({ block: "start" });
  }

  // ---------------------------------------------------------------- choosing files

  function addFiles(fileList) {
    var added = 0;
    Array.prototype.forEach.call(fileList, function (file) {
      var key = fileKey(file);
      var already = state.chosen.some(function (c) { return c.key === key; });
      if (!already) {
        state.chosen.push({ file: file, key: key });
        added += 1;
      }
    });
    renderChosen();
    if (added) {
      announce(plural(state.chosen.length, "file", "files") + " chosen, " +
        formatBytes(totalChosenBytes()) + " in total.");
    }
  }

  function totalChosenBytes() {
    return state.chosen.reduce(function (sum, c) { return sum + c.file.size; }, 0);
  }

  function problemWith(file) {
    if (file.size === 0) {
      return "This file is empty.";
    }
    if (!acceptable(file)) {
      return "This does not look like a photo or video we can accept.";
    }
    if (file.size > MAX_FILE_BYTES) {
      return "This file is larger than " + formatBytes(MAX_FILE_BYTES) + ", the most we can accept for one file.";
    }
    return "";
  }

  function isReceived(file) {
    return Object.prototype.hasOwnProperty.call(state.received, file.name + "|" + file.size);
  }

  function renderChosen() {
    var list = $("chosen-list");
    list.textContent = "";
    state.chosen.forEach(function (choice, index) {
      var item = el("li");
      item.appendChild(el("span", "file-name", choice.file.name));
      var problem = problemWith(choice.file);
      var stateText = formatBytes(choice.file.size);
      var stateNode = el("span", "file-state", stateText);
      if (isReceived(choice.file)) {
        stateNode.textContent = stateText + ". Already received: it will not be sent again.";
        stateNode.classList.add("is-done");
      } else if (problem) {
        stateNode.textContent = stateText + ". " + problem;
        stateNode.classList.add("is-error");
      }
      item.appendChild(stateNode);
      var remove = el("button", "link-button", "Remove");
      remove.type = "button";
      remove.setAttribute("aria-label", "Remove " + choice.file.name);
      remove.addEventListener("click", function () {
        state.chosen.splice(index, 1);
        renderChosen();
        announce(choice.file.name + " removed. " + plural(state.chosen.length, "file", "files") + " chosen.");
        // Keep keyboard focus in a sensible place once the button is gone.
        var buttons = list.querySelectorAll("button");
        (buttons[Math.min(index, buttons.length - 1)] || $("files")).focus();
      });
      item.appendChild(remove);
      list.appendChild(item);
    });
    $("chosen").hidden = state.chosen.length === 0;
    $("chosen-total").textContent = state.chosen.length ?
      plural(state.chosen.length, "file", "files") + ", " + formatBytes(totalChosenBytes()) + " in total." : "";
  }

  function setUpPickers() {
    ["files", "camera"].forEach(function (id) {
      var input = $(id);
      input.addEventListener("change", function () {
        addFiles(input.files);
        // The list above is now the record of what will be sent; clear the control so
        // the same file can be chosen again after removing it.
        input.value = "";
      });
    });
    var zone = $("dropzone");
    $("dropzone-text").hidden = false;
    var depth = 0;
    zone.addEventListener("dragenter", function (event) {
      event.preventDefault();
      depth += 1;
      zone.classList.add("is-dragover");
    });
    zone.addEventListener("dragover", function (event) {
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    zone.addEventListener("dragleave", function () {
      depth = Math.max(0, depth - 1);
      if (depth === 0) {
        zone.classList.remove("is-dragover");
      }
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("is-dragover");
      if (event.dataTransfer && event.dataTransfer.files) {
        addFiles(event.dataTransfer.files);
      }
    });
    // A file dropped anywhere else would make the browser open it and leave this page
    // (and any upload in progress): refuse such drops.
    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (event) {
        if (!zone.contains(event.target)) {
          event.preventDefault();
        }
      });
    });
  }

  // ---------------------------------------------------------------- continuing a submission

  function showContinuing(saved, info) {
    state.submission = saved;
    state.received = {};
    (info.files || []).forEach(function (f) {
      state.received[f.name + "|" + f.size] = true;
    });
    $("resume-reference").textContent = saved.reference;
    $("resume-receipt").href = "/u/receipt/" + encodeURIComponent(saved.status_token);
    var receivedList = $("resume-received-list");
    receivedList.textContent = "";
    (info.files || []).forEach(function (f) {
      receivedList.appendChild(el("li", "", f.name + " (" + formatBytes(f.size) + ")"));
    });
    $("resume-received").hidden = !(info.files && info.files.length);
    $("resume-notice").hidden = false;
    // The statement and declaration were sent with the submission already.
    ["about-fieldset", "contact-fieldset", "declaration-fieldset"].forEach(function (id) {
      $(id).hidden = true;
      $(id).disabled = true;
    });
    $("send").textContent = "Continue sending";
    renderChosen();
  }

  function startAfresh() {
    storage.removeItem(SUBMISSION_KEY);
    state.submission = null;
    state.received = {};
    $("resume-notice").hidden = true;
    ["about-fieldset", "contact-fieldset", "declaration-fieldset"].forEach(function (id) {
      $(id).hidden = false;
      $(id).disabled = false;
    });
    $("send").textContent = "Send files";
    renderChosen();
    $("description").focus();
    announce("Starting a new submission.");
  }

  function checkSaved() {
    var saved = loadSaved();
    if (!saved) {
      return;
    }
    jsonRequest("GET", "/u/submission/" + encodeURIComponent(saved.id)).then(function (result) {
      if (result.ok) {
        showContinuing(saved, result.json);
      } else if (result.status === 404) {
        storage.removeItem(SUBMISSION_KEY); // not this link's, or gone
      }
    }, function () { /* offline: the citizen can still start afresh */ });
  }

  // ---------------------------------------------------------------- submitting

  function validate() {
    var errors = [];
    if (!state.submission) {
      if (!$("description").value.trim()) {
        errors.push({ field: "description", message: FIELD_LABELS.description });
      }
      if (REQUIRE_CONTACT && !$("contact_name").value.trim()) {
        errors.push({ field: "contact_name", message: FIELD_LABELS.contact_name });
      }
      if (REQUIRE_CONTACT && !$("contact_details").value.trim()) {
        errors.push({ field: "contact_details", message: FIELD_LABELS.contact_details });
      }
    }
    // In the order the page shows them.
    if (!state.submission && !$("declaration").checked) {
      errors.push({ field: "declaration", message: FIELD_LABELS.declaration });
    }
    var toSend = state.chosen.filter(function (c) { return !isReceived(c.file); });
    if (toSend.length === 0) {
      errors.push({ field: "files", message: FIELD_LABELS.files });
    } else {
      var bad = toSend.filter(function (c) { return problemWith(c.file); });
      if (bad.length) {
        errors.push({
          field: "files",
          message: bad.length === 1 ?
            "Remove " + bad[0].file.name + ": " + problemWith(bad[0].file).charAt(0).toLowerCase() + problemWith(bad[0].file).slice(1) :
            "Remove the " + bad.length + " files marked with a problem"
        });
      } else if (toSend.length > FILES_LEFT) {
        errors.push({ field: "files", message: "Choose " + FILES_LEFT + " files or fewer: this link allows " + plural(FILES_LEFT, "more file", "more files") });
      } else if (toSend.reduce(function (s, c) { return s + c.file.size; }, 0) > BYTES_LEFT) {
        errors.push({ field: "files", message: "Choose fewer or smaller files: this link allows " + formatBytes(BYTES_LEFT) + " in total" });
      }
    }
    return errors;
  }

  function createSubmission() {
    var body = {
      description: $("description").value,
      occurred_at: $("occurred_at").value,
      location: $("location").value,
      contact_name: $("contact_name").value,
      contact_details: $("contact_details").value,
      declaration: $("declaration").checked ? "accepted" : "",
      declaration_version: form.elements.declaration_version.value
    };
    return jsonRequest("POST", "/u/submission", body).then(function (result) {
      if (!result.ok) {
        var error = result.json.error || {};
        var err = new Error(error.message || "Your details could not be saved.");
        err.field = error.field || null;
        err.code = error.code || "";
        throw err;
      }
      var saved = { id: result.json.id, reference: result.json.reference, status_token: result.json.status_token };
      storage.setItem(SUBMISSION_KEY, JSON.stringify(saved));
      state.submission = saved;
      return saved;
    });
  }

  function onSubmit(event) {
    event.preventDefault();
    var errors = validate();
    if (errors.length) {
      showErrors(errors);
      return;
    }
    clearErrors();
    var button = $("send");
    button.disabled = true;
    var ready = state.submission ? Promise.resolve(state.submission) : createSubmission();
    ready.then(function () {
      startSending(state.chosen.filter(function (c) { return !isReceived(c.file); }));
    }, function (error) {
      button.disabled = false;
      var message = messageFor(error.code) || error.message;
      if (error instanceof TypeError) {
        message = "We could not reach the server. Check your connection and try again.";
      }
      showErrors([{ field: error.field && $(error.field) ? error.field : null, message: message }]);
    });
  }

  // ---------------------------------------------------------------- hashing

  var worker = null;
  function startHashing(entries) {
    try {
      worker = new Worker("/u/static/hash-worker.js");
    } catch (e) {
      worker = null;
    }
    entries.forEach(function (entry, index) {
      entry.hash = new Promise(function (resolve) {
        entry.resolveHash = resolve;
      });
      if (!worker) {
        entry.resolveHash(null);
        return;
      }
      worker.postMessage({ id: index, file: entry.file });
    });
    if (!worker) {
      return;
    }
    worker.onmessage = function (event) {
      var message = event.data;
      var entry = entries[message.id];
      if (!entry) {
        return;
      }
      if (message.type === "done") {
        entry.resolveHash(message.sha256);
      } else if (message.type === "error") {
        entry.resolveHash(null);
      }
    };
    worker.onerror = function (event) {
      // The check in the browser is extra; the server's own hash is the record. Without
      // a worker (or WebAssembly) the receipt says the browser check was not done.
      event.preventDefault();
      entries.forEach(function (entry) { entry.resolveHash(null); });
    };
  }

  function sendClientHash(entry, attempt) {
    return entry.hash.then(function (digest) {
      if (!digest) {
        return null;
      }
      return jsonRequest("POST", entry.url + "/client-sha256", { sha256: digest }).then(function (result) {
        if (result.ok) {
          return result.json.match === true;
        }
        if (result.status >= 500 && attempt < 5) {
          throw new Error("retry");
        }
        return null;
      }).catch(function () {
        if (attempt >= 5) {
          return null;
        }
        return new Promise(function (resolve) {
          window.setTimeout(resolve, 1000 * (attempt + 1));
        }).then(function () { return sendClientHash(entry, attempt + 1); });
      });
    });
  }

  // ---------------------------------------------------------------- sending

  function renderProgressList(entries) {
    var list = $("progress-list");
    list.textContent = "";
    entries.forEach(function (entry, index) {
      var item = el("li");
      var name = el("span", "file-name", entry.file.name);
      name.id = "file-" + index + "-name";
      var bar = el("progress");
      bar.max = 100;
      bar.value = 0;
      bar.id = "file-" + index + "-progress";
      bar.setAttribute("aria-labelledby", name.id);
      var text = el("span", "file-state", "Waiting to send. " + formatBytes(entry.file.size) + ".");
      text.id = "file-" + index + "-state";
      bar.setAttribute("aria-describedby", text.id);
      item.appendChild(name);
      item.appendChild(bar);
      item.appendChild(text);
      list.appendChild(item);
      entry.bar = bar;
      entry.text = text;
    });
  }

  function setEntryText(entry, text, className) {
    entry.text.textContent = text;
    entry.text.classList.remove("is-done", "is-error");
    if (className) {
      entry.text.classList.add(className);
    }
  }

  function updateOverall() {
    var sent = state.entries.reduce(function (sum, entry) { return sum + (entry.sent || 0); }, 0);
    var percent = state.totalBytes ? Math.floor((sent / state.totalBytes) * 100) : 100;
    $("overall-progress").value = percent;
    $("overall-progress").textContent = percent + "%";
    var done = state.entries.filter(function (e) { return e.status === "done"; }).length;
    $("overall-text").textContent = formatBytes(sent) + " of " + formatBytes(state.totalBytes) + " sent (" +
      percent + "%). " + done + " of " + plural(state.entries.length, "file", "files") + " complete." +
      (state.paused ? " Paused." : "");
    // Announce only at each quarter: a screen reader reading every percent is unusable.
    var quarter = Math.floor(percent / 25);
    if (quarter > state.announcedQuarter && percent < 100) {
      state.announcedQuarter = quarter;
      announce(percent + "% sent.");
    }
  }

  function describeTusError(error) {
    var response = error && error.originalResponse;
    var status = response ? response.getStatus() : 0;
    var code = "";
    if (response) {
      try {
        code = errorCode(JSON.parse(response.getBody() || "{}"));
      } catch (e) {
        code = "";
      }
    }
    return { status: status, code: code };
  }

  function uploadOne(entry) {
    return new Promise(function (resolve) {
      var upload = new window.tus.Upload(entry.file, {
        endpoint: ENDPOINT,
        chunkSize: CHUNK_BYTES,
        retryDelays: RETRY_DELAYS,
        metadata: {
          filename: entry.file.name,
          filetype: entry.file.type || "application/octet-stream",
          submission: state.submission.id
        },
        // One fingerprint per link, submission and file: reopening the link and choosing
        // the same file finds the unfinished upload and continues it.
        fingerprint: function (file) {
          return Promise.resolve(["exhibit", LINK_KEY, state.submission.id, file.name, file.type,
            file.size, file.lastModified].join("/"));
        },
        storeFingerprintForResuming: true,
        removeFingerprintOnSuccess: true,
        onProgress: function (sent, total) {
          entry.sent = sent;
          var percent = total ? Math.floor((sent / total) * 100) : 100;
          entry.bar.value = percent;
          entry.bar.textContent = percent + "%";
          setEntryText(entry, formatBytes(sent) + " of " + formatBytes(total) + " sent (" + percent + "%).");
          updateOverall();
        },
        onChunkComplete: function (chunkSize, accepted) {
          // Bytes the server has acknowledged (durable there): a hook for tests and
          // for anyone inspecting the page.
          entry.bar.setAttribute("data-acked-bytes", String(accepted));
        },
        onSuccess: function () {
          entry.url = upload.url;
          resolve(true);
        },
        onError: function (error) {
          var info = describeTusError(error);
          if (info.status >= 400 && info.status < 500 && info.status !== 409 && info.status !== 423 && info.status !== 429) {
            // Refused for a reason retrying cannot fix: say why, and go on to the next file.
            entry.status = "failed";
            entry.reason = messageFor(info.code) || "This file could not be sent.";
            resolve(false);
            return;
          }
          // Connection lost for longer than the automatic retries: keep trying.
          setEntryText(entry, "Waiting for a connection. Sending will carry on by itself.", "is-error");
          announce("Connection lost. Sending will carry on when you are back online.");
          scheduleRetry();
        }
      });
      entry.upload = upload;
      upload.findPreviousUploads().then(function (previous) {
        if (previous.length) {
          upload.resumeFromPreviousUpload(previous[0]);
        }
        if (!state.paused) {
          upload.start();
        }
      });
    });
  }

  var retryTimer = null;
  function scheduleRetry() {
    window.clearTimeout(retryTimer);
    retryTimer = window.setTimeout(retryNow, 30000);
  }

  function retryNow() {
    window.clearTimeout(retryTimer);
    var entry = state.current;
    if (entry && entry.upload && !state.paused && entry.status === "sending") {
      entry.upload.start();
    }
  }

  window.addEventListener("online", retryNow);

  function togglePause() {
    var button = $("pause");
    var entry = state.current;
    if (!state.paused) {
      state.paused = true;
      if (entry && entry.upload) {
        entry.upload.abort(); // keeps the upload on the server; start() carries on
      }
      button.textContent = "Resume";
      announce("Paused. Select Resume to carry on.");
    } else {
      state.paused = false;
      button.textContent = "Pause";
      announce("Sending again.");
      retryNow();
    }
    updateOverall();
  }

  function startSending(choices) {
    state.entries = choices.map(function (c) {
      return { file: c.file, sent: 0, status: "waiting" };
    });
    state.totalBytes = state.entries.reduce(function (s, e) { return s + e.file.size; }, 0);
    form.hidden = true;
    $("resume-notice").hidden = true;
    $("limits-panel").hidden = true;
    $("progress-section").hidden = false;
    renderProgressList(state.entries);
    updateOverall();
    var heading = $("progress-heading");
    heading.focus();
    announce("Sending " + plural(state.entries.length, "file", "files") + ".");
    $("pause").addEventListener("click", togglePause);
    startHashing(state.entries);

    var chain = Promise.resolve();
    state.entries.forEach(function (entry) {
      chain = chain.then(function () {
        state.current = entry;
        entry.status = "sending";
        setEntryText(entry, "Sending…");
        return uploadOne(entry).then(function (ok) {
          if (!ok) {
            // Its bytes may all have gone out before it was refused: a full bar would say
            // "received" when nothing was.
            entry.sent = 0;
            entry.bar.hidden = true;
            setEntryText(entry, "Not sent. " + entry.reason, "is-error");
            announce(entry.file.name + " was not sent.");
            return null;
          }
          entry.sent = entry.file.size;
          entry.bar.value = 100;
          setEntryText(entry, "Received. Checking it arrived unchanged…");
          return sendClientHash(entry, 0).then(function (match) {
            entry.status = "done";
            entry.match = match;
            setEntryText(entry, match === true ? "Received, and it arrived unchanged." :
              match === false ? "Received, but the copy does not match the file on your device. The officer will be told." :
                "Received.", match === false ? "is-error" : "is-done");
            updateOverall();
            announce(entry.file.name + " received.");
          });
        });
      });
    });
    chain.then(finish);
  }

  function finish() {
    var failed = state.entries.filter(function (e) { return e.status === "failed"; });
    var receipt = "/u/receipt/" + encodeURIComponent(state.submission.status_token);
    $("pause").hidden = true;
    if (worker) {
      worker.terminate();
    }
    if (failed.length === 0) {
      storage.removeItem(SUBMISSION_KEY);
      announce("All files sent. Opening your receipt.");
      window.location.assign(receipt);
      return;
    }
    // Sending is over: nothing to keep the page open for, nothing to pause.
    $("progress-intro").hidden = true;
    $("pause-hint").hidden = true;
    var heading = $("progress-heading");
    var section = $("progress-section");
    var outcome = el("p", "", "");
    outcome.id = "progress-outcome";
    if (failed.length === state.entries.length) {
      // Nothing arrived: say so plainly, with no progress bar, no receipt and no talk of
      // files being checked (issue 17.7).
      $("overall").hidden = true;
      heading.textContent = "Nothing was received";
      outcome.textContent = (state.entries.length === 1 ? "Your file was not sent" : "None of your files were sent") +
        ", so the police do not have " + (state.entries.length === 1 ? "it" : "them") +
        ". The reason is given below. Choose the original photo or video files and try again, or contact the officer dealing with report " +
        REPORT_REFERENCE + ".";
      section.insertBefore(outcome, heading.nextSibling);
      var again = el("a", "button", "Try again");
      again.href = "/u/";
      section.appendChild(again);
      heading.focus();
      announce("Nothing was received. " + outcome.textContent);
      return;
    }
    heading.textContent = plural(failed.length, "file was", "files were") + " not sent";
    outcome.textContent = "The other " + plural(state.entries.length - failed.length, "file was", "files were") +
      " received. The reason each file was not sent is given below.";
    section.insertBefore(outcome, heading.nextSibling);
    var link = el("a", "button", "See your receipt");
    link.href = receipt;
    section.appendChild(link);
    heading.focus();
    announce(plural(failed.length, "file was", "files were") + " not sent. The others were received.");
  }

  // ---------------------------------------------------------------- start

  form.noValidate = true; // our messages, tied to each field, replace the browser's bubbles
  form.addEventListener("submit", onSubmit);
  setUpPickers();
  $("resume-new").addEventListener("click", startAfresh);
  checkSaved();
})();
