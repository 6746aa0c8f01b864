// Hovering a layer highlights its line and its partner on the other side.
(function () {
  const links = Array.from(document.querySelectorAll("path.link"));
  function touch(side, index, on) {
    for (const link of links) {
      if (link.dataset[side] !== index) continue;
      link.classList.toggle("hl", on);
      for (const [key, prefix] of [["b", "b-"], ["r", "r-"]]) {
        const row = document.getElementById(prefix + link.dataset[key]);
        if (row) row.classList.toggle("hl", on);
      }
    }
  }
  for (const row of document.querySelectorAll(".tree .row")) {
    const [prefix, index] = row.id.split("-");
    row.addEventListener("mouseenter", () => touch(prefix, index, true));
    row.addEventListener("mouseleave", () => touch(prefix, index, false));
  }
  document.body.dataset.ready = "1";
})();
