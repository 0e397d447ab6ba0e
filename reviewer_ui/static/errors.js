/* Form errors (reviewer_ui/form_errors.py): the error summary takes focus when the page
   loads (autofocus does it too; this covers browsers that skip it), and each of its links
   focuses its field, opening a folded <details> around it and showing the field's label. */
(function () {
  "use strict";
  var summary = document.querySelector("[data-error-summary]");
  if (!summary) { return; }
  if (document.activeElement !== summary) { summary.focus(); }
  summary.addEventListener("click", function (event) {
    var link = event.target.closest("a[href^='#']");
    if (!link) { return; }
    var field = document.getElementById(link.getAttribute("href").slice(1));
    if (!field) { return; }
    event.preventDefault();
    var folded = field.closest("details");
    if (folded) { folded.open = true; }
    field.focus();
    var label = document.querySelector("label[for='" + field.id + "']");
    (label || field).scrollIntoView({ block: "center" });
  });
}());
