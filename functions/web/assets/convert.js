// The convert page: video files (dropped or picked) or a link, the quality and the options,
// then each upload's progress, then the conversions live.

import { call, upload } from "./api.js";
import { jobList } from "./jobs.js";
import { optionsPanel } from "./options.js";
import { putJob } from "./store.js";
import { bytes, h, onSubmit, replace } from "./ui.js";

/**
 * One file's upload row: name, bar, bytes and rate, a cancel button. `options` are the ones
 * set when the file was chosen; an error naming one of them is also shown by `panel`.
 */
function uploadRow(file, options, panel, uploads) {
  const bar = h("progress", { max: String(file.size || 1), value: "0", "aria-label": "Upload of " + file.name });
  const state = h("span", { class: "upload-status" }, "Waiting to upload");
  const cancel = h("button", { type: "button", class: "secondary upload-cancel", "aria-label": "Cancel the upload of " + file.name }, "Cancel");
  const row = h("li", { class: "upload", "data-name": file.name }, h("span", { class: "upload-name" }, file.name), bar, state, cancel);
  uploads.append(row);

  let abort = null;
  let cancelled = false;
  cancel.addEventListener("click", () => {
    cancelled = true;
    if (abort) abort();
    else row.remove();
  });

  return async () => {
    if (cancelled) return;
    row.dataset.state = "uploading";
    const started = performance.now();
    const samples = [];
    const sending = upload(file, options, (sent, total) => {
      bar.max = total || 1;
      bar.value = sent;
      const now = performance.now();
      samples.push([now, sent]);
      while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
      const [t0, b0] = samples[0];
      const rate = now - t0 > 200 ? ((sent - b0) * 1000) / (now - t0) : (sent * 1000) / Math.max(1, now - started);
      replace(state, bytes(sent) + " of " + bytes(total) + " · " + bytes(rate) + "/s");
    });
    abort = sending.abort;
    try {
      const job = await sending.promise;
      putJob(job);
      row.remove();
    } catch (error) {
      row.dataset.state = "failed";
      cancel.remove();
      replace(state, error.message);
      state.setAttribute("role", "alert");
      panel.showError(error);
      const dismiss = h("button", { type: "button", class: "secondary" }, "Dismiss");
      dismiss.addEventListener("click", () => row.remove());
      row.append(dismiss);
    }
  };
}

export function convertPage() {
  const panel = optionsPanel();
  const input = h("input", { type: "file", id: "file-input", class: "visually-hidden", multiple: true, accept: "video/*,audio/*" });
  const uploads = h("ul", { class: "uploads", id: "uploads", "aria-live": "polite" });
  const queue = [];
  let running = false;

  async function drain() {
    if (running) return;
    running = true;
    // One upload at a time: each gets the whole connection and finishes sooner.
    while (queue.length > 0) await queue.shift()();
    running = false;
  }

  function take(files) {
    panel.clearErrors();
    const options = panel.fields();
    for (const file of files) queue.push(uploadRow(file, options, panel, uploads));
    drain();
  }

  input.addEventListener("change", () => {
    take([...input.files]);
    input.value = "";
  });

  const drop = h(
    "label",
    { for: "file-input", id: "drop-zone", class: "drop-zone", tabindex: "0" },
    h("strong", {}, "Drop video files here"),
    h("span", {}, "or click to choose them from your device"),
  );
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      input.click();
    }
  });
  for (const name of ["dragenter", "dragover"]) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("dragging");
    take([...event.dataTransfer.files]);
  });

  const link = h("input", { type: "url", id: "link-url", name: "url", required: true, placeholder: "https://example.com/video.mp4", autocomplete: "off" });
  const linkError = h("p", { id: "link-error", class: "error", role: "alert", hidden: true });
  const linkButton = h("button", { type: "submit", id: "link-submit" }, "Convert link");
  const linkForm = h(
    "form",
    { id: "link-form", class: "row" },
    h("label", { for: "link-url" }, "Or paste a link to a video"),
    h("div", { class: "inline" }, link, linkButton),
    linkError,
  );
  const describe = (failure) => (panel.showError(failure) ? "Check the options: " + failure.message : failure.message);
  onSubmit(linkForm, { button: linkButton, error: linkError, describe }, async () => {
    panel.clearErrors();
    const body = { ...Object.fromEntries(panel.fields()), url: link.value.trim() };
    const job = await call("POST", "/v1/jobs", { body });
    putJob(job);
    link.value = "";
  });

  const recent = jobList({ limit: 10, paged: false, empty: "Your conversions will appear here." });
  const element = h(
    "section",
    { class: "page", "aria-labelledby": "convert-title" },
    h("h1", { id: "convert-title" }, "Convert videos to MP3"),
    h("div", { class: "card" }, panel.quality, panel.element, input, drop, uploads, linkForm),
    h("h2", {}, "Recent conversions"),
    recent.element,
    h("p", {}, h("a", { href: "/jobs", "data-link": true }, "See all conversions")),
  );
  return { element, title: "Convert", dispose: recent.dispose };
}
