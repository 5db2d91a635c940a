
(function () {
  document.querySelectorAll("table.sortable").forEach(function (table) {
    table.querySelectorAll("th").forEach(function (th, column) {
      th.addEventListener("click", function () {
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        var numeric = th.classList.contains("num");
        var down = th.dataset.order !== "desc";
        rows.sort(function (a, b) {
          var x = a.cells[column], y = b.cells[column];
          var vx = numeric ? parseFloat((x.querySelector("[data-exact]") || x).dataset.exact ||
                                        x.textContent.replace(/[^0-9.-]/g, "")) || 0 : x.textContent;
          var vy = numeric ? parseFloat((y.querySelector("[data-exact]") || y).dataset.exact ||
                                        y.textContent.replace(/[^0-9.-]/g, "")) || 0 : y.textContent;
          return (vx < vy ? -1 : vx > vy ? 1 : 0) * (down ? -1 : 1);
        });
        rows.forEach(function (row) { body.appendChild(row); });
        th.dataset.order = down ? "desc" : "asc";
      });
    });
  });
  document.documentElement.dataset.charts = String(document.querySelectorAll("svg.chart-svg").length);
  document.documentElement.dataset.script = "ok";
})();
