// The people choice on an app's admin page (templates/admin/app.html): typing in the
// search box hides the people whose address or name does not match, and the count under
// it says how many are shown and chosen. Without JavaScript the whole list shows and the
// form works the same. The words come from data-* attributes (translated templates).
(function () {
  "use strict";

  document.querySelectorAll("[data-people-picker]").forEach(function (picker) {
    var filter = picker.querySelector(".people-filter");
    var count = picker.querySelector(".people-count");
    var choices = Array.prototype.slice.call(picker.querySelectorAll(".people-choice"));
    if (!filter || !count) return;
    var words = filter.dataset.countWords || "{shown} / {total}";

    function update() {
      var wanted = filter.value.trim().toLowerCase();
      var shown = 0;
      choices.forEach(function (choice) {
        var match = !wanted || (choice.dataset.search || "").indexOf(wanted) >= 0;
        choice.hidden = !match;
        if (match) shown += 1;
      });
      if (wanted) {
        count.textContent = words
          .replace("{shown}", String(shown))
          .replace("{total}", String(choices.length));
      }
    }

    filter.addEventListener("input", update);
    // Enter in the search box filters; it must not send the form.
    filter.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault();
    });
  });
})();
