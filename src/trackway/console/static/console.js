// The console's little script: the live tail, copy buttons, builder rows, the range picker.
// Every page works without it; it only saves clicks.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  // Live tail: reload the newest events every 3 s until paused (or the tab is hidden).
  const tail = document.getElementById("tail");
  const toggle = document.getElementById("tail-toggle");
  const state = document.getElementById("tail-state");
  if (tail && toggle) {
    let paused = false;
    const refresh = async () => {
      if (paused || document.hidden) return;
      try {
        const response = await fetch(tail.dataset.tailUrl, { credentials: "same-origin", cache: "no-store" });
        if (response.status === 401) { window.location.reload(); return; }
        if (response.ok) {
          tail.innerHTML = await response.text();
          tail.dataset.refreshed = String(Date.now());
        }
      } catch (error) { /* the next tick tries again */ }
    };
    setInterval(refresh, 3000);
    toggle.addEventListener("click", () => {
      paused = !paused;
      toggle.textContent = paused ? "Resume" : "Pause";
      toggle.setAttribute("aria-pressed", String(paused));
      state.textContent = paused ? "Paused." : "Refreshing every 3 seconds.";
      if (!paused) refresh();
    });
  }

  // Copy buttons: data-copy names the element whose text is copied.
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const text = document.getElementById(button.dataset.copy).textContent;
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (error) {
        const range = document.createRange();
        range.selectNodeContents(document.getElementById(button.dataset.copy));
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  });

  // Builders: "Add" clones the last row, empty, with fresh ids for its labels.
  document.querySelectorAll("[data-add-row]").forEach((button) => {
    button.addEventListener("click", () => {
      const rows = button.parentElement.querySelector("[data-rows]");
      const last = rows.querySelector("[data-row]:last-of-type");
      const copy = last.cloneNode(true);
      const n = rows.querySelectorAll("[data-row]").length + 1;
      copy.querySelectorAll("label").forEach((label) => {
        label.htmlFor = label.htmlFor.replace(/-\d+$/, "-" + n);
        if (/^Step \d+/.test(label.textContent)) label.textContent = label.textContent.replace(/\d+/, n);
      });
      copy.querySelectorAll("input, select").forEach((field) => {
        field.id = field.id.replace(/-\d+$/, "-" + n);
        if (field.tagName === "INPUT") field.value = "";
      });
      rows.appendChild(copy);
      copy.querySelector("input").focus();
    });
  });

  // Condition rows: the "Condition" list offers the trait or the event choices, as the kind says.
  const fitConditions = (row) => {
    const kind = row.querySelector("select[name=kind]");
    const op = row.querySelector("select[name=op]");
    if (!kind || !op) return;
    const wanted = kind.value === "event" ? "Event" : "Trait";
    op.querySelectorAll("optgroup").forEach((group) => {
      group.disabled = group.label !== wanted;
      group.hidden = group.label !== wanted;
    });
    if (op.selectedOptions[0] && op.selectedOptions[0].parentElement.label !== wanted) {
      op.value = op.querySelector(`optgroup[label=${wanted}] option`).value;
    }
  };
  document.addEventListener("change", (event) => {
    if (event.target.matches("select[name=kind]")) fitConditions(event.target.closest("[data-row]"));
  });
  document.querySelectorAll("li.condition").forEach(fitConditions);

  // Range picker: typing a date makes the range custom.
  document.querySelectorAll("fieldset.range").forEach((fieldset) => {
    const select = fieldset.querySelector("[data-range]");
    fieldset.querySelectorAll("input[type=date]").forEach((input) => {
      input.addEventListener("change", () => { select.value = "custom"; });
    });
  });
});
