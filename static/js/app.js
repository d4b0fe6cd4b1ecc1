/* Behaviour every page may use, attached here instead of inline handlers (the
   Content-Security-Policy runs no inline script, audit/csp.py):
   - an element with data-print prints the page;
   - a form with data-confirm="question?" asks before it is sent;
   - an element with data-back goes back one page. */
(function () {
  "use strict";
  document.addEventListener("click", function (e) {
    var target = e.target.closest ? e.target.closest("[data-print], [data-back]") : null;
    if (!target) { return; }
    e.preventDefault();
    if (target.hasAttribute("data-print")) { window.print(); } else { window.history.back(); }
  });
  document.addEventListener("submit", function (e) {
    var question = e.target.getAttribute && e.target.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { e.preventDefault(); }
  });
})();
