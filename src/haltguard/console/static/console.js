// Live updates for the haltguard console: one server-sent-events connection per page; on each
// "change" the page fetches its live fragments again (each a normal, permission-checked
// request) and swaps them in. A region holding the operator's focus is refreshed once the
// focus leaves it, so nothing being typed is lost. No other script runs on these pages.
(function () {
  "use strict";
  var regions = Array.prototype.slice.call(document.querySelectorAll("[data-live-src]"));
  var indicator = document.getElementById("live-status");
  if (!regions.length || !window.EventSource) { return; }
  var busy = false;
  var again = false;
  var deferred = [];

  function show(on) {
    if (!indicator) { return; }
    indicator.textContent = on ? indicator.dataset.on : indicator.dataset.off;
    indicator.className = on ? "live on" : "live off";
  }

  function swap(region) {
    return fetch(region.dataset.liveSrc, { credentials: "same-origin", cache: "no-store" })
      .then(function (response) {
        if (response.status === 401) { window.location.href = "/console/login?notice=not_logged_in"; return; }
        if (!response.ok) { return; }
        return response.text().then(function (html) {
          if (region.contains(document.activeElement)) {
            if (deferred.indexOf(region) < 0) { deferred.push(region); }
            return;
          }
          region.innerHTML = html;
          region.dataset.refreshedAt = String(Date.now());
        });
      });
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    Promise.all(regions.map(swap)).catch(function () { show(false); }).then(function () {
      busy = false;
      if (again) { again = false; refresh(); }
    });
  }

  document.addEventListener("focusout", function () {
    window.setTimeout(function () {
      var waiting = deferred;
      deferred = [];
      waiting.forEach(function (region) { swap(region); });
    }, 0);
  });

  var source = new EventSource("/console/events");
  // The page may have been drawn just before this connection: catch up once on connecting.
  source.addEventListener("hello", function () { show(true); refresh(); });
  source.addEventListener("change", function (event) {
    document.body.dataset.liveVersion = event.data;
    refresh();
  });
  source.addEventListener("full", function () { show(false); source.close(); });
  source.onerror = function () { show(false); };
  source.onopen = function () { show(true); };
})();
