// Draws the share page's charts from the JSON block the server wrote. It lives in a file (or is
// allowed by hash in an exported page) so the Content-Security-Policy can refuse every other script.
(function () {
  "use strict";
  var block = document.getElementById("share-charts");
  if (!block || typeof Plotly === "undefined") return;
  var charts = JSON.parse(block.textContent);
  Object.keys(charts).forEach(function (id) {
    var el = document.getElementById(id);
    if (!el) return;
    var fig = charts[id];
    Plotly.newPlot(el, fig.data || [], fig.layout || {}, {displaylogo: false, responsive: true});
  });
})();
