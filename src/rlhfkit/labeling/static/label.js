/* rlhfkit labeling: time on task (and its clock in the header), double-submit guard, keyboard
   shortcuts, the instructions dialog (i), and a demonstration's character count and autosaved draft.
   Plain JavaScript loaded from this origin (the CSP forbids inline script and eval).
   It never builds HTML from strings: it only sets form values, text and classes. */
(function () {
  "use strict";

  function onReady(fn) {
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", fn);
    else fn();
  }

  onReady(function () {
    var form = document.getElementById("task");
    if (!form) return;
    var kind = form.getAttribute("data-kind");

    // Time on task: counted only while the page is visible.
    var activeMs = 0;
    var since = document.hidden ? null : performance.now();
    document.addEventListener("visibilitychange", function () {
      if (document.hidden && since !== null) { activeMs += performance.now() - since; since = null; }
      else if (!document.hidden && since === null) { since = performance.now(); }
    });
    function activeSeconds() {
      return (activeMs + (since === null ? 0 : performance.now() - since)) / 1000;
    }
    var clockBox = document.querySelector(".timer"), clock = document.getElementById("timer");
    function tick() {
      var s = Math.floor(activeSeconds());
      clock.textContent = Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
    }
    if (clockBox && clock) { clockBox.hidden = false; tick(); setInterval(tick, 1000); }

    // The project's instructions: a modal dialog, opened and closed with i (Esc closes it too).
    var dialog = document.getElementById("instructions");
    var opener = document.getElementById("show-instructions");
    function toggleInstructions() {
      if (dialog.open) dialog.close();
      else dialog.showModal();
    }
    if (dialog && opener) opener.addEventListener("click", function (ev) { ev.preventDefault(); toggleInstructions(); });

    var sent = false;
    form.addEventListener("submit", function (ev) {
      if (sent) { ev.preventDefault(); return; }  // the client key makes a resend harmless; this spares the server
      form.elements.namedItem("active_seconds").value = activeSeconds().toFixed(3);
      sent = true;
    });
    window.addEventListener("pageshow", function () { sent = false; });

    function submit(button) {
      if (typeof form.requestSubmit === "function") form.requestSubmit(button || undefined);
      else if (button) button.click();
      else form.submit();
    }

    var handlers = {
      ranking: rankingKeys(form, submit),
      pairwise: pairwiseKeys(form, submit),
      rating: formKeys(form, submit),
      demonstration: demonstrationKeys(form, submit),
      thumbs: thumbsKeys(form, submit)
    };
    // a screening's self-assessment is a form of likert questions (comfort 1-5 per topic)
    var handle = handlers[kind === "self-assessment" ? "rating" : kind];

    document.addEventListener("keydown", function (ev) {
      if (dialog && dialog.open) {  // no task key acts behind the instructions
        if (ev.key === "i" && !ev.ctrlKey && !ev.metaKey && !ev.altKey) { ev.preventDefault(); dialog.close(); }
        return;
      }
      var t = ev.target;
      var typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && /^(text|password|number|)$/.test(t.type)));
      if (typing) {
        if (ev.key === "Escape") t.blur();
        else if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); submit(); }
        return;
      }
      if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
      if (ev.key === "i" && dialog) { ev.preventDefault(); toggleInstructions(); return; }
      if (handle && handle(ev)) ev.preventDefault();
    });
  });

  function rankingKeys(form, submit) {
    var cards = Array.prototype.slice.call(form.querySelectorAll("li.response"));
    var k = cards.length;
    var at = 0;
    function focus(i) {
      at = Math.max(0, Math.min(k - 1, i));
      cards.forEach(function (c, j) { c.classList.toggle("focus", j === at); });
      cards[at].scrollIntoView({ block: "nearest" });
    }
    cards.forEach(function (c, j) { c.addEventListener("click", function () { focus(j); }); });
    if (k) focus(0);
    return function (ev) {
      if (ev.key === "j" || ev.key === "ArrowDown") { focus(at + 1); return true; }
      if (ev.key === "k" || ev.key === "ArrowUp") { focus(at - 1); return true; }
      if (/^[1-9]$/.test(ev.key) && Number(ev.key) <= k) {
        cards[at].querySelector("select").value = ev.key;
        focus(at + 1);
        return true;
      }
      if (ev.key === "Enter") { submit(); return true; }
      return false;
    };
  }

  function pairwiseKeys(form, submit) {
    var keys = { "1": "A", "a": "A", "ArrowLeft": "A", "2": "B", "b": "B", "ArrowRight": "B",
                 "3": "tie", "t": "tie", "=": "tie", "4": "cant_tell", "c": "cant_tell", "0": "cant_tell" };
    return function (ev) {
      if (ev.key === "r") {
        Array.prototype.forEach.call(form.querySelectorAll("video"), function (v) { v.currentTime = 0; v.play(); });
        return true;
      }
      var choice = keys[ev.key];
      if (!choice) return false;
      submit(form.querySelector('button[name="choice"][value="' + choice + '"]'));
      return true;
    };
  }

  // Thumbs (kind_thumbs.py): u/1 up, d/2 down, c/3 can't tell pick the answer; Enter submits it.
  function thumbsKeys(form, submit) {
    var keys = { "u": "up", "1": "up", "d": "down", "2": "down", "c": "cant_tell", "3": "cant_tell" };
    return function (ev) {
      if (ev.key === "Enter") { submit(); return true; }
      var thumb = keys[ev.key.length === 1 ? ev.key.toLowerCase() : ev.key];
      if (!thumb) return false;
      form.querySelector('input[name="thumb"][value="' + thumb + '"]').checked = true;
      return true;
    };
  }

  // A rating form (forms.py): likert and choice questions take turns having the focus (j/k or the
  // arrows move it); a key shown beside an option picks it in the focused question and moves on;
  // each flag has a letter; n goes to the next text box; Enter submits.
  function formKeys(form, submit) {
    var questions = Array.prototype.slice.call(form.querySelectorAll("fieldset.field.likert, fieldset.field.choice"));
    var texts = Array.prototype.slice.call(form.querySelectorAll("textarea"));
    var at = 0, lastText = -1;
    function focus(i) {
      if (!questions.length) return;
      at = Math.max(0, Math.min(questions.length - 1, i));
      questions.forEach(function (q, j) { q.classList.toggle("focus", j === at); });
      questions[at].scrollIntoView({ block: "nearest" });
    }
    questions.forEach(function (q, j) {
      q.addEventListener("click", function () { focus(j); });
      q.addEventListener("focusin", function () { focus(j); });
    });
    focus(0);
    return function (ev) {
      var many = questions.length > 1;
      if (many && (ev.key === "j" || ev.key === "ArrowDown")) { focus(at + 1); return true; }
      if (many && (ev.key === "k" || ev.key === "ArrowUp")) { focus(at - 1); return true; }
      if (ev.key === "n" && texts.length) { lastText = (lastText + 1) % texts.length; texts[lastText].focus(); return true; }
      if (ev.key === "Enter") { submit(); return true; }
      if (ev.key.length !== 1) return false;
      var key = ev.key.toLowerCase();
      var option = questions.length ? questions[at].querySelector('input[data-key="' + key + '"]') : null;
      if (option) { option.checked = true; focus(at + 1); return true; }
      var box = form.querySelector('input[type=checkbox][data-key="' + key + '"]');
      if (box) { box.checked = !box.checked; return true; }
      return false;
    };
  }

  // A demonstration: the count of characters as the server counts them (kinds.demonstration_text),
  // and the draft saved as the labeler types (taskpages.py), so that a reload loses nothing.
  function demonstrationKeys(form, submit) {
    var box = form.querySelector("textarea[name=text]");
    if (!box) return null;
    var count = document.getElementById("char-count"), status = document.getElementById("draft-status");
    var min = Number(form.getAttribute("data-min") || 0);
    var url = "/api/v1/items/" + form.getAttribute("data-item") + "/draft";
    var csrf = form.elements.namedItem("csrf").value;
    var saved = box.value, timer = null, inflight = false, again = false, done = false;

    function written() { return box.value.replace(/\r\n?/g, "\n").replace(/^([ \t]*\n)+/, "").replace(/\s+$/, ""); }
    function showCount() {
      var n = Array.from(written()).length;
      count.textContent = n + (n === 1 ? " character" : " characters");
      count.classList.toggle("short", n < min);
    }
    function later(ms) { clearTimeout(timer); timer = setTimeout(save, ms); }
    function save(leaving) {
      if (done || box.value === saved) return;
      if (inflight && !leaving) { again = true; return; }
      var text = box.value;
      inflight = true;
      status.textContent = "Saving draft…";
      fetch(url, { method: "POST", credentials: "same-origin", keepalive: leaving === true,
                   headers: { "content-type": "application/json", "x-csrf-token": csrf },
                   body: JSON.stringify({ text: text }) })
        .then(function (r) {
          if (r.ok) { saved = text; status.textContent = "Draft saved."; return; }
          status.textContent = "Draft not saved (HTTP " + r.status + ").";
          if (r.status >= 500 || r.status === 429) later(5000);
        }, function () { status.textContent = "Draft not saved (offline?); retrying."; later(5000); })
        .then(function () { inflight = false; if (again) { again = false; later(0); } });
    }
    box.addEventListener("input", function () { showCount(); later(700); });
    form.addEventListener("submit", function () { done = true; clearTimeout(timer); });
    window.addEventListener("pagehide", function () { save(true); });
    showCount();
    return function (ev) {
      if (ev.key === "w" || ev.key === "Enter") {
        box.focus();
        box.setSelectionRange(box.value.length, box.value.length);
        return true;
      }
      return false;
    };
  }
})();
