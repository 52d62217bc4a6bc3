// Shared by every console page: the CSRF token on every request a script or htmx sends, and small
// helpers to send a form and follow a job. No inline script anywhere (the CSP forbids it).
"use strict";

(function () {
  const token = () => document.querySelector('meta[name="csrf-token"]').content;

  document.addEventListener("htmx:configRequest", (event) => {
    event.detail.headers["X-CSRFToken"] = token();
  });

  async function answer(response) {
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const error = body.error || {};
      throw Object.assign(new Error(error.message || `The server answered ${response.status}.`), { code: error.code });
    }
    return body;
  }

  async function post(url, formData) {
    const response = await fetch(url, {
      method: "POST",
      body: formData,
      credentials: "same-origin",
      headers: { "X-CSRFToken": token(), Accept: "application/json" },
    });
    return answer(response);
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    return answer(response);
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Poll until the job ends (succeeded or failed); `onUpdate` sees each state.
  async function followJob(statusUrl, onUpdate) {
    for (;;) {
      const job = await getJSON(statusUrl);
      if (onUpdate) onUpdate(job);
      if (job.status === "succeeded" || job.status === "failed") return job;
      await sleep(700);
    }
  }

  // x1,y1,x2,y2 (the API's boxes) as the x,y,w,h that target_face takes.
  const targetFace = (box) =>
    [box[0], box[1], box[2] - box[0], box[3] - box[1]].map((v) => Math.round(v)).join(",");

  // Buttons over an image, one per box (positions in % of the photo, so they follow its size).
  function boxButtons(figure, img, boxes, label, onChoose) {
    figure.querySelectorAll(".box").forEach((node) => node.remove());
    const width = img.naturalWidth, height = img.naturalHeight;
    return boxes.map((box, index) => {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "box";
      button.style.left = `${(100 * box[0]) / width}%`;
      button.style.top = `${(100 * box[1]) / height}%`;
      button.style.width = `${(100 * (box[2] - box[0])) / width}%`;
      button.style.height = `${(100 * (box[3] - box[1])) / height}%`;
      button.setAttribute("aria-label", label(index));
      button.addEventListener("click", () => onChoose(index, button));
      figure.appendChild(button);
      return button;
    });
  }

  function imageLoaded(img) {
    return img.complete && img.naturalWidth
      ? Promise.resolve()
      : new Promise((resolve, reject) => {
          img.addEventListener("load", resolve, { once: true });
          img.addEventListener("error", reject, { once: true });
        });
  }

  window.Console = { post, getJSON, followJob, targetFace, boxButtons, imageLoaded, sleep };
})();
