// kqueue console: keeps a page current. The server renders the page's live
// part again and sends it over server-sent events when it changed, as one
// JSON string; it is escaped HTML already, put in place as it came. A page where the user is
// choosing (a checked box, the search field being typed in) is left alone
// until they are done.
(function () {
  var path = document.body.getAttribute("data-live");
  var live = document.getElementById("live");
  if (!path || !live || !window.EventSource) return;
  var source = new EventSource("/events?path=" + encodeURIComponent(path));
  // Closed as the page goes (a browser has few connections per site).
  window.addEventListener("pagehide", function () { source.close(); });
  source.onmessage = function (e) {
    if (live.querySelector("input[type=checkbox]:checked")) return;
    var active = document.activeElement;
    if (active && live.contains(active) && active.tagName === "INPUT") return;
    live.innerHTML = JSON.parse(e.data);
  };
})();
