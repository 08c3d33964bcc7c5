// The indicators' what-if: how many decisions of the recent sample a new automatic-link
// threshold would change, recomputed as the number changes (the form also works without it).
(function () {
  var form = document.getElementById("whatif");
  if (!form) { return; }
  var sample = JSON.parse(form.dataset.sample || "[]");
  var current = parseFloat(form.dataset.current);
  var scale = parseFloat(form.dataset.scale);
  var input = document.getElementById("auto");
  var count = document.querySelector("#changed strong");
  var line = document.getElementById("proposed-line");
  function nines(p) { return p >= 1 ? 8 : Math.min(8, Math.max(0, -Math.log10(1 - p))); }
  input.addEventListener("input", function () {
    var proposed = parseFloat(input.value);
    if (!(proposed >= 0.5 && proposed < 1)) { return; }
    var changed = 0;
    for (var i = 0; i < sample.length; i++) {
      if ((sample[i] >= current) !== (sample[i] >= proposed)) { changed++; }
    }
    count.textContent = String(changed);
    var x = nines(proposed) * scale;
    line.setAttribute("x1", x); line.setAttribute("x2", x);
  });
})();
