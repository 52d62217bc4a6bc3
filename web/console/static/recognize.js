// The recognize page: a photo is sent as a recognition job; its faces are drawn over the photo
// with the name and similarity of the best match, and the threshold used. An unmatched face can
// be enrolled from here (the browser still has the photo: it is sent again with the face's box).
"use strict";

(function () {
  const form = document.getElementById("recognize-form");
  if (!form) return;
  const errorLine = document.getElementById("recognize-error");
  const figure = document.getElementById("photo");
  const img = document.getElementById("photo-img");
  const list = document.getElementById("faces");
  const summary = document.getElementById("result-summary");
  const enrollForm = document.getElementById("enroll-face");
  let photo = null;
  let chosenBox = null;

  function fail(message) {
    errorLine.textContent = message;
    errorLine.hidden = false;
  }

  function personLink(personId, text) {
    const link = document.createElement("a");
    link.href = `${form.dataset.personUrl}${personId}`;
    link.textContent = text;
    return link;
  }

  async function recognize(file) {
    errorLine.hidden = true;
    photo = file;
    enrollForm.hidden = true;
    document.getElementById("result").hidden = false;
    list.replaceChildren();
    figure.querySelectorAll(".box, .tag").forEach((node) => node.remove());
    img.src = URL.createObjectURL(file);
    summary.textContent = "Recognizing…";
    const data = new FormData();
    data.append("image", file, file.name);
    data.append("gallery", form.gallery.value);
    try {
      const accepted = await Console.post(form.dataset.url, data);
      const job = await Console.followJob(`${form.dataset.jobStatus}${accepted.job_id}.json`);
      await Console.imageLoaded(img);
      if (job.status === "failed") {
        summary.textContent = `No result: ${(job.error || {}).message || "the job failed"}`;
        return;
      }
      draw(job.result);
    } catch (error) {
      summary.textContent = "";
      fail(error.message);
    }
  }

  function draw(result) {
    const threshold = Number(result.threshold).toFixed(3);
    const known = result.faces.filter((face) => face.matches.length).length;
    summary.textContent = `${result.faces.length} face(s), ${known} recognized, at threshold ${threshold} (${result.threshold_source}).`;
    summary.dataset.threshold = threshold;
    const boxes = result.faces.map((face) => face.bbox);
    const label = (i) => {
      const best = result.faces[i].matches[0];
      return best ? `Face ${i + 1}: ${best.name}, similarity ${best.similarity.toFixed(2)}` : `Face ${i + 1}: unknown, enroll it`;
    };
    const buttons = Console.boxButtons(figure, img, boxes, label, (i) => openEnroll(i, boxes[i]));
    result.faces.forEach((face, i) => {
      const best = face.matches[0];
      buttons[i].classList.add(best ? "known" : "unknown");
      const tag = document.createElement("span");
      tag.className = `tag ${best ? "known" : "unknown"}`;
      tag.textContent = best ? `${best.name} ${best.similarity.toFixed(2)}` : "unknown";
      tag.style.left = buttons[i].style.left;
      tag.style.top = `calc(${buttons[i].style.top} + ${buttons[i].style.height})`;
      figure.appendChild(tag);
      const item = document.createElement("li");
      if (best) {
        item.append(personLink(best.person_id, best.name), ` — similarity ${best.similarity.toFixed(3)} (threshold ${threshold})`);
      } else {
        const button = document.createElement("button");
        button.type = "button";
        button.textContent = "Enroll this face";
        button.addEventListener("click", () => openEnroll(i, boxes[i]));
        item.append(`Unknown (no match at or above ${threshold}) `, button);
      }
      list.appendChild(item);
    });
  }

  function openEnroll(index, box) {
    chosenBox = box;
    enrollForm.hidden = false;
    document.getElementById("enroll-face-number").textContent = String(index + 1);
    document.getElementById("enroll-face-result").textContent = "";
    enrollForm.querySelector("[name=name]").focus();
  }

  enrollForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const resultLine = document.getElementById("enroll-face-result");
    const data = new FormData();
    data.append("image", photo, photo.name);
    data.append("target_face", Console.targetFace(chosenBox));
    let url;
    if (enrollForm.mode.value === "new") {
      data.append("name", enrollForm.querySelector("[name=name]").value);
      data.append("gallery", form.gallery.value);
      data.append("consent", enrollForm.consent.checked ? "true" : "false");
      url = form.dataset.oneUrl;
    } else {
      data.append("person", enrollForm.querySelector("[name=person]").value);
      url = `${form.dataset.galleryUrl}${encodeURIComponent(form.gallery.value)}/faces`;
    }
    resultLine.textContent = "Enrolling…";
    try {
      const accepted = await Console.post(url, data);
      const job = await Console.followJob(`${form.dataset.jobStatus}${accepted.job_id}.json`);
      if (job.status === "succeeded") {
        resultLine.replaceChildren("Enrolled: ", personLink(accepted.person_id, "see the person"));
      } else {
        resultLine.textContent = `Not enrolled: ${(job.error || {}).message || ""}`;
      }
    } catch (error) {
      resultLine.textContent = error.message;
    }
  });

  const picker = document.getElementById("pick-photo");
  picker.addEventListener("change", () => picker.files[0] && recognize(picker.files[0]));
  if (picker.files[0]) recognize(picker.files[0]); // picked before this deferred script ran
  const drop = document.getElementById("drop");
  ["dragenter", "dragover"].forEach((name) =>
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files[0]) recognize(e.dataTransfer.files[0]);
  });
})();
