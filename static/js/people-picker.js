// The people choice on an app's admin page (templates/admin/app.html): typing in the
// search box hides the people whose address or name does not match, and the line under
// it says how many are shown and how many are ticked. Without JavaScript the whole list
// shows and the form works the same. The words come from data-* attributes (translated
// templates); no inline script (the CSP says script-src 'self').
(function () {
  "use strict";

  document.querySelectorAll("[data-people-picker]").forEach(function (picker) {
    var filter = picker.querySelector(".people-filter");
    var shownText = picker.querySelector(".people-shown");
    var chosenText = picker.querySelector(".people-chosen");
    var choices = Array.prototype.slice.call(picker.querySelectorAll(".people-choice"));
    if (!filter || !shownText || !chosenText) return;
    var allText = shownText.textContent;
    var shownWords = filter.dataset.countWords || "{shown} / {total}";
    var chosenWords = chosenText.dataset.words || "{count}";

    function update() {
      var wanted = filter.value.trim().toLowerCase();
      var shown = 0;
      choices.forEach(function (choice) {
        var match = !wanted || (choice.dataset.search || "").indexOf(wanted) >= 0;
        choice.hidden = !match;
        if (match) shown += 1;
      });
      shownText.textContent = wanted
        ? shownWords.replace("{shown}", String(shown)).replace("{total}", String(choices.length))
        : allText;
    }

    function countChosen() {
      var ticked = picker.querySelectorAll("input[name=people]:checked").length;
      chosenText.textContent = chosenWords.replace("{count}", String(ticked));
    }

    filter.addEventListener("input", update);
    picker.addEventListener("change", countChosen);
    // Enter in the search box filters; it must not send the form.
    filter.addEventListener("keydown", function (event) {
      if (event.key === "Enter") event.preventDefault();
    });
  });
})();
