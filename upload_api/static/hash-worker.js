/* SHA-256 of the citizen's files, off the main thread, so that the page stays responsive
   while a multi-gigabyte video is hashed on a phone.

   Streaming: each file is read in slices (File.slice + arrayBuffer), so memory stays at one
   slice whatever the file size. hash-wasm compiles a small WebAssembly module; the page's
   CSP allows that with 'wasm-unsafe-eval' (not 'unsafe-eval').

   Messages in:  {id, file}
   Messages out: {id, type: "progress", done, total}
                 {id, type: "done", sha256}
                 {id, type: "error", message}
   Files are hashed one at a time, in the order they arrive. */
"use strict";

importScripts("vendor/hash-wasm-sha256.umd.min.js");

var SLICE_BYTES = 8 * 1024 * 1024;
var queue = [];
var busy = false;

function hashOne(job) {
  var file = job.file;
  var total = file.size;
  var offset = 0;
  var lastReport = 0;
  return self.hashwasm.createSHA256().then(function (hasher) {
    hasher.init();
    function next() {
      if (offset >= total) {
        return hasher.digest("hex");
      }
      var end = Math.min(offset + SLICE_BYTES, total);
      return file.slice(offset, end).arrayBuffer().then(function (buffer) {
        hasher.update(new Uint8Array(buffer));
        offset = end;
        // At most one progress message per 64 MiB: the page does not need more.
        if (offset - lastReport >= 64 * 1024 * 1024 || offset === total) {
          lastReport = offset;
          self.postMessage({ id: job.id, type: "progress", done: offset, total: total });
        }
        return next();
      });
    }
    return next();
  });
}

function pump() {
  if (busy || queue.length === 0) {
    return;
  }
  busy = true;
  var job = queue.shift();
  hashOne(job).then(
    function (digest) {
      self.postMessage({ id: job.id, type: "done", sha256: digest });
    },
    function (error) {
      self.postMessage({ id: job.id, type: "error", message: String(error && error.message || error) });
    }
  ).then(function () {
    busy = false;
    pump();
  });
}

self.onmessage = function (event) {
  var data = event.data || {};
  if (data.file && data.id !== undefined) {
    queue.push({ id: data.id, file: data.file });
    pump();
  }
};
