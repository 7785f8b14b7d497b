// Small DOM helpers. Text always goes in as text (textContent), never as markup.

/**
 * Makes an element: `h("a", { href: "/", class: "x", onclick: f }, "text", child)`.
 * Attributes starting with "on" become listeners; strings and numbers become text nodes.
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      element.className = value;
    } else if (name in element && typeof value !== "string") {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? "" : String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
}

/** 1536 -> "1.5 KB" (powers of 1000, as people read sizes). */
export function bytes(count) {
  if (!Number.isFinite(count) || count < 0) return "";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = count;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return unit === 0 ? value + " bytes" : value.toFixed(value < 10 ? 1 : 0) + " " + units[unit];
}

/** 185.2 -> "3:05"; 3725 -> "1:02:05". */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const whole = Math.round(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? h + ":" + String(m).padStart(2, "0") + ":" + s : m + ":" + s;
}

/** A time in a source, to the millisecond: 90.5 -> "1:30.5"; 3725 -> "1:02:05". */
export function position(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const millis = Math.round(seconds * 1000);
  const whole = duration(Math.floor(millis / 1000));
  const fraction = millis % 1000;
  return fraction ? whole + "." + String(fraction).padStart(3, "0").replace(/0+$/, "") : whole;
}

/**
 * A job's options in words, one entry each: `["from 0:01", "title “Talk”", "mono"]`.
 * Options arrive as the API writes them (times in seconds, normalize false or a target).
 */
export function optionWords(options) {
  if (!options) return [];
  const words = [];
  const tag = (name, text) => (text === "" ? "no " + name : name + " “" + text + "”");
  if (options.start !== undefined) words.push("from " + position(options.start));
  if (options.end !== undefined) words.push("to " + position(options.end));
  if (options.normalize !== undefined) {
    words.push(options.normalize === false ? "loudness unchanged" : "loudness " + String(options.normalize).replace("-", "−") + " LUFS");
  }
  for (const name of ["title", "artist", "album"]) {
    if (typeof options[name] === "string") words.push(tag(name, options[name]));
  }
  if (options.year !== undefined) words.push("year " + options.year);
  if (typeof options.comment === "string") words.push(tag("comment", options.comment));
  if (options.cover === "none") words.push("no cover");
  else if (options.cover === "auto") words.push("automatic cover");
  else if (typeof options.cover === "number") words.push("cover at " + position(options.cover));
  if (options.channels) words.push(options.channels);
  if (options.sample_rate) words.push(options.sample_rate / 1000 + " kHz");
  if (options.split === "chapters") words.push("split by chapters");
  if (typeof options.preset === "string") words.push("preset “" + options.preset + "”");
  return words;
}

/** A date as the reader's locale writes it, with the time. */
export function when(text) {
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

/** Failure codes, in words a person understands; the API's own sentence for the rest. */
const WORDS = {
  no_audio: "This video has no sound track, so there is no audio to turn into an MP3.",
  not_media: "This file is not a video or audio file that can be read.",
  unsupported_format: "This is a playlist, a streaming manifest or a list of files, not a single video.",
  too_long: "This video is longer than this service converts.",
  video_missing: "The uploaded video was lost before it was converted. Please upload it again.",
  conversion_failed: "The conversion failed; the file may be damaged.",
  link_forbidden: "That link points to a private or local address, which is not allowed.",
  link_not_found: "The site said the video does not exist. Check the link.",
  link_unreachable: "The site could not be reached.",
  link_too_slow: "The site sent the video too slowly.",
  link_redirect: "The link redirected too often or somewhere that is not allowed.",
  link_not_media: "There is no video or audio on that page that could be found.",
  link_playlist: "That link is a playlist. Link to one of its videos instead.",
  link_sign_in: "That site shows this video only after signing in or a robot check, which this service cannot do for you.",
  link_live: "That link is a live stream. Try again once it is over.",
  link_unsupported: "That site streams this video in a way this service does not download.",
  link_too_long: "That video is longer than this service converts.",
  link_site_not_allowed: "Links to that site are not accepted here.",
  link_failed: "The video could not be downloaded from that link.",
};

/** A job's failure in words. */
export function failure(error) {
  if (!error) return "";
  return WORDS[error.code] || error.message || "The conversion failed.";
}

/** The name people know a job by: the file's name, or the link's last part. */
export function jobName(job) {
  const source = job.source || {};
  if (source.kind === "upload") return source.filename || "Upload";
  if (source.kind === "link") {
    if (source.page && source.page.title) return source.page.title;
    try {
      const url = new URL(source.url);
      const last = url.pathname.split("/").filter(Boolean).pop();
      return last ? decodeURIComponent(last) : url.host;
    } catch {
      return source.url || "Link";
    }
  }
  return "Job";
}

/** The MP3's file name for a job: its name with .mp3 for the video's extension. */
export function mp3Name(job) {
  const page = job.source && job.source.page && job.source.page.title;
  // A page's title has no extension to drop ("Release v1.2" keeps its ".2").
  const base = page || jobName(job).replace(/\.[A-Za-z0-9]{1,5}$/, "");
  return (base || "audio") + ".mp3";
}

/**
 * Runs `action` when `form` is submitted: `button` disabled meanwhile, `error` hidden, and a
 * failure shown in `error` in words (`describe(failure)`, its message by default).
 */
export function onSubmit(form, { button, error, describe = (failure) => failure.message }, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.hidden = true;
    button.disabled = true;
    try {
      await action();
    } catch (failure) {
      replace(error, describe(failure));
      error.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

/** Asks a yes/no question in a modal dialog; answers true for yes. */
export function confirm(question, yes) {
  const dialog = document.getElementById("confirm");
  replace(document.getElementById("confirm-text"), question);
  replace(document.getElementById("confirm-yes"), yes);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-no").focus();
  });
}

/** Shows a short message to the reader (announced to screen readers). */
export function toast(message) {
  const region = document.getElementById("toast");
  replace(region, message);
  region.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (region.hidden = true), 5000);
}
