// The enroll page: photos, a folder (one sub-folder per person) or a ZIP become one batch; its
// progress and each item's result are polled; a photo with several faces shows them to choose from,
// and the chosen face is enrolled on its own (target_face). A photo inside a ZIP is read from the
// archive here, with fflate (static/vendor): the service keeps no photo once its item has ended.
"use strict";

(function () {
  const form = document.getElementById("enroll-form");
  if (!form) return;
  const chosenText = document.getElementById("chosen");
  const errorLine = document.getElementById("enroll-error");
  let chosen = []; // {file: File, person: string}
  let archive = null;
  let archiveBytes = null; // the ZIP's content, read once, when a photo inside it is first needed
  const byPart = new Map(); // the file name sent for each photo -> its entry

  const isZip = (file) => /\.zip$/i.test(file.name) || file.type === "application/zip";
  const isPhoto = (file) => /\.(jpe?g|png|webp)$/i.test(file.name);
  const stem = (name) => name.replace(/\.[^.]+$/, "");

  // The person of a photo: its folder's name, or (a loose photo) its own name.
  function personOf(path) {
    const parts = path.split("/").filter(Boolean);
    return parts.length >= 2 ? parts[parts.length - 2] : stem(parts[0]);
  }

  function choose(files) {
    errorLine.hidden = true;
    const zips = files.filter(({ file }) => isZip(file));
    archive = zips.length ? zips[0].file : null;
    archiveBytes = null;
    chosen = archive ? [] : files.filter(({ file }) => isPhoto(file));
    const persons = new Set(chosen.map((entry) => entry.person));
    chosenText.textContent = archive
      ? `The archive ${archive.name} (${Math.round(archive.size / 1024)} KB).`
      : `${chosen.length} photo(s) of ${persons.size} person(s).`;
  }

  const fromInput = (input) =>
    Array.from(input.files).map((file) => ({ file, person: personOf(file.webkitRelativePath || file.name) }));

  document.getElementById("pick-files").addEventListener("change", (e) => choose(fromInput(e.target)));
  document.getElementById("pick-folder").addEventListener("change", (e) => choose(fromInput(e.target)));
  // Photos picked before this script ran (it is deferred: a quick pick, or a form the browser
  // restored on going back) fired their change event with nobody listening: take them now.
  for (const id of ["pick-folder", "pick-files"]) {
    const input = document.getElementById(id);
    if (input.files && input.files.length) choose(fromInput(input));
  }

  // A dropped folder is read with the entries API, recursively.
  function readEntry(entry, path) {
    if (entry.isFile) {
      return new Promise((resolve) => entry.file((file) => resolve([{ file, person: personOf(`${path}${file.name}`) }]), () => resolve([])));
    }
    const reader = entry.createReader();
    const all = [];
    return new Promise((resolve) => {
      const next = () =>
        reader.readEntries(async (batch) => {
          if (!batch.length) {
            const nested = await Promise.all(all.map((child) => readEntry(child, `${path}${entry.name}/`)));
            resolve(nested.flat());
            return;
          }
          all.push(...batch);
          next();
        }, () => resolve([]));
      next();
    });
  }

  const drop = document.getElementById("drop");
  ["dragenter", "dragover"].forEach((name) =>
    drop.addEventListener(name, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const entries = Array.from(e.dataTransfer.items || []).map((item) => item.webkitGetAsEntry && item.webkitGetAsEntry()).filter(Boolean);
    const files = entries.length
      ? (await Promise.all(entries.map((entry) => readEntry(entry, "")))).flat()
      : Array.from(e.dataTransfer.files).map((file) => ({ file, person: personOf(file.name) }));
    choose(files);
  });

  function fail(message) {
    errorLine.textContent = message;
    errorLine.hidden = false;
  }

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!archive && !chosen.length) return fail("Choose photos, a folder or a ZIP first.");
    const data = new FormData();
    data.append("gallery", form.gallery.value);
    data.append("consent", form.consent.checked ? "true" : "false");
    byPart.clear();
    if (archive) {
      data.append("archive", archive, archive.name);
    } else {
      const manifest = chosen.map((entry, index) => {
        // Two folders may hold photos with one name: each part gets a name of its own.
        const part = `${index + 1}-${entry.file.name}`;
        byPart.set(part, entry);
        data.append("images", entry.file, part);
        return { file: part, name: entry.person };
      });
      data.append("manifest", JSON.stringify(manifest));
    }
    const button = document.getElementById("enroll-submit");
    button.disabled = true;
    try {
      const accepted = await Console.post(form.dataset.batchUrl, data);
      await follow(accepted.batch_id);
    } catch (error) {
      fail(error.message);
    } finally {
      button.disabled = false;
    }
  });

  const rows = new Map(); // item index -> its table row

  function cell(row, index, content) {
    const td = row.children[index];
    td.replaceChildren();
    if (content instanceof Node) td.appendChild(content); else td.textContent = content;
  }

  function personLink(personId, text) {
    const link = document.createElement("a");
    link.href = `${form.dataset.personUrl}${personId}`;
    link.textContent = text;
    return link;
  }

  function renderItem(item, tbody) {
    let row = rows.get(item.index);
    if (!row) {
      row = document.createElement("tr");
      for (let i = 0; i < 5; i += 1) row.appendChild(document.createElement("td"));
      row.children[0].textContent = String(item.index + 1);
      row.children[1].textContent = (byPart.get(item.file) || {}).file ? byPart.get(item.file).file.name : item.file;
      row.children[2].textContent = item.name || "";
      tbody.appendChild(row);
      rows.set(item.index, row);
    }
    if (row.dataset.status === item.status || row.dataset.chosen) return;
    row.dataset.status = item.status;
    row.className = `status-${item.status}`;
    cell(row, 3, item.status);
    if (item.status === "succeeded") {
      cell(row, 4, personLink(item.person_id, item.duplicate ? "already enrolled: see the person" : "enrolled: see the person"));
    } else if (item.status === "failed") {
      const error = item.error || {};
      const reason = document.createElement("div");
      const code = document.createElement("code");
      code.textContent = error.code || "failed";
      reason.append(code, ` ${error.message || ""}`);
      cell(row, 4, reason);
      if (error.code === "multiple_faces" && error.boxes) {
        photoOf(item).then((photo) => { if (photo) reason.appendChild(facePicker(item, error.boxes, row, photo)); });
      }
    } else {
      cell(row, 4, "…");
    }
  }

  const PHOTO_TYPES = { jpg: "image/jpeg", jpeg: "image/jpeg", png: "image/png", webp: "image/webp" };

  // An item's photo as a File: the one chosen, or the archive's member of that name (an item of a
  // ZIP is named by its path in the archive). Null when the browser no longer has it.
  async function photoOf(item) {
    const entry = byPart.get(item.file);
    if (entry) return entry.file;
    if (!archive || !window.fflate || !item.file) return null;
    try {
      archiveBytes = archiveBytes || new Uint8Array(await archive.arrayBuffer());
      // Synchronous, and only the one member: fflate's asynchronous API starts workers, which the CSP forbids.
      const members = fflate.unzipSync(archiveBytes, { filter: (member) => member.name === item.file });
      const data = members[item.file];
      if (!data) return null;
      const extension = item.file.split(".").pop().toLowerCase();
      return new File([data], item.file.split("/").pop(), { type: PHOTO_TYPES[extension] || "" });
    } catch (error) {
      return null; // an archive the browser cannot read: the reason alone is shown, as before
    }
  }

  // The photo with a button over each face; the chosen one is enrolled on its own.
  function facePicker(item, boxes, row, photo) {
    const figure = document.createElement("figure");
    figure.className = "photo picker";
    const img = document.createElement("img");
    img.alt = `${photo.name}: choose the face of ${item.name}`;
    img.src = URL.createObjectURL(photo);
    const caption = document.createElement("figcaption");
    caption.textContent = `Which one is ${item.name}? Choose the face.`;
    figure.append(img, caption);
    Console.imageLoaded(img).then(() =>
      Console.boxButtons(figure, img, boxes, (i) => `Face ${i + 1}: enroll it as ${item.name}`, async (index) => {
        row.dataset.chosen = "1";
        figure.querySelectorAll(".box").forEach((b) => { b.disabled = true; });
        caption.textContent = `Enrolling face ${index + 1}…`;
        const data = new FormData();
        data.append("name", item.name);
        if (item.external_id) data.append("external_id", item.external_id);
        data.append("gallery", form.gallery.value);
        data.append("consent", "true");
        data.append("target_face", Console.targetFace(boxes[index]));
        data.append("image", photo, photo.name);
        try {
          const accepted = await Console.post(form.dataset.oneUrl, data);
          const job = await Console.followJob(`${form.dataset.jobStatus}${accepted.job_id}.json`);
          if (job.status === "succeeded") {
            cell(row, 3, "succeeded");
            row.className = "status-succeeded";
            cell(row, 4, personLink(accepted.person_id, `enrolled from face ${index + 1}: see the person`));
          } else {
            caption.textContent = `Face ${index + 1} failed: ${(job.error || {}).message || ""}`;
          }
        } catch (error) {
          caption.textContent = error.message;
        }
      }));
    return figure;
  }

  async function follow(batchId) {
    const section = document.getElementById("batch");
    const tbody = document.getElementById("batch-items");
    const progress = document.getElementById("batch-progress");
    const summary = document.getElementById("batch-summary");
    section.hidden = false;
    tbody.replaceChildren();
    rows.clear();
    for (;;) {
      const batch = await Console.getJSON(`${form.dataset.batchStatus}${batchId}.json`);
      const done = batch.succeeded + batch.failed;
      progress.max = batch.total;
      progress.value = done;
      summary.textContent = `${done} of ${batch.total} done: ${batch.succeeded} enrolled, ${batch.failed} failed (${batch.status}).`;
      batch.items.forEach((item) => renderItem(item, tbody));
      if (done >= batch.total) {
        section.dataset.finished = "true";
        return;
      }
      await Console.sleep(800);
    }
  }
})();
