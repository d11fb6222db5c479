// turnout console: the little the pages need beyond htmx, loaded as a file (the page's
// Content-Security-Policy allows no inline script). Pages work without it.
"use strict";
document.addEventListener("click", function (event) {
  const button = event.target.closest("button[data-copy]");
  if (button) {
    const field = document.getElementById(button.dataset.copy);
    field.select();
    const done = function () {
      const note = document.getElementById(button.dataset.copy + "-copied");
      if (note) { note.hidden = false; }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(done, function () {
        document.execCommand("copy"); done();
      });
    } else {
      document.execCommand("copy"); done();
    }
    return;
  }
  const confirmed = event.target.closest("button[data-confirm]");
  if (confirmed && !window.confirm(confirmed.dataset.confirm)) {
    event.preventDefault();
  }
});
