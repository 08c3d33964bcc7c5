// The bordereau's print button (the page's own print style sheet lays it out).
(function () {
  var button = document.getElementById("print");
  if (button) { button.addEventListener("click", function () { window.print(); }); }
})();
