// Keyboard shortcuts and the taxon list; the pages work without this file, only slower.
"use strict";

function typing(event) {
  const el = event.target;
  return el && (el.tagName === "INPUT" || el.tagName === "SELECT" || el.tagName === "TEXTAREA");
}

function follow(id) {
  const link = document.getElementById(id);
  if (link) window.location.href = link.href;
}

function galleryKeys() {
  const cards = Array.from(document.querySelectorAll("#gallery .card"));
  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const at = cards.indexOf(document.activeElement);
    if (event.key === "j" && cards.length) cards[Math.min(at + 1, cards.length - 1)].focus();
    else if (event.key === "k" && cards.length) cards[Math.max(at - 1, 0)].focus();
    else if (event.key === "n") follow("older");
    else if (event.key === "p") follow("newer");
  });
}

function loadTaxa(list) {
  // One list for the whole session: the pack's taxonomy does not change while reviewing.
  const cached = sessionStorage.getItem("camtrap-taxa");
  const fill = (names) => {
    const frag = document.createDocumentFragment();
    for (const name of names) {
      const option = document.createElement("option");
      option.value = name;
      frag.appendChild(option);
    }
    list.replaceChildren(frag);
  };
  if (cached) return fill(JSON.parse(cached));
  fetch("/api/taxa", { credentials: "same-origin" })
    .then((r) => (r.ok ? r.json() : []))
    .then((names) => {
      sessionStorage.setItem("camtrap-taxa", JSON.stringify(names));
      fill(names);
    });
}

function eventKeys() {
  const form = document.getElementById("review");
  const taxon = document.getElementById("taxon");
  const count = document.getElementById("count");
  const links = Array.from(document.querySelectorAll("#strip a"));
  const full = document.getElementById("full");
  let frame = 0;
  const show = (i) => {
    if (!links.length || !full) return;
    frame = (i + links.length) % links.length;
    links.forEach((a, j) => a.classList.toggle("on", j === frame));
    full.src = links[frame].dataset.full;
  };
  links.forEach((a, i) =>
    a.addEventListener("click", (event) => {
      event.preventDefault();
      show(i);
    }),
  );
  const submit = (action) => {
    if (!form) return;
    const button = form.querySelector(`button[value="${action}"]`);
    if (button) form.requestSubmit(button);
  };
  if (taxon) {
    loadTaxa(document.getElementById("taxa"));
    taxon.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        if (taxon.value.trim()) submit("correct");
      } else if (event.key === "Escape") taxon.blur();
    });
  }
  document.addEventListener("keydown", (event) => {
    if (typing(event) || event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    const byKey = { c: "confirm", b: "blank", h: "human", v: "vehicle" };
    if (byKey[key] && form) {
      event.preventDefault();
      submit(byKey[key]);
    } else if ((key === "t" || key === "/") && taxon) {
      event.preventDefault();
      taxon.focus();
    } else if (/^[1-9]$/.test(key) && count) count.value = key;
    else if (key === "+" && count) count.value = String((parseInt(count.value, 10) || 0) + 1);
    else if (key === "-" && count) count.value = String(Math.max(1, (parseInt(count.value, 10) || 2) - 1));
    else if (key === "j" || key === "ArrowRight") follow("older");
    else if (key === "k" || key === "ArrowLeft") follow("newer");
    else if (key === "g") follow("back");
    else if (key === "]") show(frame + 1);
    else if (key === "[") show(frame - 1);
  });
}

const page = document.body.dataset.page;
if (page === "captures") galleryKeys();
if (page === "event") eventKeys();
