// hookline web page: progressive enhancements only; every page works without this file.
// Loaded from /static (the Content-Security-Policy allows no inline script).
"use strict";

// Copy buttons: <button data-copy="element-id"> copies that element's text.
function setUpCopyButtons() {
  for (const button of document.querySelectorAll("button[data-copy]")) {
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy);
      if (!source) return;
      const text = source.textContent.trim();
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch (err) {
        // No clipboard access (an insecure context, or permission refused): select the text instead.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      button.classList.add("done");
    });
  }
}

// Live sections: <section id="deliveries" data-live="1"> is re-fetched every 2 s (for at most
// 2 minutes) while the server marks it live: a test just sent, a redelivery queued, retries pending.
function setUpLiveSection() {
  const section = document.querySelector("#deliveries[data-live]");
  if (!section) return;
  let polls = 0;
  const timer = window.setInterval(async () => {
    polls += 1;
    if (polls > 60) {
      window.clearInterval(timer);
      return;
    }
    try {
      const response = await fetch(window.location.href, {
        credentials: "same-origin",
        headers: { Accept: "text/html" },
        cache: "no-store",
      });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("deliveries");
      const current = document.getElementById("deliveries");
      if (!fresh || !current) return;
      current.replaceChildren(...Array.from(fresh.childNodes).map((n) => document.importNode(n, true)));
      if (!fresh.hasAttribute("data-live")) {
        current.removeAttribute("data-live");
        window.clearInterval(timer);
      }
    } catch (err) {
      // The server is restarting or the network blipped: try again at the next tick.
    }
  }, 2000);
}

document.addEventListener("DOMContentLoaded", () => {
  setUpCopyButtons();
  setUpLiveSection();
});
